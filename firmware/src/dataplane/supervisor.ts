// Runs the dataplane worker process and keeps it running. The daemon (the
// control plane) holds the keys and the TUN descriptor; the worker owns the
// UDP socket and does the per-packet work. When the worker exits, or misses
// heartbeats (stopped, or stuck in a loop), it is killed and a new one gets
// the same port, the same TUN descriptor and every session from the counters
// last granted on, so tunnels continue without a handshake. Crash loops back
// off exponentially.
import { ChildProcess, fork } from "node:child_process";
import path from "node:path";
import { Endpoint } from "../protocol/endpoint.js";
import { Source } from "../transport/path.js";
import { UdpSocket } from "../transport/udp.js";
import { Counters } from "../util/counters.js";
import { Logger } from "../util/log.js";
import { AnyEngine, AnyPeer, CarriedState, EngineCarrier, PeerRole } from "./engine-carrier.js";
import { FromWorker, ToWorker } from "./ipc.js";

/**
 * Heartbeat period, and how many heartbeats in a row may go unanswered
 * before the worker counts as hung. Counting unanswered pings rather than
 * time keeps a stall of this process (which sends no pings meanwhile) from
 * looking like a hung worker.
 */
const HEARTBEAT_MS = 250;
const MAX_UNANSWERED_PINGS = 6;
/** Heartbeats a starting worker may take to bind its socket and reply (10 s, an estimate of Node's start-up on a loaded Pi). */
const MAX_START_BEATS = 40;
/** A worker that ran this long was healthy: its exit starts a new backoff series. */
const STABLE_UPTIME_MS = 10_000;
/** The first restart of a series is immediate; the next ones wait this long, doubling up to the maximum. */
const RESTART_BASE_DELAY_MS = 500;
const RESTART_MAX_DELAY_MS = 30_000;

export interface DataplaneOptions {
  /** UDP port to bind, 0 for any (the first worker's port is kept for the next ones). */
  port: number;
  /** The TUN interface the daemon created; the worker reads and writes its descriptor. */
  tun: { name: string; fd: number } | null;
  /** The packets a peer carries: the worker delivers tunnel packets and unwraps relay messages itself. */
  roleOf(engine: AnyEngine, peer: AnyPeer): PeerRole;
  /** Datagrams the worker does not carry (handshakes). */
  onDatagram(datagram: Buffer, source: Source): void;
  /** Packets from the local stack that have no sendable session. */
  onPacket(packet: Buffer): void;
  log: Logger;
  /**
   * The program and arguments that run `cyphonic dataplane`. By default the
   * worker's own bundle next to dist/cyphonic.cjs, or this program when it
   * runs from source.
   */
  command?: { modulePath: string; args: string[] };
}

/**
 * Node.js options of the worker, after the daemon's own (process.execArgv),
 * so they take precedence. --max-semi-space-size=1 caps each of V8's two
 * young-generation semi-spaces at 1 MB. Node 20's limit on 64-bit systems is
 * 16 MB each, and per-packet garbage grows them towards it. In a FastPath
 * microbenchmark on x86-64 (about 250,000 packets/s of 1400 bytes) the cap
 * saved 12 to 14 MB of RSS with no throughput loss beyond run-to-run noise,
 * because a packet's buffers die young and a scavenge copies only survivors.
 */
const WORKER_NODE_OPTIONS = ["--max-semi-space-size=1"];

/**
 * File name of the worker's bundle, set by scripts/build.mjs (esbuild define)
 * in dist/cyphonic.cjs only. Running from source leaves it undeclared.
 */
declare const CYPHONIC_DATAPLANE_BUNDLE: string | undefined;

/** Returns the program that runs `cyphonic dataplane` when the options name none. */
function defaultWorkerCommand(): { modulePath: string; args: string[] } {
  // In the bundle, __dirname is the directory of cyphonic.cjs after symlinks
  // are resolved, so /usr/bin/cyphonic finds /usr/lib/cyphonic/dataplane.cjs.
  if (typeof CYPHONIC_DATAPLANE_BUNDLE === "string") return { modulePath: path.join(__dirname, CYPHONIC_DATAPLANE_BUNDLE), args: [] };
  return { modulePath: process.argv[1]!, args: [] };
}

export interface Recovery {
  reason: string;
  /** From the worker's exit (or its last heartbeat, when hung) to the new worker's readiness, in ms. */
  gapMs: number;
  atMs: number;
}

export interface DataplaneStatus {
  pid: number | null;
  restarts: number;
  /** Consecutive short-lived workers; the restart delay grows with it. */
  crashStreak: number;
  nextRestartDelayMs: number;
  lastRecovery: Recovery | null;
}

export class DataplaneSupervisor implements UdpSocket {
  readonly counters = new Counters();
  readonly dualStack = true;
  private readonly state: CarriedState;
  private child: ChildProcess | null = null;
  private ready = false;
  private closing = false;
  private boundPort: number;
  private startedMs = 0;
  private lastPongMs = 0;
  private pingSeq = 0;
  private unanswered = 0;
  private startBeats = 0;
  private heartbeat: NodeJS.Timeout | null = null;
  private restartTimer: NodeJS.Timeout | null = null;
  private crashStreak = 0;
  private nextDelayMs = 0;
  private downSinceMs = 0;
  private downReason = "";
  /** Set when this supervisor killed a hung worker, whose outage began at its last heartbeat. */
  private killedAsHung = false;
  private lastRecovery: Recovery | null = null;
  private workerCounters: Record<string, number> = {};
  private firstStart: { resolve: () => void; reject: (err: Error) => void } | null = null;

  constructor(private readonly options: DataplaneOptions) {
    this.boundPort = options.port;
    this.state = new CarriedState(
      (m) => this.post(m),
      (engine, peer) => options.roleOf(engine, peer),
    );
  }

  /** Starts the first worker; resolves once it has bound the port, rejects when it cannot. */
  start(): Promise<void> {
    const started = new Promise<void>((resolve, reject) => (this.firstStart = { resolve, reject }));
    this.spawn();
    this.heartbeat = setInterval(() => this.beat(), HEARTBEAT_MS);
    this.heartbeat.unref();
    return started;
  }

  get port(): number {
    return this.boundPort;
  }

  /** Returns the carrier for one endpoint's sessions. */
  carrierFor(engine: AnyEngine): EngineCarrier {
    return new EngineCarrier(engine, this.state);
  }

  send(datagram: Buffer, to: Endpoint): void {
    this.post({ t: "send", datagram, to });
  }

  writeTun(packet: Buffer): void {
    this.post({ t: "tun", packet });
  }

  /** Counters of the current worker (they restart at zero with it) and of the supervisor. */
  countersSnapshot(): Record<string, number> {
    const out: Record<string, number> = { ...this.workerCounters };
    for (const [k, v] of Object.entries(this.counters.snapshot())) out[k] = (out[k] ?? 0) + v;
    return out;
  }

  status(): DataplaneStatus {
    return {
      pid: this.ready ? (this.child?.pid ?? null) : null,
      restarts: this.counters.get("dataplane.restarts"),
      crashStreak: this.crashStreak,
      nextRestartDelayMs: this.nextDelayMs,
      lastRecovery: this.lastRecovery,
    };
  }

  close(): void {
    this.closing = true;
    this.firstStart?.reject(new Error("dataplane closed before its worker was ready"));
    this.firstStart = null;
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.restartTimer) clearTimeout(this.restartTimer);
    const child = this.child;
    this.child = null;
    if (!child) return;
    // Closing the channel makes the worker exit by itself; a hung one is killed.
    if (child.connected) child.disconnect();
    setTimeout(() => child.kill("SIGKILL"), 1_000).unref();
  }

  private post(message: ToWorker): void {
    if (!this.ready || !this.child?.connected) {
      // State messages are replayed to the next worker; only traffic is lost.
      if (message.t === "seal" || message.t === "send" || message.t === "tun" || message.t === "receive") this.counters.add("dataplane.drop.no_worker");
      return;
    }
    this.child.send(message);
  }

  private spawn(): void {
    const command = this.options.command ?? defaultWorkerCommand();
    const args = [...command.args, "dataplane", ...(this.options.tun ? ["--tun", this.options.tun.name] : [])];
    const child = fork(command.modulePath, args, {
      // Slot 4 carries the TUN descriptor (WORKER_TUN_FD in the worker).
      stdio: ["ignore", "inherit", "inherit", "ipc", this.options.tun?.fd ?? "ignore"],
      serialization: "advanced",
      // For profiling the worker alone, e.g. CYPHONIC_DATAPLANE_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof".
      execArgv: [
        ...process.execArgv,
        // The adapter's unit passes the same option to the daemon, and twice would only clutter `ps`.
        ...WORKER_NODE_OPTIONS.filter((option) => !process.execArgv.includes(option)),
        ...(process.env.CYPHONIC_DATAPLANE_NODE_ARGS ?? "").split(" ").filter(Boolean),
      ],
    });
    this.child = child;
    this.ready = false;
    this.startBeats = 0;
    this.startedMs = Date.now();
    child.on("message", (m: FromWorker) => {
      if (this.child === child) this.fromWorker(m);
    });
    child.on("error", (err) => this.options.log.error({ err }, "dataplane worker error"));
    child.on("exit", (code, signal) => this.exited(child, code, signal));
    child.send({ t: "init", port: this.boundPort } satisfies ToWorker);
  }

  private fromWorker(m: FromWorker): void {
    switch (m.t) {
      case "ready":
        return this.onReady(m.port, m.pid);
      case "fatal":
        this.options.log.error({ reason: m.message }, "dataplane worker could not start");
        if (this.firstStart) {
          this.firstStart.reject(new Error(`dataplane worker could not start: ${m.message}`));
          this.firstStart = null;
          this.close();
        }
        return;
      case "datagram":
        // A relayed handshake belongs to the member whose TRS session carried it.
        if (m.group !== undefined) return this.state.carriersByGroup.get(m.group)?.engine.receive(m.datagram, m.source);
        return this.options.onDatagram(m.datagram, m.source);
      case "packet":
        return this.options.onPacket(m.packet);
      case "authenticated":
        return this.state.carrierOfSession(m.index)?.engine.carriedReceipt(m.index, m.source);
      case "plaintext":
        return this.state.carrierOfSession(m.index)?.engine.carriedPlaintext(m.index, m.plaintext, m.source);
      case "reserve":
        return this.state.grant(m.index);
      case "pong":
        this.lastPongMs = Date.now();
        this.unanswered = 0;
        this.workerCounters = m.counters;
        this.state.applyUsage(m.sessions, m.peers);
        return;
      default:
        return;
    }
  }

  private onReady(port: number, pid: number): void {
    this.ready = true;
    this.boundPort = port;
    this.lastPongMs = Date.now();
    this.unanswered = 0;
    this.state.replay();
    if (this.firstStart) {
      this.options.log.info({ pid, port }, "dataplane worker started");
      this.firstStart.resolve();
      this.firstStart = null;
      return;
    }
    const now = Date.now();
    this.lastRecovery = { reason: this.downReason, gapMs: now - this.downSinceMs, atMs: now };
    this.options.log.warn({ pid, reason: this.downReason, gapMs: this.lastRecovery.gapMs }, "dataplane worker replaced; sessions handed over");
    this.downReason = "";
    this.downSinceMs = 0;
  }

  private beat(): void {
    const child = this.child;
    if (!child) return;
    if (!this.ready) {
      // A worker stuck in start-up sends no heartbeat reply either.
      if (++this.startBeats < MAX_START_BEATS) return;
      this.options.log.error({ pid: child.pid, waitedMs: this.startBeats * HEARTBEAT_MS }, "dataplane worker did not get ready; killing it");
      this.counters.add("dataplane.hangs");
      this.downReason ||= "did not get ready";
      this.downSinceMs ||= Date.now();
      this.killedAsHung = true;
      this.startBeats = 0;
      child.kill("SIGKILL");
      return;
    }
    if (this.unanswered >= MAX_UNANSWERED_PINGS) {
      const silentMs = Date.now() - this.lastPongMs;
      this.options.log.error({ pid: child.pid, silentMs, unanswered: this.unanswered }, "dataplane worker missed its heartbeats; killing it");
      this.counters.add("dataplane.hangs");
      this.downReason = "missed heartbeats";
      this.downSinceMs = this.lastPongMs;
      this.killedAsHung = true;
      this.ready = false;
      child.kill("SIGKILL");
      return;
    }
    this.unanswered++;
    this.post({ t: "ping", seq: ++this.pingSeq });
  }

  private exited(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.child !== child) return;
    this.child = null;
    const wasHung = this.killedAsHung;
    this.killedAsHung = false;
    this.ready = false;
    if (this.closing) return;
    const now = Date.now();
    // An outage lasts from the first worker's end to the next ready one,
    // across replacements that fail on the way.
    if (!wasHung && !this.downSinceMs) {
      this.downReason = signal ? `killed by ${signal}` : `exited with code ${code}`;
      this.downSinceMs = now;
    }
    if (this.firstStart) {
      this.firstStart.reject(new Error(`dataplane worker ${this.downReason} before it was ready`));
      this.firstStart = null;
      this.close();
      return;
    }
    const uptimeMs = now - this.startedMs;
    this.crashStreak = uptimeMs < STABLE_UPTIME_MS ? this.crashStreak + 1 : 1;
    this.nextDelayMs = this.crashStreak <= 1 ? 0 : Math.min(RESTART_MAX_DELAY_MS, RESTART_BASE_DELAY_MS * 2 ** (this.crashStreak - 2));
    this.counters.add("dataplane.restarts");
    this.options.log.error({ pid: child.pid, reason: this.downReason, uptimeMs, restartInMs: this.nextDelayMs, crashStreak: this.crashStreak }, "dataplane worker stopped; restarting it");
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      this.spawn();
    }, this.nextDelayMs);
  }
}
