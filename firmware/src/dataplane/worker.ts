// The dataplane worker process (`cyphonic dataplane`, started by the daemon,
// never by hand). It binds the daemon's UDP port, reads the TUN descriptor it
// inherited, and runs the fast path in its packet loop; the daemon keeps the
// keys and restarts this process when it dies or stops replying to heartbeats.
import { describePath } from "../transport/path.js";
import { Counters } from "../util/counters.js";
import { F_GETFL, F_SETFL, errno, errnoName, libc, nonblockFlag } from "../util/libc.js";
import { logger, RateLimitedLog } from "../util/log.js";
import { FastPath } from "./fast-path.js";
import { FromWorker, ToWorker } from "./ipc.js";
import { PacketLoop } from "./packet-loop.js";
import { DataplaneUdpSocket } from "./udp-socket.js";

/** The TUN descriptor's number in the worker: stdio slot 4, after stdin, stdout, stderr and the IPC channel. */
export const WORKER_TUN_FD = 4;
/** While the IPC channel is backed up, datagrams for the control plane are dropped for this long, so a flood cannot fill memory. */
const CONTROL_BUSY_MS = 50;

export async function runDataplaneWorker(tunName: string | undefined): Promise<void> {
  if (!process.send) throw new Error("cyphonic dataplane is started by the node daemon over an IPC channel, not by hand");
  const processSend: (message: FromWorker) => boolean = process.send.bind(process);
  // A message libuv could not write at once waits for the event loop, which
  // the packet loop lets run when asked.
  const send = (message: FromWorker): boolean => {
    loop?.requestYield();
    return processSend(message);
  };
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
  const tunFd = tunName ? openTunDescriptor(WORKER_TUN_FD, tunName) : null;
  let loop: PacketLoop | null = null;
  const fast: FastPath = new FastPath({
    sendUdp: (datagram, to) => {
      if (loop) loop.sendUdp(datagram, to);
      else fast.counters.add("send.drop.not_bound");
    },
    writeTun: (packet) => {
      if (loop) loop.writeTun(packet);
      else fast.counters.add("tun.tx.drop.no_device");
    },
    toControl,
    dropped: (reason, source) => dropLog.warn(reason, { reason, source: describePath(source) }, "dropped datagram"),
  }, counters);

  process.on("message", (raw: ToWorker) => {
    try {
      switch (raw.t) {
        case "init":
          start(raw.port);
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

  function start(port: number): void {
    let socket: DataplaneUdpSocket;
    try {
      socket = DataplaneUdpSocket.open(port);
    } catch (err) {
      send({ t: "fatal", message: (err as Error).message });
      process.exit(1);
    }
    // NOTE: Node.js does not document process.channel.fd. Without it the loop
    // still reaches the event loop every 10 ms under load and every 50 ms
    // when idle, so heartbeats arrive late but well inside the watchdog's 1.5 s.
    const channelFd = (process.channel as { fd?: number } | undefined)?.fd ?? null;
    loop = new PacketLoop({ tunFd, socket, channelFd, counters, log });
    loop.start(fast);
    log.info({ port: socket.port, tun: tunName ?? null }, "dataplane worker ready");
    send({ t: "ready", port: socket.port, pid: process.pid });
  }

  await new Promise<never>(() => {});
}

/**
 * Makes the inherited TUN descriptor non-blocking, so the packet loop reads
 * until the device is empty. The flag belongs to the open file, which the
 * daemon shares, and the daemon does not read from it.
 */
function openTunDescriptor(fd: number, name: string): number {
  const calls = libc();
  const flags = calls.fcntl(fd, F_GETFL, 0);
  if (flags < 0 || calls.fcntl(fd, F_SETFL, flags | nonblockFlag()) < 0) {
    throw new Error(`the TUN descriptor ${fd} for ${name} is not usable: fcntl() returned ${errnoName(errno())}`);
  }
  return fd;
}
