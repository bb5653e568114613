// The dataplane worker's packet loop. It waits in poll(2) on the TUN device,
// the UDP socket and the IPC channel to the daemon, and reads every packet
// and datagram that is waiting, in batches, into two buffers it reuses. The
// event loop runs only between slices: when the channel has a message or the
// worker sent one, on a signal, at least every SLICE_MS under load and every
// IDLE_POLL_MS when idle.
//
// Through libuv each packet cost an epoll wake-up, a 64 KiB allocation and a
// stream or dgram event. Here it costs a read(2) or recvfrom(2) and the
// crypto, which cut the worker's CPU time per packet (docs/dataplane.md).
//
// Buffers passed to the fast path are views of the reused buffers, valid
// until the next read. The fast path keeps none: what it passes on is
// encrypted or decrypted into a new buffer, or serialized to the IPC channel
// at once by process.send().
import { Endpoint } from "../protocol/endpoint.js";
import { Source } from "../transport/path.js";
import { Counters } from "../util/counters.js";
import { EAGAIN, EINTR, Libc, POLLFD_BYTES, POLLIN, POLLOUT, errno, errnoName, libc, readCShort, writeCInt, writeCShort } from "../util/libc.js";
import { Logger, RateLimitedLog } from "../util/log.js";
import { tunWriteDropReason } from "../node/tun.js";
import { FastPath } from "./fast-path.js";
import { DataplaneUdpSocket } from "./udp-socket.js";

/** Packets or datagrams read from one descriptor before the loop polls again, so neither direction starves the other. */
const BATCH = 64;
/** Maximum run of packet work between turns of the event loop, in ms. */
const SLICE_MS = 10;
/** poll(2) timeout while idle, in ms; it bounds how long a queued IPC write can wait. */
const IDLE_POLL_MS = 50;
/** How long a send waits for room in a full socket buffer before the datagram is dropped, in ms. */
const SEND_WAIT_MS = 10;
/** A TUN packet or UDP datagram is at most 65535 bytes. */
const MAX_PACKET_BYTES = 65_535;
/**
 * Limits of one segmented send: the kernel takes at most 64 segments
 * (UDP_MAX_SEGMENTS, raised to 128 in later kernels), and all of them must
 * fit one UDP datagram of at most 65507 bytes of payload over IPv4.
 */
const MAX_SEGMENTS = 64;
const MAX_SEGMENTED_BYTES = 65_507;

const TUN_SLOT = 0;
const UDP_SLOT = 1;
const CHANNEL_SLOT = 2;

export interface PacketLoopOptions {
  /** Non-blocking TUN descriptor, or null for a worker without a device (tests). */
  tunFd: number | null;
  socket: DataplaneUdpSocket;
  /** The IPC channel's descriptor: the loop yields to the event loop when it is readable. */
  channelFd: number | null;
  counters: Counters;
  log: Logger;
}

export class PacketLoop {
  private readonly calls: Libc;
  private readonly pollfds = Buffer.alloc(3 * POLLFD_BYTES);
  private readonly sendWait = Buffer.alloc(POLLFD_BYTES);
  private readonly tunBuffer = Buffer.allocUnsafe(MAX_PACKET_BYTES);
  private readonly udpBuffer = Buffer.allocUnsafe(MAX_PACKET_BYTES);
  private readonly dropLog: RateLimitedLog;
  private fast: FastPath | null = null;
  private tunFd: number | null;
  private lastEndpoint: Endpoint | null = null;
  private lastSource: Source | null = null;
  private yieldRequested = false;
  /** End of the current slice: the read loops stop there, even within a batch, so a slow send cannot hold heartbeats for long. */
  private sliceEndsMs = 0;
  /** True while the loop handles a batch of reads, whose sends are queued as segments. */
  private batching = false;
  /** Cleared when the kernel or the outgoing device cannot segment UDP. */
  private segmentation = true;
  /** Datagrams of this size or larger are not segmented: the kernel rejected a batch of them as too large for the route. */
  private unsegmentedBytes = Infinity;
  /** Queued datagrams of one size (the last may be shorter) to one destination. */
  private readonly segments = Buffer.allocUnsafe(MAX_SEGMENTED_BYTES);
  private segmentsTo: Endpoint | null = null;
  private segmentBytes = 0;
  private segmentCount = 0;
  private segmentsUsed = 0;
  private running = false;
  private stopped = false;

  constructor(private readonly options: PacketLoopOptions) {
    this.calls = libc();
    this.tunFd = options.tunFd;
    this.dropLog = new RateLimitedLog(options.log);
    writeCInt(this.pollfds, options.tunFd ?? -1, TUN_SLOT * POLLFD_BYTES);
    writeCInt(this.pollfds, options.socket.fd, UDP_SLOT * POLLFD_BYTES);
    writeCInt(this.pollfds, options.channelFd ?? -1, CHANNEL_SLOT * POLLFD_BYTES);
    writeCInt(this.sendWait, options.socket.fd, 0);
    writeCShort(this.sendWait, POLLOUT, 4);
  }

  /** Starts reading; packets and datagrams go to `fast`. */
  start(fast: FastPath): void {
    this.fast = fast;
    if (this.running) return;
    this.running = true;
    setImmediate(this.run);
  }

  stop(): void {
    this.stopped = true;
  }

  /** Asks the loop to let the event loop run after the current batch, because the worker queued an IPC message. */
  requestYield(): void {
    this.yieldRequested = true;
  }

  /**
   * Sends one datagram. During a batch of reads, datagrams to one destination
   * are queued and leave together in one segmented send when the batch ends,
   * when the destination or size changes, or when the queue is full.
   */
  sendUdp(datagram: Buffer, to: Endpoint): void {
    // An empty datagram cannot be a segment (segment size 0 turns
    // segmentation off), and one larger than the queue would be cut short.
    // Either leaves alone, after the queue, so datagrams keep their order.
    const alone = datagram.length === 0 || datagram.length > MAX_SEGMENTED_BYTES || datagram.length >= this.unsegmentedBytes;
    if (!this.batching || !this.segmentation || alone) {
      if (this.segmentCount > 0) this.flushSegments();
      this.sendOne(datagram, to);
      return;
    }
    if (this.segmentCount > 0) {
      const fits =
        to === this.segmentsTo &&
        datagram.length <= this.segmentBytes &&
        this.segmentCount < MAX_SEGMENTS &&
        this.segmentsUsed + datagram.length <= MAX_SEGMENTED_BYTES;
      if (!fits) this.flushSegments();
    }
    if (this.segmentCount === 0) {
      this.segmentsTo = to;
      this.segmentBytes = datagram.length;
    }
    datagram.copy(this.segments, this.segmentsUsed);
    this.segmentsUsed += datagram.length;
    this.segmentCount++;
    // Only the last segment may be shorter than the others.
    if (datagram.length < this.segmentBytes) this.flushSegments();
  }

  private flushSegments(): void {
    const count = this.segmentCount;
    const to = this.segmentsTo!;
    const used = this.segmentsUsed;
    this.segmentCount = 0;
    this.segmentsUsed = 0;
    this.segmentsTo = null;
    if (count === 0) return;
    if (count === 1) {
      this.sendOne(this.segments.subarray(0, used), to);
      return;
    }

    const socket = this.options.socket;
    let code: number;
    try {
      code = socket.sendSegments(this.segments, used, this.segmentBytes, to);
      if (code === EAGAIN && this.waitForRoom()) code = socket.sendSegments(this.segments, used, this.segmentBytes, to);
    } catch (err) {
      this.options.counters.add("send.errors", count);
      this.dropLog.warn("send:invalid", { err, to, datagrams: count }, "UDP send failed");
      return;
    }
    if (code === 0) {
      this.options.counters.add("send.segmented", count);
      return;
    }
    const name = errnoName(code);
    const tooLarge = name === "EMSGSIZE" || name === "EINVAL";
    if (name === "EIO" || name === "ENOPROTOOPT" || name === "EOPNOTSUPP") {
      this.segmentation = false;
      this.options.log.info({ code: name }, "the kernel cannot segment UDP sends on this path, so datagrams are sent one by one");
    }
    if (tooLarge || !this.segmentation) {
      this.options.counters.add("send.segmentation_fallbacks");
      let anySent = false;
      for (let offset = 0; offset < used; offset += this.segmentBytes) {
        if (this.sendOne(this.segments.subarray(offset, Math.min(offset + this.segmentBytes, used)), to)) anySent = true;
      }
      // Segments must fit the route's MTU, because segmentation never
      // fragments. Larger datagrams (relayed ones, say) are sent one by one
      // from now on, and the kernel fragments them. When the single sends
      // fail as well, the error was the destination's (port 0, say), and
      // segmentation stays as it was.
      if (tooLarge && anySent) this.unsegmentedBytes = Math.min(this.unsegmentedBytes, this.segmentBytes);
      return;
    }
    this.options.counters.add(code === EAGAIN ? "send.drop.buffer_full" : "send.errors", count);
    this.dropLog.warn(`send:${name}`, { code: name, to, datagrams: count }, "UDP send failed");
  }

  /**
   * Sends one datagram; a full socket buffer holds the loop for up to
   * SEND_WAIT_MS, as a blocking send would. Returns true when the kernel took
   * the datagram; a failure is counted and logged here.
   */
  private sendOne(datagram: Buffer, to: Endpoint): boolean {
    let code: number;
    try {
      code = this.options.socket.send(datagram, to);
      if (code === EAGAIN && this.waitForRoom()) code = this.options.socket.send(datagram, to);
    } catch (err) {
      this.options.counters.add("send.errors");
      this.dropLog.warn("send:invalid", { err, to }, "UDP send failed");
      return false;
    }
    if (code === 0) return true;
    const name = errnoName(code);
    this.options.counters.add(code === EAGAIN ? "send.drop.buffer_full" : "send.errors");
    this.dropLog.warn(`send:${name}`, { code: name, to }, "UDP send failed");
    return false;
  }

  /** Waits up to SEND_WAIT_MS for room in the socket's send buffer; returns true when there is room. */
  private waitForRoom(): boolean {
    return this.calls.poll(this.sendWait, 1, SEND_WAIT_MS) > 0;
  }

  /** Writes one IP packet to the TUN device. */
  writeTun(packet: Buffer): void {
    const counters = this.options.counters;
    if (this.tunFd === null) return counters.add("tun.tx.drop.no_device");
    if (packet.length === 0) return counters.add("tun.tx.drop.empty");
    const written = this.calls.write(this.tunFd, packet, packet.length);
    if (written === packet.length) {
      counters.add("tun.tx.packets");
      counters.add("tun.tx.bytes", written);
      return;
    }
    // A TUN write takes the whole packet or fails.
    const reason = written >= 0 ? "short_write" : tunWriteDropReason(errnoName(errno()));
    counters.add(`tun.tx.drop.${reason}`);
    this.dropLog.warn(`tx.${reason}`, { reason }, "packet not written to the TUN device");
  }

  private readonly run = (): void => {
    if (this.stopped) return;
    this.sliceEndsMs = Date.now() + SLICE_MS;
    this.yieldRequested = false;
    for (;;) {
      writeCShort(this.pollfds, this.tunFd === null ? 0 : POLLIN, TUN_SLOT * POLLFD_BYTES + 4);
      writeCShort(this.pollfds, POLLIN, UDP_SLOT * POLLFD_BYTES + 4);
      writeCShort(this.pollfds, POLLIN, CHANNEL_SLOT * POLLFD_BYTES + 4);
      const ready = this.calls.poll(this.pollfds, 3, IDLE_POLL_MS);
      if (ready < 0) {
        const code = errno();
        // A signal interrupted the wait: its handler runs in the event loop.
        if (code !== EINTR) this.dropLog.warn(`poll:${errnoName(code)}`, { code: errnoName(code) }, "poll failed");
        break;
      }
      if (ready === 0) break;
      this.batching = true;
      try {
        if (this.revents(TUN_SLOT) !== 0) this.readTun();
        if (this.revents(UDP_SLOT) !== 0) this.readUdp();
      } finally {
        this.batching = false;
        this.flushSegments();
      }
      if (this.revents(CHANNEL_SLOT) !== 0 || this.yieldRequested || Date.now() >= this.sliceEndsMs) break;
    }
    setImmediate(this.run);
  };

  private revents(slot: number): number {
    return readCShort(this.pollfds, slot * POLLFD_BYTES + 6);
  }

  private readTun(): void {
    const fd = this.tunFd!;
    const counters = this.options.counters;
    for (let i = 0; i < BATCH; i++) {
      if (i > 0 && Date.now() >= this.sliceEndsMs) return;
      const n = this.calls.read(fd, this.tunBuffer, this.tunBuffer.length);
      if (n <= 0) {
        if (n === 0) return;
        const code = errno();
        if (code === EAGAIN || code === EINTR) return;
        // The device is gone or broken: stop polling it rather than spin on its error.
        counters.add("tun.rx.errors");
        this.options.log.error({ code: errnoName(code) }, "reading from the TUN device failed, so the worker stopped reading it");
        this.tunFd = null;
        return;
      }
      counters.add("tun.rx.packets");
      counters.add("tun.rx.bytes", n);
      try {
        this.fast!.receivePacket(this.tunBuffer.subarray(0, n));
      } catch (err) {
        counters.add("tun.rx.drop.handler_error");
        this.dropLog.warn("rx.handler_error", { reason: "handler_error", err }, "packet handler threw, so the packet was dropped");
      }
    }
  }

  private readUdp(): void {
    const socket = this.options.socket;
    const counters = this.options.counters;
    for (let i = 0; i < BATCH; i++) {
      if (i > 0 && Date.now() >= this.sliceEndsMs) return;
      let n: number;
      try {
        n = socket.receive(this.udpBuffer);
      } catch (err) {
        // Linux reports ICMP errors to an unconnected UDP socket only with
        // IP_RECVERR, which is not set, so this error is unexpected. The next
        // datagram is unaffected.
        counters.add("receive.errors");
        this.dropLog.warn(`receive:${(err as { code?: string }).code ?? "unknown"}`, { err }, "UDP receive failed");
        return;
      }
      if (n < 0) return;
      const endpoint = socket.source;
      // Nothing can be sent back to source port 0, so a path there would only make later sends fail.
      if (endpoint.port === 0) {
        counters.add("drop.source_port_0");
        continue;
      }
      if (endpoint !== this.lastEndpoint) {
        this.lastEndpoint = endpoint;
        this.lastSource = { kind: "direct", endpoint };
      }
      try {
        this.fast!.receiveDatagram(this.udpBuffer.subarray(0, n), this.lastSource!);
      } catch (err) {
        counters.add("dataplane.receive_errors");
        this.dropLog.warn("receive:handler_error", { err }, "datagram handler threw, so the datagram was dropped");
      }
    }
  }
}


