// The adapter's memory: a fresh adapter on the adapter host, its resident
// set size (VmRSS of its process tree) sampled with 0, 10 and 100 general
// nodes, then with simulated peers holding a tunnel to every general node.
// General nodes are registered with `cyphonic admin general add` and made-up
// MACs. The adapter hosts one member per general node whether a device is
// plugged in or not, so no device is needed.
import fs from "node:fs";
import path from "node:path";
import type { BenchConfig } from "./config.js";
import { BenchLab, REPO_ROOT, delay } from "./lab.js";
import type { NamespaceProcess } from "../../test/lab/lab-process.js";
import { BenchOverlay, RunningDaemon } from "./overlay.js";
import { processTree, treeUssBytes, treeRssBytes } from "./proc.js";
import type { MemoryPoint, MemoryRecord } from "./results.js";
import { summarize } from "./stats.js";

const ADAPTER = "bmemadapter";
/** The adapter requests its list from the AS every 10 s (REGISTRY_POLL_MS) and binds a key per new node. */
const GENERAL_NODES_TIMEOUT_MS = 120_000;
/** Time for new members to register and the heap to settle before sampling. */
const SETTLE_MS = 5_000;
const TUNNELS_TIMEOUT_MS = 180_000;
/** Concurrent `cyphonic admin` processes. Each is a short process that writes one SQLite transaction. */
const ADMIN_CONCURRENCY = 4;

export async function runMemory(lab: BenchLab, overlay: BenchOverlay, config: BenchConfig, log: (line: string) => void): Promise<MemoryRecord> {
  const counts = config.memory.generalNodeCounts;
  const maxCount = Math.max(...counts);
  const record: MemoryRecord = { points: [], tunnelsRequested: config.memory.tunnelPeers * maxCount, errors: [] };
  await overlay.createNode(ADAPTER, "adapter");
  const adapter = await overlay.startDaemon({ host: "adapter", name: ADAPTER, lan: lab.info.adapterLanInterface }, await overlay.issueToken(ADAPTER));
  const generalNodeIPs: string[] = [];
  try {
    for (const count of counts) {
      const names = [];
      for (let i = generalNodeIPs.length; i < count; i++) names.push(i);
      await runLimited(names, ADMIN_CONCURRENCY, async (i) => {
        generalNodeIPs[i] = await overlay.addGeneralNode(ADAPTER, `bmgn${String(i).padStart(3, "0")}`, madeUpMac(i));
      });
      await overlay.waitForLogLines(adapter, /"general node added"/, count, GENERAL_NODES_TIMEOUT_MS);
      await delay(SETTLE_MS);
      const point = await sample(overlay, adapter, count, config.memory.rssSamples);
      record.points.push(point);
      log(`  ${count} general nodes: RSS ${megabytes(point.rssBytes)} MB`);
      logProcesses(adapter, log);
    }
    if (config.memory.tunnelPeers > 0 && maxCount > 0) {
      log(`  ${config.memory.tunnelPeers} simulated peers open ${record.tunnelsRequested} tunnels`);
      const sim = await openTunnels(lab, overlay, adapter, generalNodeIPs, config.memory.tunnelPeers, record.tunnelsRequested);
      try {
        await delay(SETTLE_MS);
        const point = await sample(overlay, adapter, maxCount, config.memory.rssSamples);
        record.points.push(point);
        log(`  ${maxCount} general nodes, ${point.tunnels} tunnels: RSS ${megabytes(point.rssBytes)} MB`);
        logProcesses(adapter, log);
      } finally {
        await sim.kill("SIGTERM");
      }
    }
  } catch (err) {
    record.errors.push(err instanceof Error ? err.message : String(err));
    log(`  memory: FAILED ${record.errors.at(-1)?.split("\n")[0]}`);
  } finally {
    await overlay.stopDaemon(adapter);
  }
  return record;
}

/** Starts the simulated peers in cn2 and returns them once the adapter lists the tunnels with a session. */
async function openTunnels(lab: BenchLab, overlay: BenchOverlay, adapter: RunningDaemon, targets: string[], peers: number, expected: number): Promise<NamespaceProcess> {
  const tokenFiles: string[] = [];
  for (let i = 0; i < peers; i++) {
    const name = `bmpeer${String(i).padStart(2, "0")}`;
    await overlay.createNode(name, "node");
    tokenFiles.push(await overlay.issueToken(name));
  }
  const configFile = path.join(overlay.dir, "tunnel-peers.json");
  fs.writeFileSync(configFile, JSON.stringify({ tokenFiles, targets }));
  const sim = lab.spawn("cn2", ["node", "--import", "tsx", path.join(REPO_ROOT, "scripts", "bench", "sim-tunnel-peers.ts"), configFile], {
    logFile: path.join(overlay.dir, "tunnel-peers.log"),
    env: { CYPHONIC_LOG_LEVEL: "warn" },
  });
  try {
    await sim.waitForLine(/"event":"registered"/, 60_000);
    const deadline = Date.now() + TUNNELS_TIMEOUT_MS;
    for (;;) {
      const established = (await overlay.status(adapter)).tunnels.filter((t) => t.session).length;
      if (established >= expected) return sim;
      if (Date.now() > deadline) throw new Error(`timed out after ${TUNNELS_TIMEOUT_MS} ms: the adapter has ${established} of ${expected} tunnels with a session`);
      if (!sim.running) throw new Error(`the tunnel peer simulator exited\n${sim.output().slice(-2000)}`);
      await delay(2_000);
    }
  } catch (err) {
    await sim.kill("SIGTERM");
    throw err;
  }
}

async function sample(overlay: BenchOverlay, adapter: RunningDaemon, generalNodes: number, samples: number): Promise<MemoryPoint> {
  const tunnels = (await overlay.status(adapter)).tunnels.filter((t) => t.session).length;
  const rssBytes: number[] = [];
  const ussBytes: number[] = [];
  for (let i = 0; i < samples; i++) {
    if (i > 0) await delay(1_000);
    rssBytes.push(treeRssBytes([adapter.process.pid]));
    ussBytes.push(treeUssBytes([adapter.process.pid]));
  }
  return { generalNodes, tunnels, rssBytes, ussBytes, processes: processTree([adapter.process.pid]).length };
}

/**
 * Logs each process of the adapter's tree (the daemon and its dataplane
 * worker) with its RSS, proportional set size (Pss) and private pages
 * (Private_Clean + Private_Dirty), from /proc/PID/smaps_rollup, in MB.
 */
function logProcesses(adapter: RunningDaemon, log: (line: string) => void): void {
  for (const pid of processTree([adapter.process.pid])) {
    const memory = processMemory(pid);
    if (!memory) continue;
    const mb = (kB: number): string => ((kB * 1024) / 1e6).toFixed(1);
    log(`    pid ${pid} ${memory.command}: RSS ${mb(memory.rssKb)} MB, PSS ${mb(memory.pssKb)} MB, private ${mb(memory.privateKb)} MB`);
  }
}

/** Returns the command line and the smaps_rollup totals of a process in kB, or null when it exited. */
function processMemory(pid: number): { command: string; rssKb: number; pssKb: number; privateKb: number } | null {
  let rollup: string;
  let command: string;
  try {
    rollup = fs.readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
    command = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean).slice(0, 4).join(" ");
  } catch {
    return null;
  }
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(rollup)?.[1] ?? 0);
  return { command, rssKb: field("Rss"), pssKb: field("Pss"), privateKb: field("Private_Clean") + field("Private_Dirty") };
}

/** Returns a locally administered unicast MAC (bit 1 of the first octet set, bit 0 clear), which no vendor assigns. */
function madeUpMac(index: number): string {
  return `02:00:00:01:${((index >> 8) & 0xff).toString(16).padStart(2, "0")}:${(index & 0xff).toString(16).padStart(2, "0")}`;
}

async function runLimited<T>(items: T[], limit: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await task(items[next++]!);
    }),
  );
}

/** Formats the median of byte samples in MB (10^6 bytes), the unit of the memory target. */
function megabytes(samples: number[]): string {
  return ((summarize(samples)?.median ?? NaN) / 1e6).toFixed(1);
}
