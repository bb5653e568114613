// The dataplane worker process (`cyphonic dataplane`, started by the daemon,
// never by hand). It binds the daemon's UDP port, reads the TUN descriptor it
// inherited, and runs the fast path; the daemon keeps the keys and restarts
// this process when it dies or stops answering heartbeats.
import { TunDevice } from "../node/tun.js";
import { describePath } from "../transport/path.js";
import { bindUdp } from "../transport/udp.js";
import { Counters } from "../util/counters.js";
import { logger, RateLimitedLog } from "../util/log.js";
import { FastPath } from "./fast-path.js";
import { FromWorker, ToWorker } from "./ipc.js";

/** The TUN descriptor's number in the worker: stdio slot 4, after stdin, stdout, stderr and the IPC channel. */
export const WORKER_TUN_FD = 4;
/** While the IPC channel is backed up, datagrams for the control plane are dropped for this long, so a flood cannot fill memory. */
const CONTROL_BUSY_MS = 50;

export async function runDataplaneWorker(tunName: string | undefined): Promise<void> {
  if (!process.send) throw new Error("cyphonic dataplane is started by the node daemon over an IPC channel, not by hand");
  const send: (message: FromWorker) => boolean = process.send.bind(process);
  const log = logger("dataplane", { pid: process.pid });
  const dropLog = new RateLimitedLog(log);
  let busyUntilMs = 0;

  const toControl = (message: FromWorker): void => {
    // Traffic any sender can cause is dropped while the channel is backed up;
    // reports the control plane must see (receipts, grants, heartbeats) are not.
    const droppable = message.t === "datagram" || message.t === "packet" || message.t === "plaintext";
    if (droppable && Date.now() < busyUntilMs) {
      fast.counters.add("dataplane.drop.control_busy");
      return;
    }
    if (!send(message)) busyUntilMs = Date.now() + CONTROL_BUSY_MS;
  };

  const counters = new Counters();
  const tun = tunName ? TunDevice.fromDescriptor(WORKER_TUN_FD, tunName, counters) : null;
  let socket: Awaited<ReturnType<typeof bindUdp>> | null = null;
  const fast: FastPath = new FastPath({
    sendUdp: (datagram, to) => socket?.send(datagram, to),
    writeTun: (packet) => {
      if (tun) tun.write(packet);
      else fast.counters.add("tun.tx.drop.no_device");
    },
    toControl,
    dropped: (reason, source) => dropLog.warn(reason, { reason, source: describePath(source) }, "dropped datagram"),
  }, counters);

  process.on("message", (raw: ToWorker) => {
    try {
      switch (raw.t) {
        case "init":
          void start(raw.port);
          return;
        case "ping":
          send(fast.pong(raw.seq));
          return;
        default:
          fast.control(raw);
      }
    } catch (err) {
      fast.counters.add("dataplane.control_errors");
      log.error({ err, message: raw.t }, "control message failed");
    }
  });
  // The daemon died or closed the channel, so no process has the keys any more.
  process.on("disconnect", () => process.exit(0));
  // A terminal's Ctrl-C or a stop signal to the process group is the
  // daemon's to handle: it closes the channel when it is done with the
  // worker, so the worker outlives the daemon's own cleanup.
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => log.debug({ signal }, "signal ignored; the daemon stops this worker"));

  async function start(port: number): Promise<void> {
    try {
      socket = await bindUdp(
        port,
        (datagram, from) => fast.receiveDatagram(datagram, { kind: "direct", endpoint: from }),
        (err) => {
          fast.counters.add("send.errors");
          dropLog.warn(`send:${(err as NodeJS.ErrnoException).code ?? "unknown"}`, { err }, "UDP socket error");
        },
      );
    } catch (err) {
      send({ t: "fatal", message: `binding UDP port ${port} failed: ${(err as Error).message}` });
      process.exit(1);
    }
    tun?.onPacket((packet) => fast.receivePacket(packet));
    log.info({ port: socket.port, tun: tunName ?? null }, "dataplane worker ready");
    send({ t: "ready", port: socket.port, pid: process.pid });
  }

  await new Promise<never>(() => {});
}
