// The path measurements, in interleaved rounds: every round measures every
// system once, so a noisy neighbour on the shared machine slows all of them
// alike and their ratios stay usable. Odd rounds go through the systems in
// the order (a) to (e), even rounds backwards, so no system always runs
// first or right after another one's load.
import type { BenchConfig } from "./config.js";
import { Measurer } from "./measure.js";
import type { SystemRecord } from "./results.js";
import type { SystemUnderTest } from "./systems.js";

export async function runPaths(systems: SystemUnderTest[], measurer: Measurer, config: BenchConfig, log: (line: string) => void): Promise<SystemRecord[]> {
  const records = new Map<string, SystemRecord>(
    systems.map((s) => [s.id, { id: s.id, label: s.label, client: s.client, server: s.server, hasTunnel: s.tunnelPids().length > 0, ping: [], tcp: [], udp: [], capacity: [], errors: [] }]),
  );
  const attempt = async (record: SystemRecord, what: string, task: () => Promise<void>): Promise<void> => {
    try {
      await task();
    } catch (err) {
      const message = `${what}: ${err instanceof Error ? err.message : String(err)}`;
      record.errors.push(message);
      log(`  ${record.id}: FAILED ${message.split("\n")[0]}`);
    }
  };

  for (let round = 1; round <= config.rounds; round++) {
    const order = round % 2 === 1 ? systems : [...systems].reverse();
    log(`round ${round}/${config.rounds}: ping, TCP, UDP at ${config.udpLoadsMbps.join("/")} Mbit/s`);
    for (const system of order) {
      const record = records.get(system.id)!;
      await attempt(record, `round ${round}`, async () => {
        await system.activate();
        const ping = await measurer.ping(system, config.pingCount, config.pingIntervalSeconds);
        record.ping.push(ping);
        const tcp = await measurer.tcp(system, config.tcpSeconds);
        record.tcp.push(tcp);
        const udp = [];
        for (const load of config.udpLoadsMbps) udp.push(await measurer.udp(system, load, config.udpSeconds));
        record.udp.push(...udp);
        const rtt = ping.rttMs.length ? (ping.rttMs.reduce((a, b) => a + b, 0) / ping.rttMs.length).toFixed(3) : "-";
        const losses = udp.map((u) => u.lostPackets).join("/");
        log(`  ${system.id}: TCP ${tcp.mbps.toFixed(0)} Mbit/s, RTT mean ${rtt} ms, UDP datagrams lost ${losses}`);
      });
    }

    log(`round ${round}/${config.rounds}: UDP capacity (loss at most ${config.capacity.lossLimitPercent}%)`);
    for (const system of order) {
      const record = records.get(system.id)!;
      await attempt(record, `round ${round} capacity`, async () => {
        await system.activate();
        const previous = record.capacity.at(-1)?.capacityMbps;
        const start = previous ? previous * config.capacity.laterRoundStartFraction : config.capacity.startMbps;
        const result = await measurer.capacity(system, config.capacity, start);
        record.capacity.push(result);
        const value = result.capacityMbps === null ? "none" : `${result.capacityMbps.toFixed(0)} Mbit/s`;
        log(`  ${system.id}: capacity ${value}${result.senderLimited ? " (iperf3 sender limit)" : ""} in ${result.steps.length} steps`);
      });
    }
  }
  return [...records.values()];
}
