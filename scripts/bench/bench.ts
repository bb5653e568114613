// `make bench`: measures CYPHONIC against no tunnel, wireguard-go and nebula
// in the namespace lab, then the adapter's memory and the cloud at scale,
// and writes docs/benchmarks.md with a plot. Needs root (namespaces, TUN
// devices) and the packages scripts/bench/run.sh installs. Every process it
// starts runs in the benchmark's own namespaces ("<prefix>-*", default
// prefix "bnch1"), and no traffic leaves them. They are deleted at the end.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { BenchConfig, estimateSeconds, loadConfig } from "./config.js";
import { BenchLab, REPO_ROOT } from "./lab.js";
import { Measurer } from "./measure.js";
import { runCloudScale } from "./phase-cloud.js";
import { runMemory } from "./phase-memory.js";
import { runPaths } from "./phase-paths.js";
import { writeReport } from "./report.js";
import type { RunRecord } from "./results.js";
import { startSystems } from "./systems.js";

const SYSTEM_COUNT = 6;

const startedMs = Date.now();

/** Prints a progress line with the seconds since the start. */
function log(line: string): void {
  const seconds = Math.round((Date.now() - startedMs) / 1000);
  process.stdout.write(`bench: [${String(seconds).padStart(4)} s] ${line}\n`);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("the benchmark needs root, because it creates network namespaces and TUN devices: run it as root");
  const config = loadConfig(process.env, REPO_ROOT);
  const cyphonic = path.join(REPO_ROOT, "dist", "cyphonic.cjs");
  if (!fs.existsSync(cyphonic)) throw new Error(`${cyphonic} is missing: run "make build" first`);

  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), `${config.prefix}-bench-`));
  const started = new Date();
  const estimate = estimateSeconds(config, SYSTEM_COUNT);
  log(`${config.quick ? "quick run (smoke figures only)" : "full run"}, phases ${[...config.phases].join(", ")}; estimated ${Math.round(estimate / 60)} min`);
  log(`logs and results.json in ${workDir}`);

  const record: RunRecord = {
    startedAt: started.toISOString(),
    finishedAt: "",
    durationSeconds: 0,
    phaseSeconds: {},
    config: { ...config, phases: [...config.phases] },
    machine: machineInfo(),
    versions: versions(),
    commit: commitInfo(config.docsDir),
    systems: [],
    memory: null,
    cloud: null,
  };

  const lab = await BenchLab.up(config.prefix);
  installTeardown(lab);
  try {
    await runPhases(lab, workDir, config, record);
  } finally {
    await lab.down();
  }
  const finished = new Date();
  record.finishedAt = finished.toISOString();
  record.durationSeconds = Math.round((finished.getTime() - started.getTime()) / 1000);
  fs.writeFileSync(path.join(workDir, "results.json"), JSON.stringify(record, null, 2) + "\n");
  const { markdown, plot } = writeReport(record, config.docsDir, workDir);
  log(`wrote ${markdown} and ${plot} after ${Math.round(record.durationSeconds / 60)} min`);
}

async function runPhases(lab: BenchLab, workDir: string, config: BenchConfig, record: RunRecord): Promise<void> {
  const timed = async (phase: string, task: () => Promise<void>): Promise<void> => {
    const t0 = Date.now();
    await task();
    record.phaseSeconds[phase] = Math.round((Date.now() - t0) / 1000);
  };
  if (!config.phases.has("paths") && !config.phases.has("memory")) {
    await timed("cloud", async () => {
      log("cloud scale");
      record.cloud = await runCloudScale(lab, workDir, config, log);
    });
    return;
  }
  let systems: Awaited<ReturnType<typeof startSystems>> | null = null;
  await timed("setup", async () => {
    systems = await startSystems(lab, workDir, log);
  });
  const ready = systems!;
  if (config.phases.has("paths")) {
    await timed("paths", async () => {
      const measurer = new Measurer(lab, config.udpPayloadBytes);
      const chosen = config.systems.size ? ready.list.filter((s) => config.systems.has(s.id)) : ready.list;
      record.systems = await runPaths(chosen, measurer, config, log);
    });
  }
  if (config.phases.has("memory")) {
    await timed("memory", async () => {
      log("adapter memory");
      await ready.releaseAdapterHost();
      record.memory = await runMemory(lab, ready.overlay, config, log);
    });
  }
  if (config.phases.has("cloud")) {
    await timed("cloud", async () => {
      // The tunnels and the lab's cloud would only take CPU time from the cloud under test.
      await lab.stopAll();
      log("cloud scale");
      record.cloud = await runCloudScale(lab, workDir, config, log);
    });
  }
}

/** Removes the lab when the run is interrupted. After a SIGKILL the lab stays, and the next run removes it first. */
function installTeardown(lab: BenchLab): void {
  for (const [signal, code] of [
    ["SIGINT", 130],
    ["SIGTERM", 143],
  ] as const) {
    process.once(signal, () => {
      log(`${signal}: removing lab ${lab.prefix}`);
      lab.downSync();
      process.exit(code);
    });
  }
}

function machineInfo(): RunRecord["machine"] {
  const cpuinfo = fs.readFileSync("/proc/cpuinfo", "utf8");
  const osRelease = fs.readFileSync("/etc/os-release", "utf8");
  return {
    cpuModel: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? "unknown",
    cores: os.cpus().length,
    kernel: os.release(),
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    os: /^PRETTY_NAME="?([^"\n]+)"?$/m.exec(osRelease)?.[1] ?? "unknown",
  };
}

/** Returns the versions of the programs under test: Debian package versions, and Node.js's own. */
function versions(): Record<string, string> {
  const out: Record<string, string> = { node: process.version };
  for (const pkg of ["wireguard-go", "wireguard-tools", "nebula", "iperf3", "iproute2", "gnuplot-nox"]) {
    try {
      out[pkg] = execFileSync("dpkg-query", ["-W", "-f", "${Version}", pkg], { encoding: "utf8" }).trim();
    } catch {
      out[pkg] = "not installed";
    }
  }
  return out;
}

/** Returns the short commit id, marked when the work tree differs from it outside the pages this benchmark writes. */
function commitInfo(docsDir: string): string {
  const git = (...args: string[]) => execFileSync("git", args, { cwd: REPO_ROOT, encoding: "utf8" }).trim();
  try {
    const commit = git("rev-parse", "--short=12", "HEAD");
    const ownOutput = ["benchmarks.md", "benchmarks.png"]
      .map((file) => path.relative(REPO_ROOT, path.join(docsDir, file)))
      .filter((file) => !file.startsWith(".."))
      .map((file) => `:(exclude)${file}`);
    return git("status", "--porcelain", "--", ".", ...ownOutput) === "" ? commit : `${commit} with uncommitted changes`;
  } catch {
    return "unknown (not a git checkout)";
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
