// Test harness for the network-namespace lab that scripts/lab.sh builds.
// Lab tests need root, because they create namespaces.
import { execFile, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { constants, tmpdir } from "node:os";
import path from "node:path";
import { startCapture, type Capture } from "./capture.js";
import { NamespaceProcess, type LabProcess, type LabSpawnOptions } from "./lab-process.js";
import type { DecodedPacket } from "./packet.js";
import { installTeardownHandlers, registerLab, unregisterLab } from "./teardown.js";

export type { Capture } from "./capture.js";
export type { LabProcess, LabSpawnOptions } from "./lab-process.js";
export type { DecodedPacket } from "./packet.js";

export type LabHost = "inet" | "cloud" | "cn1" | "cn2" | "natb" | "nata" | "adapter" | "gn" | "gn2" | "cn3" | "natc" | "cn4";
export const LAB_HOSTS: readonly LabHost[] = ["inet", "cloud", "cn1", "cn2", "natb", "nata", "adapter", "gn", "gn2", "cn3", "natc", "cn4"];

/** How natb picks the public port: masquerade maps endpoint-independently, random and fully-random per destination. */
export type NaptKind = "masquerade" | "random" | "fully-random";

export interface LabOptions {
  naptKind?: NaptKind;
}

export interface LabAddresses {
  /** inet's address on the internet segment, the default gateway of cloud, cn2 and natb. */
  inet: string;
  cloud: string;
  cn2: string;
  /** natb's public address, the source of cn1's traffic after NAPT. */
  natbWan: string;
  /** natb's LAN address, cn1's default gateway. */
  natbLan: string;
  /** cn1's private address, reachable only from natb's LAN. */
  cn1: string;
  /** nata's public address, the source of the adapter's traffic after NAPT. */
  nataWan: string;
  /** The adapter's WAN address on nata's LAN. */
  adapterWan: string;
  /** IPv6 addresses on the internet segment: cloud and cn2 are dual-stack, cn3 has IPv6 only. */
  cloud6: string;
  cn2v6: string;
  cn3v6: string;
}

export interface LabInterfaces {
  inet: string;
  cloud: string;
  cn2: string;
  natbWan: string;
  natbLan: string;
  cn1: string;
  /** The adapter's LAN NIC (a bridge that gn and gn2 plug into) and its WAN NIC. */
  adapterLan: string;
  adapterWan: string;
}

export interface LabNetworks {
  /** CIDR of the internet segment. */
  internet: string;
  /** CIDR of the LAN behind natb. */
  lanB: string;
  /** CIDR of the LAN behind nata, the adapter's WAN side. */
  lanA: string;
}

export interface ExecResult {
  /** Exit code, or 128 + signal number when a signal ended the command. */
  code: number;
  stdout: string;
  stderr: string;
}

const REPO_ROOT = path.resolve(__dirname, "..", "..");
const LAB_SCRIPT = path.join(REPO_ROOT, "scripts", "lab.sh");
const DEFAULT_EXEC_TIMEOUT_MS = 10_000;
const LAB_SCRIPT_TIMEOUT_MS = 30_000;
const PIPE_DRAIN_TIMEOUT_MS = 1000;
const PREFIX_ATTEMPTS = 5;

export class Lab {
  private readonly processes = new Set<NamespaceProcess>();
  private readonly workDir: string;
  private downPromise: Promise<void> | undefined;
  private captureCount = 0;

  private constructor(
    readonly prefix: string,
    readonly naptKind: NaptKind,
    readonly ns: Record<LabHost, string>,
    readonly addr: LabAddresses,
    readonly iface: LabInterfaces,
    readonly net: LabNetworks,
    /** Fixed MACs of the general nodes, so tests can register them before they ask for a lease. */
    readonly mac: { gn: string; gn2: string },
  ) {
    this.workDir = mkdtempSync(path.join(tmpdir(), `${prefix}-`));
  }

  /** Moves cn1's link to natb's LAN, natc's LAN or the IPv6-only internet segment. */
  async move(target: "natb" | "natc" | "v6"): Promise<void> {
    const r = await runLabScript(["move", this.prefix, "cn1", target]);
    if (r.code !== 0) throw new Error(`lab.sh move ${target} failed with exit code ${r.code}:\n${r.stderr}`);
  }

  /** Changes a NAPT router's port mapping while the lab runs. */
  async setNapt(router: "natb" | "nata" | "natc", kind: NaptKind): Promise<void> {
    const r = await runLabScript(["napt", this.prefix, router, kind]);
    if (r.code !== 0) throw new Error(`lab.sh napt ${router} ${kind} failed with exit code ${r.code}:\n${r.stderr}`);
  }

  /** Creates a lab with a fresh random prefix. The caller must take it down with down(). */
  static async up(opts: LabOptions = {}): Promise<Lab> {
    if (process.getuid?.() !== 0) {
      throw new Error("Lab.up needs root, because it creates network namespaces: run the lab tests as root");
    }
    const naptKind = opts.naptKind ?? "masquerade";
    installTeardownHandlers();
    for (let attempt = 1; ; attempt += 1) {
      const prefix = `cy${randomBytes(2).toString("hex")}`;
      const result = await runLabScript(["up", prefix, "--napt", naptKind]);
      if (result.code === 0) {
        let lab: Lab;
        try {
          lab = Lab.fromOutput(prefix, naptKind, result.stdout);
        } catch (error) {
          await runLabScript(["down", prefix]);
          throw error;
        }
        registerLab(lab);
        return lab;
      }
      // Another run uses this prefix, and lab.sh left its namespaces alone.
      if (result.stderr.includes("already exist") && attempt < PREFIX_ATTEMPTS) {
        continue;
      }
      throw new Error(`lab.sh up ${prefix} failed with exit code ${result.code}:\n${result.stderr}`);
    }
  }

  private static fromOutput(prefix: string, naptKind: NaptKind, stdout: string): Lab {
    const values = parseKeyValues(stdout);
    const value = (key: string): string => {
      const found = values.get(key);
      if (found === undefined) {
        throw new Error(`lab.sh up output has no ${key}:\n${stdout}`);
      }
      return found;
    };
    const ns = Object.fromEntries(LAB_HOSTS.map((host) => [host, value(`NS_${host.toUpperCase()}`)])) as Record<LabHost, string>;
    return new Lab(
      prefix,
      naptKind,
      ns,
      {
        inet: value("ADDR_INET"),
        cloud: value("ADDR_CLOUD"),
        cn2: value("ADDR_CN2"),
        natbWan: value("ADDR_NATB_WAN"),
        natbLan: value("ADDR_NATB_LAN"),
        cn1: value("ADDR_CN1"),
        nataWan: value("ADDR_NATA_WAN"),
        adapterWan: value("ADDR_ADAPTER_WAN"),
        cloud6: value("ADDR6_CLOUD"),
        cn2v6: value("ADDR6_CN2"),
        cn3v6: value("ADDR6_CN3"),
      },
      {
        inet: value("IF_INET"),
        cloud: value("IF_CLOUD"),
        cn2: value("IF_CN2"),
        natbWan: value("IF_NATB_WAN"),
        natbLan: value("IF_NATB_LAN"),
        cn1: value("IF_CN1"),
        adapterLan: value("IF_ADAPTER_LAN"),
        adapterWan: value("IF_ADAPTER_WAN"),
      },
      { internet: value("NET_INTERNET"), lanB: value("NET_LAN_B"), lanA: value("NET_LAN_A") },
      { gn: value("MAC_GN"), gn2: value("MAC_GN2") },
    );
  }

  /**
   * Runs `argv` in `host` and resolves when it exits. Rejects when it runs
   * longer than `timeoutMs` (default 10 s), after killing its process group.
   */
  async exec(host: LabHost, argv: string[], opts: { timeoutMs?: number } = {}): Promise<ExecResult> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS;
    const child = this.spawnTracked(host, argv, { cwd: REPO_ROOT });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      void child.kill("SIGKILL");
    }, timeoutMs);
    let exitCode: number | null;
    try {
      exitCode = await child.exited;
    } finally {
      clearTimeout(timer);
    }
    // A background process that the command left behind can hold the pipes
    // open, so draining them is bounded.
    await Promise.race([child.closed, delay(PIPE_DRAIN_TIMEOUT_MS)]);
    const { stdout, stderr } = child;
    if (timedOut) {
      throw new Error(`'${argv.join(" ")}' in ${this.ns[host]} timed out after ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`);
    }
    const code = exitCode ?? 128 + (child.exitSignal === null ? 0 : constants.signals[child.exitSignal]);
    return { code, stdout, stderr };
  }

  /** Starts `argv` in `host` in its own process group, which down() kills. */
  spawn(host: LabHost, argv: string[], opts: LabSpawnOptions = {}): LabProcess {
    return this.spawnTracked(host, argv, { cwd: REPO_ROOT, ...opts });
  }

  /**
   * Starts tcpdump on `iface` in `host` with a pcap-filter(7) expression and
   * resolves once it is listening, with a handle whose stop() returns the packets.
   */
  capture(host: LabHost, iface: string, filter: string): Promise<Capture>;
  /** Captures for `durationMs`, counted from the moment tcpdump is listening, and returns the packets. */
  capture(host: LabHost, iface: string, filter: string, durationMs: number): Promise<DecodedPacket[]>;
  async capture(host: LabHost, iface: string, filter: string, durationMs?: number): Promise<Capture | DecodedPacket[]> {
    this.captureCount += 1;
    const file = path.join(this.workDir, `${host}-${iface}-${this.captureCount}.pcap`);
    const capture = await startCapture((argv) => this.spawnTracked(host, argv, {}), iface, filter, file);
    if (durationMs === undefined) {
      return capture;
    }
    await delay(durationMs);
    return capture.stop();
  }

  /** Kills every tracked process and deletes the namespaces. Later calls return the first call's promise. */
  down(): Promise<void> {
    this.downPromise ??= this.teardown();
    return this.downPromise;
  }

  /** Synchronous teardown for process 'exit' and signal handlers, where awaiting is impossible. */
  downSync(): void {
    for (const child of this.processes) {
      child.killGroupSync();
    }
    spawnSync(LAB_SCRIPT, ["down", this.prefix], { stdio: "ignore", timeout: LAB_SCRIPT_TIMEOUT_MS });
    rmSync(this.workDir, { recursive: true, force: true });
    unregisterLab(this);
  }

  private async teardown(): Promise<void> {
    const kills = await Promise.allSettled([...this.processes].map((child) => child.kill("SIGTERM")));
    // The namespaces go even when a kill failed, and lab.sh down kills whatever is left inside them.
    const result = await runLabScript(["down", this.prefix]);
    rmSync(this.workDir, { recursive: true, force: true });
    unregisterLab(this);
    const failedKills = kills.filter((outcome) => outcome.status === "rejected");
    if (result.code !== 0) {
      throw new Error(`lab.sh down ${this.prefix} failed with exit code ${result.code}:\n${result.stderr}`);
    }
    if (failedKills.length > 0) {
      throw new Error(`failed to kill ${failedKills.length} lab process(es): ${String((failedKills[0] as PromiseRejectedResult).reason)}`);
    }
  }

  private spawnTracked(host: LabHost, argv: string[], opts: LabSpawnOptions): NamespaceProcess {
    if (this.downPromise !== undefined) {
      throw new Error(`cannot start '${argv.join(" ")}' because lab ${this.prefix} is down`);
    }
    const namespace = this.ns[host];
    if (namespace === undefined) {
      throw new Error(`unknown lab host '${String(host)}': expected one of ${LAB_HOSTS.join(", ")}`);
    }
    const child = new NamespaceProcess(namespace, argv, opts);
    this.processes.add(child);
    return child;
  }
}

function parseKeyValues(text: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const line of text.split("\n")) {
    const match = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (match !== null) {
      values.set(match[1]!, match[2]!);
    }
  }
  return values;
}

function runLabScript(args: string[]): Promise<ExecResult> {
  return new Promise((resolve) => {
    execFile(
      LAB_SCRIPT,
      args,
      { timeout: LAB_SCRIPT_TIMEOUT_MS, env: { ...process.env, LAB_OWNER_PID: String(process.pid) } },
      (error, stdout, stderr) => {
        let code = 0;
        if (error !== null) {
          // error.code is a string such as ENOENT when the script did not start.
          code = typeof error.code === "number" ? error.code : 1;
        }
        resolve({ code, stdout, stderr });
      },
    );
  });
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
