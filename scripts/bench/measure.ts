// One measurement of one system: ping RTT, an iperf3 TCP or UDP run, and
// the capacity search. Clients run on the system's client host, the server
// on cn2. Around each iperf3 run the tunnel processes' CPU time and the
// packets on the tunnel's interface on cn2 are read, which gives the CPU
// time per tunnel packet of both tunnel ends together. The underlay NIC
// would not do: it counts a batch sent with UDP segmentation offload as one
// packet.
import type { CapacityConfig } from "./config.js";
import { BenchLab } from "./lab.js";
import { cpuSeconds } from "./proc.js";
import type { SystemUnderTest } from "./systems.js";

const SERVER_START_TIMEOUT_MS = 5_000;
/** Time an iperf3 run may take beyond its duration: connection setup and the final exchange of results. */
const IPERF_GRACE_MS = 20_000;
/**
 * Socket buffer of both iperf3 ends in the UDP runs (iperf3 -w), so that the
 * iperf3 receiver's socket does not drop datagrams at high loads. The host's
 * net.core.rmem_max (4 MiB here) caps it.
 */
const UDP_SOCKET_BUFFER = "2M";
/** A load counts as not reached when the sender achieved less than this share of it (iperf3 itself is the limit). */
const SENDER_SHORTFALL = 0.95;

export interface CpuWindow {
  /** CPU time of the tunnel processes at both ends, in seconds. */
  cpuSeconds: number;
  /** Packets received and sent on the adapter host's underlay NIC. */
  packets: number;
}

export interface PingResult {
  rttMs: number[];
  sent: number;
  received: number;
}

export interface TcpResult {
  mbps: number;
  retransmits: number;
  window: CpuWindow;
}

export interface UdpResult {
  offeredMbps: number;
  /** Rate the iperf3 sender achieved. */
  sentMbps: number;
  /** Rate the iperf3 receiver measured. */
  receivedMbps: number;
  jitterMs: number;
  lostPackets: number;
  packets: number;
  lossPercent: number;
  window: CpuWindow;
}

export interface CapacityStep {
  offeredMbps: number;
  sentMbps: number;
  receivedMbps: number;
  lossPercent: number;
  pass: boolean;
}

export interface CapacityResult {
  /**
   * Highest offered load that passed, in Mbit/s. A step where iperf3 could
   * not send its load counts with its received rate, when that is higher.
   * Null when even the lowest load tried failed.
   */
  capacityMbps: number | null;
  /** True when the iperf3 sender, not the path, stopped the search: the capacity is a lower bound. */
  senderLimited: boolean;
  steps: CapacityStep[];
}

export class Measurer {
  constructor(
    private readonly lab: BenchLab,
    private readonly udpPayloadBytes: number,
  ) {}

  /** Sends count pings at the interval and returns every round-trip time. */
  async ping(system: SystemUnderTest, count: number, intervalSeconds: number): Promise<PingResult> {
    const timeoutMs = count * intervalSeconds * 1000 + 10_000;
    const r = await this.lab.exec(system.client, ["ping", "-c", String(count), "-i", String(intervalSeconds), "-W", "1", system.server], timeoutMs);
    const rttMs = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
    const summary = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
    return { rttMs, sent: Number(summary?.[1] ?? count), received: Number(summary?.[2] ?? rttMs.length) };
  }

  async tcp(system: SystemUnderTest, seconds: number): Promise<TcpResult> {
    const { report, window } = await this.iperf(system, ["-t", String(seconds)], seconds);
    const end = report.end as { sum_received: { bits_per_second: number }; sum_sent: { retransmits?: number } };
    return { mbps: end.sum_received.bits_per_second / 1e6, retransmits: end.sum_sent.retransmits ?? 0, window };
  }

  async udp(system: SystemUnderTest, offeredMbps: number, seconds: number): Promise<UdpResult> {
    const args = ["-u", "-b", `${Math.round(offeredMbps * 1000)}K`, "-l", String(this.udpPayloadBytes), "-w", UDP_SOCKET_BUFFER, "-t", String(seconds)];
    const { report, window } = await this.iperf(system, args, seconds);
    const end = report.end as {
      sum_sent: { bits_per_second: number };
      sum_received: { bits_per_second: number; jitter_ms: number; lost_packets: number; packets: number; lost_percent: number };
    };
    return {
      offeredMbps,
      sentMbps: end.sum_sent.bits_per_second / 1e6,
      receivedMbps: end.sum_received.bits_per_second / 1e6,
      jitterMs: end.sum_received.jitter_ms,
      lostPackets: end.sum_received.lost_packets,
      packets: end.sum_received.packets,
      lossPercent: end.sum_received.lost_percent,
      window,
    };
  }

  /**
   * Steps the offered UDP load up by `factor` until the loss exceeds the
   * limit, then bisects between the last passing and the first failing load.
   * iperf3 -b paces every step, so none is an unpaced flood.
   */
  async capacity(system: SystemUnderTest, c: CapacityConfig, startMbps: number): Promise<CapacityResult> {
    const steps: CapacityStep[] = [];
    // The received rate of a step that iperf3 could not send at the offered load but that lost nothing beyond the limit.
    let senderLimitedMbps: number | null = null;
    const step = async (offeredMbps: number): Promise<boolean> => {
      const r = await this.udp(system, offeredMbps, c.stepSeconds);
      const shortfall = r.sentMbps < offeredMbps * SENDER_SHORTFALL;
      const pass = r.lossPercent <= c.lossLimitPercent && !shortfall;
      steps.push({ offeredMbps, sentMbps: r.sentMbps, receivedMbps: r.receivedMbps, lossPercent: r.lossPercent, pass });
      if (shortfall && r.lossPercent <= c.lossLimitPercent) senderLimitedMbps = Math.max(senderLimitedMbps ?? 0, r.receivedMbps);
      return pass;
    };

    let good: number | null = null;
    let bad: number | null = null;
    let load = startMbps;
    // Upwards until a load fails (or the search reaches its upper end).
    while (load <= c.maxMbps) {
      if (await step(load)) {
        good = load;
        load *= c.factor;
      } else {
        bad = load;
        break;
      }
    }
    // The start was already too high: downwards until one passes.
    while (good === null && bad !== null && load > 1) {
      load /= c.factor;
      if (await step(load)) good = load;
      else bad = load;
    }
    for (let i = 0; i < c.bisections && good !== null && bad !== null && senderLimitedMbps === null; i++) {
      const mid = Math.sqrt(good * bad);
      if (await step(mid)) good = mid;
      else bad = mid;
    }
    if (senderLimitedMbps !== null && senderLimitedMbps > (good ?? 0)) return { capacityMbps: senderLimitedMbps, senderLimited: true, steps };
    return { capacityMbps: good, senderLimited: false, steps };
  }

  /** Runs one iperf3 client against a one-off server on cn2 and reads the CPU window around it. */
  private async iperf(system: SystemUnderTest, args: string[], seconds: number): Promise<{ report: { end: unknown }; window: CpuWindow }> {
    const server = this.lab.spawn("cn2", ["iperf3", "-s", "-1", "--forceflush", "-B", system.server]);
    try {
      await server.waitForLine(/Server listening/, SERVER_START_TIMEOUT_MS);
      const pids = system.tunnelPids();
      const before = { cpu: cpuSeconds(pids), packets: await this.tunnelPackets(system) };
      const r = await this.lab.exec(system.client, ["iperf3", "-c", system.server, "-J", ...args], seconds * 1000 + IPERF_GRACE_MS);
      const after = { cpu: cpuSeconds(pids), packets: await this.tunnelPackets(system) };
      const report = JSON.parse(r.stdout || "{}") as { end?: unknown; error?: string };
      if (report.error || !report.end) throw new Error(`iperf3 ${args.join(" ")} to ${system.server} failed: ${report.error ?? r.stderr.trim()}`);
      return { report: { end: report.end }, window: { cpuSeconds: after.cpu - before.cpu, packets: after.packets - before.packets } };
    } finally {
      await server.kill("SIGTERM");
    }
  }

  private async tunnelPackets(system: SystemUnderTest): Promise<number> {
    if (!system.serverInterface) return 0;
    const out = await this.lab.run("cn2", ["ip", "-s", "-j", "link", "show", "dev", system.serverInterface]);
    const [link] = JSON.parse(out) as { stats64: { rx: { packets: number }; tx: { packets: number } } }[];
    return (link?.stats64.rx.packets ?? 0) + (link?.stats64.tx.packets ?? 0);
  }
}

/** CPU time per packet in microseconds, or null for a window without tunnel processes or packets. */
export function cpuMicrosecondsPerPacket(window: CpuWindow, hasTunnel: boolean): number | null {
  if (!hasTunnel || window.packets === 0) return null;
  return (window.cpuSeconds * 1e6) / window.packets;
}
