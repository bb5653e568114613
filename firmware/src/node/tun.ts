// Linux TUN device for the node daemon: local applications send packets for
// overlay addresses into it, and packets from peers are written back out of it.
// The device carries bare IP packets (IFF_TUN | IFF_NO_PI), and the kernel
// deletes it when the file descriptor closes because it is not persistent.
//
// Node.js has no ioctl, so TUNSETIFF goes through koffi to libc. The daemon
// creates and configures the interface here (createTunInterface,
// configureTunInterface) and hands the descriptor to its dataplane worker,
// which reads and writes it in its own packet loop (dataplane/packet-loop.ts).
//
// TunDevice reads through a libuv stream handle instead, for programs without
// a worker, such as the lab's test tools: each read(2) on a TUN descriptor
// returns exactly one packet, and a flowing Readable emits each read as its
// own 'data' chunk, so one chunk is one packet. On one 2-vCPU x86_64 VM,
// fs.read loops reached 9-20k packets/s, and this stream read 80-186k
// packets/s in the UDP flood of tun.test.ts.
import { EventEmitter } from "node:events";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import koffi from "koffi";
import { Counters } from "../util/counters.js";
import { logger, RateLimitedLog, type Logger } from "../util/log.js";
import { configureIPv4Interface, parseIPv4Cidr, type IPv4Cidr } from "./netlink-ip.js";

const DEFAULT_DEVICE_PATH = "/dev/net/tun";

// Flags from <linux/if_tun.h>. IFF_TUN_EXCL makes TUNSETIFF fail with EBUSY
// when the name exists, where it would otherwise attach to an idle persistent
// TUN device of that name and inherit its stale addresses.
const IFF_TUN = 0x0001;
const IFF_NO_PI = 0x1000;
const IFF_TUN_EXCL = 0x8000;

// struct ifreq from <linux/if.h>: the name (IFNAMSIZ bytes including the NUL)
// and then a union whose first member is `short ifr_flags`. The buffer is at
// least sizeof(struct ifreq), which is 40 bytes on 64-bit and 32 on 32-bit Linux.
const IFNAMSIZ = 16;
const IFREQ_BYTES = 40;
const IFREQ_FLAGS_OFFSET = IFNAMSIZ;

// RFC 791 requires every IPv4 link to carry 68-byte datagrams, and the tun
// driver caps the MTU at 65535.
const MIN_MTU_BYTES = 68;
const MAX_MTU_BYTES = 65_535;

const INTERFACE_NAME_PATTERN = /^[A-Za-z0-9_.-]{1,15}$/;

export interface TunOptions {
  /** Interface name: 1 to 15 characters from A-Z, a-z, 0-9, "_", "." and "-". */
  name: string;
  /** Link MTU, from 68 to 65535. */
  mtuBytes: number;
  /** This node's address and the overlay prefix routed to the device, for example "100.64.0.2/16". */
  addressCidr: string;
  /** Packet and drop counters to add to. A new set is created when omitted. */
  counters?: Counters;
  /** Path of the TUN clone device, "/dev/net/tun" when omitted. */
  devicePath?: string;
}

export type TunErrorCode =
  | "INVALID_OPTIONS"
  | "TUN_UNAVAILABLE"
  | "PERMISSION_DENIED"
  | "NAME_IN_USE"
  | "CREATE_FAILED"
  | "CONFIGURE_FAILED";

/** A failure to open or configure a TUN device. The message names the failed step and the fix. */
export class TunError extends Error {
  override readonly name = "TunError";

  constructor(
    readonly code: TunErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * An open TUN device. Emits "close" once, with the read error if one ended it.
 *
 * Counters: tun.rx.packets, tun.rx.bytes, tun.tx.packets, tun.tx.bytes, and
 * drops as tun.rx.drop.<reason> and tun.tx.drop.<reason>.
 */
export class TunDevice extends EventEmitter {
  readonly counters: Counters;
  private readonly log: Logger;
  private readonly dropLog: RateLimitedLog;
  private packetHandler: ((packet: Buffer) => void) | undefined;
  private reading = false;
  private closed = false;
  private readError: Error | undefined;

  private constructor(
    readonly name: string,
    private readonly fd: number,
    private readonly socket: net.Socket,
    counters: Counters,
  ) {
    super();
    this.counters = counters;
    this.log = logger("tun", { interface: name });
    this.dropLog = new RateLimitedLog(this.log);
    socket.on("error", (err) => {
      this.readError = err;
      this.log.error({ err }, "reading from the TUN device failed, so it was closed");
    });
    socket.on("close", () => {
      this.closed = true;
      this.log.info("TUN device closed");
      this.emit("close", this.readError);
    });
  }

  /**
   * Creates the interface, sets its MTU, assigns the address and brings it up.
   * Rejects with TunError. When configuration fails, the descriptor is closed,
   * so the kernel removes the half-configured interface.
   */
  static async open(options: TunOptions): Promise<TunDevice> {
    const cidr = validateTunOptions(options);
    const created = createTunInterface(options.name, options.devicePath);
    let device: TunDevice;
    try {
      device = TunDevice.fromDescriptor(created.fd, created.name, options.counters ?? new Counters());
    } catch (err) {
      fs.closeSync(created.fd);
      throw err;
    }
    try {
      await configureTunInterface(device.name, options.mtuBytes, cidr);
    } catch (err) {
      device.close();
      throw err;
    }
    device.log.info({ virtualIP: cidr.address, mtuBytes: options.mtuBytes }, "TUN device opened");
    return device;
  }

  /**
   * Reads and writes packets on a descriptor of an existing TUN interface, one
   * that another process created and handed over, say. The device owns the
   * descriptor from then on and closes it on close().
   */
  static fromDescriptor(fd: number, name: string, counters: Counters = new Counters()): TunDevice {
    return new TunDevice(name, fd, openPacketStream(fd), counters);
  }

  /**
   * Sets the function that receives each packet read from the device, one IP
   * packet per call. A later call replaces the handler. The handler may keep
   * the Buffer. Before the first call, packets wait in the stream buffer
   * (16 KiB) and then in the kernel queue (txqueuelen packets), which drops
   * the rest.
   */
  onPacket(handler: (packet: Buffer) => void): void {
    this.packetHandler = handler;
    if (this.reading) return;
    this.reading = true;
    // The socket must stay in flowing mode: a paused Readable's read() joins
    // buffered chunks, which would merge packets. Flowing mode emits one chunk
    // per read(2), also for chunks buffered before this listener.
    this.socket.on("data", (packet: Buffer) => this.deliver(packet));
  }

  /**
   * Writes one IP packet to the device, so the kernel receives it on this
   * interface. Returns false, and counts a drop, when the packet was not written.
   * Write errors are caught and counted, so it does not throw.
   */
  write(packet: Buffer): boolean {
    // The stream closes the descriptor synchronously inside destroy(), before
    // "close" fires, so `destroyed` guards against writing to a reused number.
    if (this.closed || this.socket.destroyed) {
      this.countTxDrop("closed");
      return false;
    }
    if (packet.length === 0) {
      this.countTxDrop("empty");
      return false;
    }
    let written: number;
    try {
      written = fs.writeSync(this.fd, packet, 0, packet.length);
    } catch (err) {
      this.countTxDrop(tunWriteDropReason((err as NodeJS.ErrnoException).code), err);
      return false;
    }
    // A TUN write takes the whole packet or fails, so a short count is unexpected.
    if (written !== packet.length) {
      this.countTxDrop("short_write");
      return false;
    }
    this.counters.add("tun.tx.packets");
    this.counters.add("tun.tx.bytes", written);
    return true;
  }

  /** Closes the descriptor; the kernel then deletes the interface with its address and route. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
  }

  private deliver(packet: Buffer): void {
    this.counters.add("tun.rx.packets");
    this.counters.add("tun.rx.bytes", packet.length);
    if (!this.packetHandler) return;
    try {
      this.packetHandler(packet);
    } catch (err) {
      this.counters.add("tun.rx.drop.handler_error");
      this.dropLog.warn("rx.handler_error", { reason: "handler_error", err }, "packet handler threw, so the packet was dropped");
    }
  }

  private countTxDrop(reason: string, err?: unknown): void {
    this.counters.add(`tun.tx.drop.${reason}`);
    this.dropLog.warn(`tx.${reason}`, err === undefined ? { reason } : { reason, err }, "packet not written to the TUN device");
  }
}

/** Returns the drop reason of a failed TUN write from its errno name ("EAGAIN", "EINVAL", ...). */
export function tunWriteDropReason(code: string | undefined): string {
  switch (code) {
    case "EAGAIN":
    case "EWOULDBLOCK":
      return "eagain";
    case "EINVAL":
      // The driver rejects a packet whose first nibble is neither 4 nor 6.
      return "invalid";
    default:
      return "error";
  }
}

/**
 * Creates a TUN interface and returns its descriptor, without reading from it
 * and without an address: the interface lives as long as some process holds
 * the descriptor, so the daemon can keep it (and its routes) while the process
 * that reads it is replaced.
 */
export function createTunInterface(name: string, devicePath = DEFAULT_DEVICE_PATH): { name: string; fd: number } {
  validateTunName(name);
  const fd = openCloneDevice(devicePath);
  try {
    return { name: attachTunInterface(fd, name), fd };
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
}

/** Sets the MTU, assigns the address and brings the interface up. Rejects with TunError. */
export async function configureTunInterface(name: string, mtuBytes: number, cidr: IPv4Cidr | string): Promise<void> {
  const parsed = typeof cidr === "string" ? validateTunOptions({ name, mtuBytes, addressCidr: cidr }) : cidr;
  try {
    await configureIPv4Interface(name, mtuBytes, parsed);
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    throw new TunError("CONFIGURE_FAILED", `configuring TUN device ${name} failed, so it was removed: ${detail}`, { cause: err });
  }
}

function validateTunName(name: string): void {
  if (typeof name !== "string" || !INTERFACE_NAME_PATTERN.test(name) || name === "." || name === "..") {
    throw new TunError(
      "INVALID_OPTIONS",
      `invalid TUN interface name ${JSON.stringify(name)}. Use 1 to ${IFNAMSIZ - 1} characters from A-Z, a-z, 0-9, "_", "." and "-"`,
    );
  }
}

function validateTunOptions(options: TunOptions): IPv4Cidr {
  const { name, mtuBytes, addressCidr } = options;
  validateTunName(name);
  if (!Number.isInteger(mtuBytes) || mtuBytes < MIN_MTU_BYTES || mtuBytes > MAX_MTU_BYTES) {
    throw new TunError("INVALID_OPTIONS", `invalid MTU ${mtuBytes} for ${name}. Use an integer from ${MIN_MTU_BYTES} to ${MAX_MTU_BYTES} bytes`);
  }
  const cidr = typeof addressCidr === "string" ? parseIPv4Cidr(addressCidr) : null;
  if (!cidr) {
    throw new TunError(
      "INVALID_OPTIONS",
      `invalid address ${JSON.stringify(addressCidr)} for ${name}. Use IPv4 CIDR notation with prefix length 1 to 32, for example "100.64.0.2/16"`,
    );
  }
  return cidr;
}

function openCloneDevice(devicePath: string): number {
  try {
    // libuv opens with O_CLOEXEC, so the `ip` child processes do not inherit the descriptor.
    return fs.openSync(devicePath, fs.constants.O_RDWR);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "unknown error";
    switch (code) {
      case "ENOENT":
      case "ENODEV":
      case "ENXIO":
        throw new TunError(
          "TUN_UNAVAILABLE",
          `opening ${devicePath} failed (${code}) because the TUN driver is not available. Run "modprobe tun", ` +
            `or start the container with the device (for example docker run --device /dev/net/tun --cap-add NET_ADMIN)`,
          { cause: err },
        );
      case "EACCES":
      case "EPERM":
        throw new TunError(
          "PERMISSION_DENIED",
          `opening ${devicePath} failed (${code}). Run the node as root, or give it read-write access to ${devicePath} and CAP_NET_ADMIN`,
          { cause: err },
        );
      default:
        throw new TunError("CREATE_FAILED", `opening ${devicePath} failed (${code})`, { cause: err });
    }
  }
}

type IoctlFunction = (fd: number, request: number, ...variadic: unknown[]) => number;
let ioctlFunction: IoctlFunction | undefined;

function loadIoctl(): IoctlFunction {
  // A null path opens the running program, whose C library (glibc or musl) provides ioctl.
  ioctlFunction ??= koffi.load(null).func("int ioctl(int fd, unsigned long request, ...)") as IoctlFunction;
  return ioctlFunction;
}

/** Returns TUNSETIFF, which is _IOW('T', 202, int). MIPS and PowerPC encode the write direction as 4, not 1. */
function tunSetIffRequest(): number {
  return ["mips", "mipsel", "ppc", "ppc64"].includes(process.arch) ? 0x800454ca : 0x400454ca;
}

/** Creates interface `name` on the clone descriptor with TUNSETIFF and returns the name the kernel assigned. */
function attachTunInterface(fd: number, name: string): string {
  let ioctl: IoctlFunction;
  try {
    ioctl = loadIoctl();
  } catch (err) {
    throw new TunError("CREATE_FAILED", `loading ioctl from the C library through koffi failed: ${(err as Error).message}`, { cause: err });
  }
  const ifreq = Buffer.alloc(IFREQ_BYTES);
  ifreq.write(name, 0, IFNAMSIZ - 1, "latin1");
  const flags = IFF_TUN | IFF_NO_PI | IFF_TUN_EXCL;
  if (os.endianness() === "LE") ifreq.writeUInt16LE(flags, IFREQ_FLAGS_OFFSET);
  else ifreq.writeUInt16BE(flags, IFREQ_FLAGS_OFFSET);

  if (ioctl(fd, tunSetIffRequest(), "uint8_t *", ifreq) === 0) {
    const nameEnd = ifreq.indexOf(0, 0);
    return ifreq.toString("latin1", 0, nameEnd >= 0 && nameEnd < IFNAMSIZ ? nameEnd : IFNAMSIZ - 1);
  }
  const errno = koffi.errno();
  const errnoName = errnoToName(errno);
  switch (errnoName) {
    case "EPERM":
    case "EACCES":
      throw new TunError(
        "PERMISSION_DENIED",
        `creating TUN interface ${name} failed (${errnoName}) because the process lacks CAP_NET_ADMIN in its network namespace. Run the node as root`,
      );
    case "EBUSY":
      throw new TunError(
        "NAME_IN_USE",
        `creating TUN interface ${name} failed (EBUSY) because an interface with that name exists. Choose another name or remove it with "ip link delete ${name}"`,
      );
    default:
      throw new TunError("CREATE_FAILED", `creating TUN interface ${name} with ioctl TUNSETIFF failed (${errnoName})`);
  }
}

function errnoToName(errno: number): string {
  for (const [name, value] of Object.entries(os.constants.errno)) {
    if (value === errno) return name;
  }
  return `errno ${errno}`;
}

interface PipeHandle {
  open(fd: number): number;
  close(): void;
}

interface PipeWrapBinding {
  Pipe: new (type: number) => PipeHandle;
  constants: { SOCKET: number };
}

/**
 * Wraps the descriptor in a libuv pipe handle and a read-only net.Socket, which
 * owns the descriptor from then on. net.Socket({ fd }) rejects a character
 * device, so the handle comes from the internal pipe_wrap binding.
 */
function openPacketStream(fd: number): net.Socket {
  // NOTE: process.binding is deprecated (DEP0111) but still exports pipe_wrap in Node 20 and 22.
  const binding = (process as unknown as { binding(name: string): Partial<PipeWrapBinding> }).binding("pipe_wrap");
  if (typeof binding.Pipe !== "function" || typeof binding.constants?.SOCKET !== "number") {
    throw new TunError("CREATE_FAILED", `this Node.js ${process.version} has no usable pipe_wrap binding, which reading the TUN device requires`);
  }
  const handle = new binding.Pipe(binding.constants.SOCKET);
  // uv_pipe_open also sets O_NONBLOCK, so write() can see EAGAIN.
  const status = handle.open(fd);
  if (status !== 0) {
    handle.close();
    throw new TunError("CREATE_FAILED", `opening a stream handle on the TUN descriptor failed (${errnoToName(-status)})`);
  }
  return new net.Socket({ handle, readable: true, writable: false } as net.SocketConstructorOpts);
}
