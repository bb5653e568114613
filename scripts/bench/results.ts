// The record of one benchmark run, written as results.json in the run's
// work directory and rendered into docs/benchmarks.md by report.ts.
import type { BenchConfig } from "./config.js";
import type { CapacityResult, PingResult, TcpResult, UdpResult } from "./measure.js";
import type { SystemId } from "./config.js";

export interface SystemRecord {
  id: SystemId;
  label: string;
  client: string;
  server: string;
  hasTunnel: boolean;
  /** One entry per round. A failed measurement leaves an entry in errors instead. */
  ping: PingResult[];
  tcp: TcpResult[];
  udp: UdpResult[];
  capacity: CapacityResult[];
  errors: string[];
}

export interface MemoryPoint {
  generalNodes: number;
  /** Tunnels with an established session, as `cyphonic status` of the adapter lists them. */
  tunnels: number;
  /** Sum of VmRSS over the adapter's process tree, one sample per second. */
  rssBytes: number[];
  /** Private pages of the same processes (unique set size), sampled with rssBytes. */
  ussBytes: number[];
  /** Processes in the adapter's tree when sampled. */
  processes: number;
}

export interface MemoryRecord {
  points: MemoryPoint[];
  /** Tunnels the simulated peers were asked to open. */
  tunnelsRequested: number;
  errors: string[];
}

export interface CloudRecord {
  nodes: number;
  probers: number;
  setupSeconds: { create: number; provision: number; register: number } | null;
  /** Fleet health at the end of the window: nodes registered, nodes with a recent keep-alive response, registrations after the first. */
  health: { registered: number; fresh: number; reRegistrations: number } | null;
  measureSeconds: number;
  /** The cloud process's CPU time in the window divided by the window, in percent of one core. */
  cpuPercent: number | null;
  /** Sum of VmRSS over the cloud's process tree, one sample per second of the window. */
  rssBytes: number[];
  /** Sum of VmHWM over the same processes at the end of the window. */
  peakRssBytes: number | null;
  routeLatencyMs: number[];
  /**
   * The NMS's own time per route selection, from its checks passed to the
   * response sent, in microseconds: "selectUs" of its "route selected" log
   * lines. Empty when the log has no such field.
   */
  nmsSelectUs: number[];
  routeRequestsSent: number;
  routeErrors: Record<string, number>;
  errors: string[];
}

export interface RunRecord {
  startedAt: string;
  finishedAt: string;
  durationSeconds: number;
  phaseSeconds: Record<string, number>;
  config: Omit<BenchConfig, "phases"> & { phases: string[] };
  machine: { cpuModel: string; cores: number; kernel: string; memoryGiB: number; os: string };
  versions: Record<string, string>;
  commit: string;
  systems: SystemRecord[];
  memory: MemoryRecord | null;
  cloud: CloudRecord | null;
}
