// The CYPHONIC side of the benchmark, driven through the CLI as an operator
// would (cloud, admin, token files, node and adapter daemons), like the lab
// tests' overlay fixture but on the benchmark's own lab.
import fs from "node:fs";
import path from "node:path";
import type { NamespaceProcess } from "../../test/lab/lab-process.js";
import type { NodeStatusJson } from "../../test/lab/overlay-fixture.js";
import { controlRequest } from "../../firmware/src/util/control-socket.js";
import { BenchLab, REPO_ROOT, delay } from "./lab.js";

export const CYPHONIC = path.join(REPO_ROOT, "dist", "cyphonic.cjs");
/** The daemons' "registered" and "ready" lines are info level, whatever the caller's CYPHONIC_LOG_LEVEL. */
const DAEMON_ENV = { CYPHONIC_LOG_LEVEL: "info" };
const ADAPTER_UNIT = path.join(REPO_ROOT, "overlay/usr/lib/systemd/system/cyphonic-adapter.service");
const START_TIMEOUT_MS = 30_000;
/** A status with 1,000 tunnels takes the daemon a moment to build. */
const STATUS_TIMEOUT_MS = 10_000;

export interface DaemonSpec {
  host: string;
  name: string;
  /** The adapter's LAN NIC, absent for a plain node. */
  lan?: string;
}

export interface RunningDaemon {
  spec: DaemonSpec;
  process: NamespaceProcess;
  control: string;
}

export class BenchOverlay {
  cloud: NamespaceProcess | null = null;

  constructor(
    readonly lab: BenchLab,
    readonly dir: string,
  ) {
    fs.mkdirSync(dir, { recursive: true });
  }

  get cloudState(): string {
    return path.join(this.dir, "cloud");
  }

  async startCloud(): Promise<void> {
    const { cloud, cloud6 } = this.lab.info;
    this.cloud = this.lab.spawn(
      "cloud",
      ["node", CYPHONIC, "cloud", "--state", this.cloudState, "--advertise", cloud, "--advertise", cloud6, "--control", path.join(this.dir, "cloud.sock")],
      { logFile: path.join(this.dir, "cloud.log"), env: DAEMON_ENV },
    );
    await this.cloud.waitForLine(/"cloud started"/, START_TIMEOUT_MS);
  }

  /** Runs `cyphonic admin` on the cloud's state and returns its output lines split at tabs. */
  async admin(...args: string[]): Promise<string[][]> {
    const out = await this.lab.run("cloud", ["node", CYPHONIC, "admin", "--state", this.cloudState, ...args]);
    return out
      .split("\n")
      .filter(Boolean)
      .map((line) => line.split("\t"));
  }

  /** Creates a node (kind node or adapter) and returns its FQDN and virtual IP. */
  async createNode(name: string, kind: "node" | "adapter"): Promise<{ fqdn: string; virtualIP: string }> {
    const [fields] = await this.admin("node", "add", name, "--kind", kind);
    return { fqdn: fields?.[1] ?? "", virtualIP: fields?.[2] ?? "" };
  }

  /** Registers a general node behind an adapter and returns its virtual IP. */
  async addGeneralNode(adapter: string, name: string, mac: string): Promise<string> {
    const [fields] = await this.admin("general", "add", name, "--adapter", adapter, "--mac", mac);
    const virtualIP = fields?.[2];
    if (!virtualIP) throw new Error(`cyphonic admin general add ${name} printed no virtual IP`);
    return virtualIP;
  }

  /** Issues a token for a node, writes the token file and returns its path. */
  async issueToken(name: string): Promise<string> {
    const file = path.join(this.dir, `${name}.token`);
    const { cloud, cloud6 } = this.lab.info;
    await this.admin("token", "create", name, "--as-endpoint", `${cloud}:7400,[${cloud6}]:7400`, "--out", file);
    return file;
  }

  /**
   * Starts a node or adapter daemon and waits until it registered (and for
   * an adapter, until it is ready). The first start passes the token file;
   * later starts reuse the identity in the state directory.
   */
  async startDaemon(spec: DaemonSpec, tokenFile?: string, extraArgs: string[] = []): Promise<RunningDaemon> {
    const control = path.join(this.dir, `${spec.name}.sock`);
    const role = spec.lan ? ["adapter", "--lan", spec.lan] : ["node"];
    const args = ["node", ...(spec.lan ? adapterNodeOptions() : []), CYPHONIC, ...role, "--state", path.join(this.dir, spec.name), "--control", control, ...extraArgs];
    if (tokenFile) args.push("--token-file", tokenFile);
    const child = this.lab.spawn(spec.host, args, { logFile: path.join(this.dir, `${spec.name}.log`), env: DAEMON_ENV });
    await child.waitForLine(/"registered with NMS"/, START_TIMEOUT_MS);
    if (spec.lan) await child.waitForLine(/"adapter ready"/, START_TIMEOUT_MS);
    return { spec, process: child, control };
  }

  async stopDaemon(daemon: RunningDaemon): Promise<void> {
    await daemon.process.kill("SIGTERM");
  }

  /**
   * Returns the daemon's status from its control socket, the request that
   * `cyphonic status --json` sends.
   * NOTE: the CLI itself is not used, because it exits before a pipe has
   * taken more than 64 KiB of its output, and 1,000 tunnels are about 250 KB.
   */
  async status(daemon: RunningDaemon): Promise<NodeStatusJson> {
    return (await controlRequest(daemon.control, { command: "status" }, STATUS_TIMEOUT_MS)) as NodeStatusJson;
  }

  /** Counts the output lines of this run of the daemon that match `re`. */
  countLogLines(daemon: RunningDaemon, re: RegExp): number {
    return daemon.process
      .output()
      .split("\n")
      .filter((line) => re.test(line)).length;
  }

  /** Waits until `count` lines of this process match `re`, polling its output. */
  async waitForLogLines(daemon: RunningDaemon, re: RegExp, count: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const seen = this.countLogLines(daemon, re);
      if (seen >= count) return;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${count} lines matching ${re} from ${daemon.spec.name}, but saw ${seen}`);
      if (!daemon.process.running) throw new Error(`${daemon.spec.name} exited while waiting for ${re}\n${daemon.process.output().slice(-2000)}`);
      await delay(250);
    }
  }
}

/** Writes the udhcpc script of the general node, which configures the lease and nothing else, as a plain device does. */
export function writeUdhcpcScript(dir: string): string {
  const file = path.join(dir, "udhcpc.sh");
  fs.writeFileSync(
    file,
    `#!/bin/sh
[ "$1" = bound ] || [ "$1" = renew ] || exit 0
ip addr flush dev "$interface"
ip addr add "$ip/$subnet" dev "$interface"
ip route replace default via "$router"
`,
    { mode: 0o755 },
  );
  return file;
}

/**
 * Returns the Node.js options in the ExecStart line of the adapter's systemd
 * unit, so the bench runs the adapter's daemon as the appliance does.
 */
export function adapterNodeOptions(): string[] {
  const unit = fs.readFileSync(ADAPTER_UNIT, "utf8");
  const exec = /^ExecStart=\/usr\/bin\/node((?: --\S+)*) \/usr\/lib\/cyphonic\/cyphonic\.cjs /m.exec(unit);
  if (!exec) throw new Error(`${ADAPTER_UNIT} has no ExecStart line of the form "/usr/bin/node [OPTIONS] /usr/lib/cyphonic/cyphonic.cjs ..."`);
  return exec[1]!.trim().split(/\s+/).filter(Boolean);
}
