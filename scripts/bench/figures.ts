// The figures of a run, derived from its record: per system the summaries
// that the report tables, the targets and the plot share.
import { cpuMicrosecondsPerPacket } from "./measure.js";
import type { RunRecord, SystemRecord } from "./results.js";
import { Summary, percentile, summarize } from "./stats.js";

export interface UdpLoadFigures {
  offeredMbps: number;
  receivedMbps: Summary | null;
  jitterMs: Summary | null;
  lostPackets: number;
  packets: number;
  cpuUsPerPacket: Summary | null;
}

export interface SystemFigures {
  record: SystemRecord;
  tcpMbps: Summary | null;
  tcpRetransmits: Summary | null;
  tcpCpuUsPerPacket: Summary | null;
  capacityMbps: Summary | null;
  capacitySenderLimited: boolean;
  rttMs: Summary | null;
  rttP99Ms: number | null;
  pingLost: number;
  pingSent: number;
  udp: UdpLoadFigures[];
}

export function systemFigures(record: SystemRecord): SystemFigures {
  const rtts = record.ping.flatMap((p) => p.rttMs).sort((a, b) => a - b);
  const loads = [...new Set(record.udp.map((u) => u.offeredMbps))].sort((a, b) => a - b);
  return {
    record,
    tcpMbps: summarize(record.tcp.map((t) => t.mbps)),
    tcpRetransmits: summarize(record.tcp.map((t) => t.retransmits)),
    tcpCpuUsPerPacket: summarize(record.tcp.map((t) => cpuMicrosecondsPerPacket(t.window, record.hasTunnel) ?? NaN)),
    capacityMbps: summarize(record.capacity.map((c) => c.capacityMbps ?? NaN)),
    capacitySenderLimited: record.capacity.some((c) => c.senderLimited),
    rttMs: summarize(rtts),
    rttP99Ms: rtts.length ? percentile(rtts, 99) : null,
    pingLost: record.ping.reduce((sum, p) => sum + p.sent - p.received, 0),
    pingSent: record.ping.reduce((sum, p) => sum + p.sent, 0),
    udp: loads.map((load) => {
      const runs = record.udp.filter((u) => u.offeredMbps === load);
      return {
        offeredMbps: load,
        receivedMbps: summarize(runs.map((u) => u.receivedMbps)),
        jitterMs: summarize(runs.map((u) => u.jitterMs)),
        lostPackets: runs.reduce((sum, u) => sum + u.lostPackets, 0),
        packets: runs.reduce((sum, u) => sum + u.packets, 0),
        cpuUsPerPacket: summarize(runs.map((u) => cpuMicrosecondsPerPacket(u.window, record.hasTunnel) ?? NaN)),
      };
    }),
  };
}

export function allFigures(run: RunRecord): Map<string, SystemFigures> {
  return new Map(run.systems.map((s) => [s.id, systemFigures(s)]));
}

export interface TargetResult {
  target: string;
  measured: string;
  status: "pass" | "fail" | "no data";
}

const MB = 1e6;
/** Adapter memory limit with 100 general nodes: 100 MB, 10^8 bytes. */
const ADAPTER_RSS_LIMIT_BYTES = 100 * MB;
const ADAPTER_RSS_GENERAL_NODES = 100;
const CLOUD_NODES_TARGET = 10_000;
const ROUTE_P99_LIMIT_MS = 10;

/** Evaluates the acceptance targets on the medians of this run. Each target compares systems measured side by side. */
export function evaluateTargets(run: RunRecord): TargetResult[] {
  const figures = allFigures(run);
  const median = (id: string, pick: (f: SystemFigures) => Summary | null) => {
    const f = figures.get(id);
    return f ? (pick(f)?.median ?? null) : null;
  };
  const out: TargetResult[] = [];
  const compare = (target: string, value: number | null, reference: number | null, ok: (ratio: number) => boolean, unit: string) => {
    if (value === null || reference === null || reference === 0) {
      out.push({ target, measured: "missing figures", status: "no data" });
      return;
    }
    const ratio = value / reference;
    out.push({ target, measured: `${fmt(value)} vs ${fmt(reference)} ${unit}: ratio ${ratio.toFixed(2)}`, status: ok(ratio) ? "pass" : "fail" });
  };

  const tcpAdapter = median("cyphonic-adapter", (f) => f.tcpMbps);
  compare("TCP through the adapter (e) at least 1.5x wireguard-go (b)", tcpAdapter, median("wireguard-go", (f) => f.tcpMbps), (r) => r >= 1.5, "Mbit/s");
  const nebulaBest = maxOf(median("nebula-aes", (f) => f.tcpMbps), median("nebula-chacha", (f) => f.tcpMbps));
  compare("TCP through the adapter (e) above nebula's better variant (c)", tcpAdapter, nebulaBest, (r) => r > 1, "Mbit/s");
  compare(
    "UDP capacity through the adapter (e) at least 1.0x wireguard-go (b)",
    median("cyphonic-adapter", (f) => f.capacityMbps),
    median("wireguard-go", (f) => f.capacityMbps),
    (r) => r >= 1,
    "Mbit/s",
  );

  const adapter = figures.get("cyphonic-adapter");
  const fixedLoads = run.config.udpLoadsMbps;
  if (!adapter || adapter.udp.length === 0) {
    out.push({ target: `No loss through the adapter (e) at ${fixedLoads.join(", ")} Mbit/s`, measured: "missing figures", status: "no data" });
  } else {
    const runs = adapter.udp.filter((u) => fixedLoads.includes(u.offeredMbps));
    const lost = runs.reduce((sum, u) => sum + u.lostPackets, 0);
    const packets = runs.reduce((sum, u) => sum + u.packets, 0);
    out.push({ target: `No loss through the adapter (e) at ${fixedLoads.join(", ")} Mbit/s`, measured: `${lost} of ${packets} datagrams lost`, status: lost === 0 && packets > 0 ? "pass" : "fail" });
  }
  compare("RTT through the adapter (e) no more than wireguard-go's (b), medians", median("cyphonic-adapter", (f) => f.rttMs), median("wireguard-go", (f) => f.rttMs), (r) => r <= 1, "ms");

  const memoryPoint = run.memory?.points.find((p) => p.generalNodes === ADAPTER_RSS_GENERAL_NODES && p.tunnels === 0) ?? run.memory?.points.find((p) => p.generalNodes === ADAPTER_RSS_GENERAL_NODES);
  const rss = memoryPoint ? (summarize(memoryPoint.rssBytes)?.median ?? null) : null;
  const uss = memoryPoint ? (summarize(memoryPoint.ussBytes)?.median ?? null) : null;
  const processes = memoryPoint && memoryPoint.processes > 1 ? ` over ${memoryPoint.processes} processes` : "";
  out.push(
    rss === null
      ? { target: "Adapter RSS at most 100 MB with 100 general nodes", measured: "missing figures", status: "no data" }
      : {
          target: "Adapter RSS at most 100 MB with 100 general nodes",
          measured: `RSS ${(rss / MB).toFixed(1)} MB${processes} (USS ${uss === null ? "-" : (uss / MB).toFixed(1)} MB)`,
          status: rss <= ADAPTER_RSS_LIMIT_BYTES ? "pass" : "fail",
        },
  );

  const cloud = run.cloud;
  if (!cloud?.health) {
    out.push({ target: `Cloud keeps ${CLOUD_NODES_TARGET.toLocaleString("en-US")} nodes registered and answered on ${run.machine.cores} cores`, measured: "missing figures", status: "no data" });
  } else {
    const h = cloud.health;
    const all = h.registered === cloud.nodes && h.fresh === cloud.nodes && h.reRegistrations === 0;
    out.push({
      target: `Cloud keeps ${CLOUD_NODES_TARGET.toLocaleString("en-US")} nodes registered and answered on ${run.machine.cores} cores`,
      measured: `${h.registered} of ${cloud.nodes} registered, ${h.fresh} answered recently, ${h.reRegistrations} registrations repeated`,
      status: all && cloud.nodes >= CLOUD_NODES_TARGET ? "pass" : "fail",
    });
  }
  const latencies = [...(cloud?.routeLatencyMs ?? [])].sort((a, b) => a - b);
  const failedRoutes = Object.values(cloud?.routeErrors ?? {}).reduce((a, b) => a + b, 0);
  out.push(
    latencies.length === 0
      ? { target: `Route selection p99 under ${ROUTE_P99_LIMIT_MS} ms at that scale`, measured: "missing figures", status: "no data" }
      : {
          target: `Route selection p99 under ${ROUTE_P99_LIMIT_MS} ms at that scale`,
          measured: `p99 ${percentile(latencies, 99).toFixed(2)} ms over ${latencies.length} requests, ${failedRoutes} failed`,
          status: percentile(latencies, 99) < ROUTE_P99_LIMIT_MS && failedRoutes === 0 ? "pass" : "fail",
        },
  );
  return out;
}

function maxOf(a: number | null, b: number | null): number | null {
  if (a === null) return b;
  if (b === null) return a;
  return Math.max(a, b);
}

/** Formats a figure with three significant digits at most, and no exponent. */
export function fmt(value: number): string {
  if (value === 0) return "0";
  const abs = Math.abs(value);
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  if (abs >= 1) return value.toFixed(2);
  return value.toPrecision(2);
}
