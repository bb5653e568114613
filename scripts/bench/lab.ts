// The benchmark's own namespace lab: scripts/lab.sh with a fixed prefix of
// the benchmark (default "bnch1"), so it never shares namespaces with the lab
// tests, whose prefixes are "cy" and 4 hex digits. Processes are started with
// the lab tests' NamespaceProcess and killed by the teardown.
import { execFile, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { NamespaceProcess, type LabSpawnOptions } from "../../test/lab/lab-process.js";

export const REPO_ROOT = path.resolve(__dirname, "..", "..");
const LAB_SCRIPT = path.join(REPO_ROOT, "scripts", "lab.sh");
/** lab.sh writes the PID of each lab's owner here. */
const OWNER_DIR = "/run/cyphonic-lab";
const LAB_SCRIPT_TIMEOUT_MS = 60_000;
const PIPE_DRAIN_TIMEOUT_MS = 1_000;

/** The hosts of scripts/lab.sh that the benchmark uses. */
export type BenchHost = "cloud" | "cn2" | "adapter" | "gn";

export interface ExecResult {
  /** Exit code, or null when a signal ended the command. */
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Addresses and names from the KEY=VALUE lines that `lab.sh up` prints. */
export interface BenchLabInfo {
  cloud: string;
  cloud6: string;
  cn2: string;
  adapterWan: string;
  adapterLanInterface: string;
  adapterWanInterface: string;
  macGn: string;
}

export class BenchLab {
  private readonly processes = new Set<NamespaceProcess>();
  private downDone = false;

  private constructor(
    readonly prefix: string,
    readonly info: BenchLabInfo,
  ) {}

  /**
   * Creates the lab. A lab with the same prefix that a finished or killed
   * benchmark left behind is removed first. A lab whose owner still runs is
   * an error.
   */
  static async up(prefix: string): Promise<BenchLab> {
    const ownerFile = path.join(OWNER_DIR, `${prefix}.pid`);
    const owner = fs.existsSync(ownerFile) ? Number(fs.readFileSync(ownerFile, "utf8").trim()) : NaN;
    if (Number.isInteger(owner) && owner !== process.pid && isAlive(owner)) {
      throw new Error(`lab ${prefix} belongs to the running process ${owner}; wait for it or set BENCH_PREFIX to another prefix`);
    }
    await runLabScript(["down", prefix]);
    const result = await runLabScript(["up", prefix]);
    if (result.code !== 0) throw new Error(`lab.sh up ${prefix} failed with exit code ${result.code}:\n${result.stderr}`);
    const values = new Map<string, string>();
    for (const line of result.stdout.split("\n")) {
      const match = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
      if (match) values.set(match[1]!, match[2]!);
    }
    const value = (key: string): string => {
      const found = values.get(key);
      if (found === undefined) throw new Error(`lab.sh up printed no ${key}:\n${result.stdout}`);
      return found;
    };
    return new BenchLab(prefix, {
      cloud: value("ADDR_CLOUD"),
      cloud6: value("ADDR6_CLOUD"),
      cn2: value("ADDR_CN2"),
      adapterWan: value("ADDR_ADAPTER_WAN"),
      adapterLanInterface: value("IF_ADAPTER_LAN"),
      adapterWanInterface: value("IF_ADAPTER_WAN"),
      macGn: value("MAC_GN"),
    });
  }

  /** Returns the namespace name of a lab host, or of an extra namespace made with addNamespace. */
  ns(host: string): string {
    return `${this.prefix}-${host}`;
  }

  /** Creates namespace "<prefix>-<name>" with only a loopback interface. `lab.sh down` deletes it with the rest. */
  addNamespace(name: string): string {
    const namespace = this.ns(name);
    runChecked("ip", ["netns", "add", namespace]);
    runChecked("ip", ["-n", namespace, "link", "set", "lo", "up"]);
    return namespace;
  }

  /** Starts argv in a host in its own process group, which stopAll() and down() kill. */
  spawn(host: string, argv: string[], opts: LabSpawnOptions = {}): NamespaceProcess {
    if (this.downDone) throw new Error(`cannot start '${argv.join(" ")}': lab ${this.prefix} is down`);
    const child = new NamespaceProcess(this.ns(host), argv, { cwd: REPO_ROOT, ...opts });
    this.processes.add(child);
    void child.exited.then(() => this.processes.delete(child));
    return child;
  }

  /** Runs argv in a host and returns its output. After timeoutMs it kills the process group and rejects. */
  async exec(host: string, argv: string[], timeoutMs = 30_000, env?: Record<string, string>): Promise<ExecResult> {
    const child = this.spawn(host, argv, env ? { env } : {});
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      void child.kill("SIGKILL");
    }, timeoutMs);
    let code: number | null;
    try {
      code = await child.exited;
    } finally {
      clearTimeout(timer);
    }
    // A background process left by the command can hold the pipes open.
    await Promise.race([child.closed, delay(PIPE_DRAIN_TIMEOUT_MS)]);
    if (timedOut) throw new Error(`'${argv.join(" ")}' in ${this.ns(host)} timed out after ${timeoutMs} ms\n${child.output().slice(-2000)}`);
    return { code, stdout: child.stdout, stderr: child.stderr };
  }

  /** Like exec, but rejects on a non-zero exit code too. */
  async run(host: string, argv: string[], timeoutMs = 30_000): Promise<string> {
    const r = await this.exec(host, argv, timeoutMs);
    if (r.code !== 0) throw new Error(`'${argv.join(" ")}' in ${this.ns(host)} failed with exit code ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
    return r.stdout;
  }

  /** Stops every process the benchmark started so far, and keeps the namespaces. */
  async stopAll(): Promise<void> {
    await Promise.allSettled([...this.processes].map((child) => child.kill("SIGTERM")));
  }

  /** Kills every process the benchmark started and deletes the namespaces. */
  async down(): Promise<void> {
    if (this.downDone) return;
    this.downDone = true;
    await Promise.allSettled([...this.processes].map((child) => child.kill("SIGTERM")));
    const result = await runLabScript(["down", this.prefix]);
    if (result.code !== 0) throw new Error(`lab.sh down ${this.prefix} failed with exit code ${result.code}:\n${result.stderr}`);
  }

  /** Synchronous teardown for signal handlers, where awaiting is impossible. */
  downSync(): void {
    if (this.downDone) return;
    this.downDone = true;
    for (const child of this.processes) child.killGroupSync();
    spawnSync(LAB_SCRIPT, ["down", this.prefix], { stdio: "ignore", timeout: LAB_SCRIPT_TIMEOUT_MS });
  }
}

function runLabScript(args: string[]): Promise<ExecResult> {
  return new Promise((resolve) => {
    execFile(LAB_SCRIPT, args, { timeout: LAB_SCRIPT_TIMEOUT_MS, env: { ...process.env, LAB_OWNER_PID: String(process.pid) } }, (error, stdout, stderr) => {
      let code = 0;
      if (error !== null) {
        // error.code is a string such as ENOENT when the script did not start.
        code = typeof error.code === "number" ? error.code : 1;
      }
      resolve({ code, stdout, stderr });
    });
  });
}

function runChecked(command: string, args: string[]): void {
  const r = spawnSync(command, args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${command} ${args.join(" ")} failed with exit code ${r.status}: ${r.stderr}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
