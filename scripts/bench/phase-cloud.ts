// Cloud scale: one `cyphonic cloud` on 127.0.0.1 in a namespace of its own
// ("<prefix>-scale", loopback only) and a fleet of simulated nodes that
// provision, register and send keep-alives. A few probing nodes in another
// process time route requests, from the request leaving to the response
// arriving at the prober, over loopback. The cloud's CPU time and resident
// set size are read from /proc over the probing window.
import path from "node:path";
import type { NamespaceProcess } from "../../test/lab/lab-process.js";
import type { BenchConfig } from "./config.js";
import { BenchLab, REPO_ROOT, delay } from "./lab.js";
import { CYPHONIC } from "./overlay.js";
import { cpuSeconds, treePeakRssBytes, treeRssBytes } from "./proc.js";
import type { CloudRecord } from "./results.js";

const HOST = "scale";
const KEEPALIVE_MS = 5_000;
const SIMULATOR = path.join(REPO_ROOT, "scripts", "bench", "sim-cloud-nodes.ts");
/** Limit for node creation, provisioning and registration. 10,000 nodes took about 130 s on a busy 2-core machine. */
const FLEET_READY_TIMEOUT_MS = 15 * 60_000;

interface SimLine {
  event: string;
  [key: string]: unknown;
}

export async function runCloudScale(lab: BenchLab, dir: string, config: BenchConfig, log: (line: string) => void): Promise<CloudRecord> {
  const c = config.cloud;
  const record: CloudRecord = {
    nodes: c.nodes,
    probers: c.probers,
    setupSeconds: null,
    health: null,
    measureSeconds: c.measureSeconds,
    cpuPercent: null,
    rssBytes: [],
    peakRssBytes: null,
    routeLatencyMs: [],
    nmsSelectUs: [],
    routeRequestsSent: 0,
    routeErrors: {},
    errors: [],
  };
  lab.addNamespace(HOST);
  const state = path.join(dir, "scale-cloud");
  const cloud = lab.spawn(
    HOST,
    ["node", CYPHONIC, "cloud", "--state", state, "--advertise", "127.0.0.1", "--bind", "127.0.0.1", "--keepalive-ms", String(KEEPALIVE_MS), "--control", path.join(dir, "scale-cloud.sock")],
    { logFile: path.join(dir, "scale-cloud.log"), env: { CYPHONIC_LOG_LEVEL: "info" } },
  );
  let fleet: NamespaceProcess | null = null;
  try {
    await cloud.waitForLine(/"cloud started"/, 30_000);
    log(`  ${c.nodes} nodes: creating, provisioning through the AS, registering with the NMS`);
    fleet = simulator(lab, dir, "fleet", ["--count", String(c.nodes), "--concurrency", String(c.concurrency), "--keepalive-ms", String(KEEPALIVE_MS)]);
    const ready = await nextEvent(fleet, "ready", FLEET_READY_TIMEOUT_MS);
    record.setupSeconds = ready.seconds as CloudRecord["setupSeconds"];
    log(`  fleet ready: ${JSON.stringify(ready.seconds)} s for creation, provisioning, registration`);
    // One full keep-alive interval, so every node's keep-alive cycle is running in the window.
    await delay(KEEPALIVE_MS);

    const prober = simulator(lab, dir, "probe", ["--count", String(c.probers), "--concurrency", String(c.concurrency), "--rate", String(c.probeRatePerSecond), "--seconds", String(c.measureSeconds)]);
    await nextEvent(prober, "measuring", 120_000);
    const cpuBefore = cpuSeconds([cloud.pid]);
    const startedMs = performance.now();
    const sampler = setInterval(() => record.rssBytes.push(treeRssBytes([cloud.pid])), 1_000);
    let result: SimLine;
    try {
      result = await nextEvent(prober, "result", (c.measureSeconds + 60) * 1000);
    } finally {
      clearInterval(sampler);
    }
    record.cpuPercent = ((cpuSeconds([cloud.pid]) - cpuBefore) / ((performance.now() - startedMs) / 1000)) * 100;
    record.peakRssBytes = treePeakRssBytes([cloud.pid]);
    record.routeLatencyMs = result.latenciesMs as number[];
    record.routeErrors = result.errors as Record<string, number>;
    record.routeRequestsSent = result.sent as number;
    // Only the probers request routes, so every "route selected" line belongs to the window.
    record.nmsSelectUs = selectTimes(cloud.output());

    // The fleet prints its health every 5 s, so the newest line covers the end of the window.
    const health = latestEvent(fleet, "status");
    if (health) record.health = { registered: health.registered as number, fresh: health.fresh as number, reRegistrations: health.reRegistrations as number };
  } catch (err) {
    record.errors.push(err instanceof Error ? err.message : String(err));
    log(`  cloud: FAILED ${record.errors.at(-1)?.split("\n")[0]}`);
  } finally {
    await fleet?.kill("SIGTERM");
    await cloud.kill("SIGTERM");
  }
  return record;
}

function simulator(lab: BenchLab, dir: string, role: "fleet" | "probe", args: string[]): NamespaceProcess {
  return lab.spawn(HOST, ["node", "--import", "tsx", SIMULATOR, role, "--state", path.join(dir, "scale-cloud"), ...args], {
    logFile: path.join(dir, `scale-${role}.log`),
    // At info level every simulated node would log its provisioning and registration.
    env: { CYPHONIC_LOG_LEVEL: "warn" },
  });
}

/** Waits for the simulator's JSON line of this event. An "error" line or an exit rejects. */
async function nextEvent(sim: NamespaceProcess, event: string, timeoutMs: number): Promise<SimLine> {
  const line = await sim.waitForLine(new RegExp(`^\\{"event":"(${event}|error)"`), timeoutMs);
  const parsed = JSON.parse(line) as SimLine;
  if (parsed.event === "error") throw new Error(`simulator failed: ${String(parsed.message)}`);
  return parsed;
}

function latestEvent(sim: NamespaceProcess, event: string): SimLine | null {
  const lines = sim
    .output()
    .split("\n")
    .filter((l) => l.startsWith(`{"event":"${event}"`));
  const last = lines.at(-1);
  return last ? (JSON.parse(last) as SimLine) : null;
}

/** Returns the selectUs field of every "route selected" line in the cloud's log output (pino JSON lines). */
function selectTimes(output: string): number[] {
  const out: number[] = [];
  for (const line of output.split("\n")) {
    if (!line.includes('"route selected"')) continue;
    try {
      const entry = JSON.parse(line) as { msg?: string; selectUs?: unknown };
      if (entry.msg === "route selected" && typeof entry.selectUs === "number") out.push(entry.selectUs);
    } catch {
      // A line cut off by the process's end is skipped.
    }
  }
  return out;
}
