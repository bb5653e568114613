// The C library calls that Node.js does not offer, made through koffi:
// socket options it has no API for, poll(2), and read(2)/write(2)/sendto(2)/
// recvfrom(2) into caller-owned buffers without the event loop. Every call
// returns what the C function returns; on -1 the cause is errno(), read
// before the next call.
import os from "node:os";
import koffi from "koffi";

/** Socket constants from the Linux UAPI headers. MIPS has its own numbers (arch/mips/include/uapi/asm/socket.h). */
export interface SocketConstants {
  SOCK_DGRAM: number;
  SOL_SOCKET: number;
  SO_REUSEADDR: number;
  SO_BROADCAST: number;
  SO_SNDBUF: number;
  SO_RCVBUF: number;
  SO_SNDBUFFORCE: number;
  SO_RCVBUFFORCE: number;
  SO_BINDTODEVICE: number;
}

const GENERIC_CONSTANTS: SocketConstants = {
  SOCK_DGRAM: 2,
  SOL_SOCKET: 1,
  SO_REUSEADDR: 2,
  SO_BROADCAST: 6,
  SO_SNDBUF: 7,
  SO_RCVBUF: 8,
  SO_SNDBUFFORCE: 32,
  SO_RCVBUFFORCE: 33,
  SO_BINDTODEVICE: 25,
};
const MIPS_CONSTANTS: SocketConstants = {
  SOCK_DGRAM: 1,
  SOL_SOCKET: 0xffff,
  SO_REUSEADDR: 0x0004,
  SO_BROADCAST: 0x0020,
  SO_SNDBUF: 0x1001,
  SO_RCVBUF: 0x1002,
  SO_SNDBUFFORCE: 31,
  SO_RCVBUFFORCE: 33,
  SO_BINDTODEVICE: 25,
};

export function socketConstants(): SocketConstants {
  return isMips() ? MIPS_CONSTANTS : GENERIC_CONSTANTS;
}

export const AF_INET = 2;
export const AF_INET6 = 10;
export const IPPROTO_IPV6 = 41;
export const IPV6_V6ONLY = 26;
// O_CLOEXEC, so child processes (ip, nft) do not inherit the descriptor.
export const SOCK_CLOEXEC = 0o2000000;
export const F_GETFL = 3;
export const F_SETFL = 4;

/** O_NONBLOCK, which is also SOCK_NONBLOCK; MIPS has its own value (arch/mips/include/uapi/asm/fcntl.h). */
export function nonblockFlag(): number {
  return isMips() ? 0x80 : 0o4000;
}

// poll(2) events, the same on every Linux architecture (asm-generic/poll.h).
export const POLLIN = 0x1;
export const POLLOUT = 0x4;
/** struct pollfd: int fd, short events, short revents. */
export const POLLFD_BYTES = 8;

export const EINTR = os.constants.errno.EINTR;
export const EAGAIN = os.constants.errno.EAGAIN;

// UDP generic segmentation offload (linux/udp.h), since Linux 4.18: a cmsg
// of level SOL_UDP that gives the segment size of one large send.
export const SOL_UDP = 17;
export const UDP_SEGMENT = 103;

/** struct msghdr for sendmsg(2), with one iovec. Buffers stand in for the pointers. */
export interface MessageHeader {
  msg_name: Buffer | null;
  msg_namelen: number;
  msg_iov: { iov_base: Buffer | null; iov_len: number }[];
  msg_iovlen: number;
  msg_control: Buffer | null;
  msg_controllen: number;
  msg_flags: number;
}

export interface Libc {
  socket(domain: number, type: number, protocol: number): number;
  setsockopt(fd: number, level: number, name: number, value: Buffer, length: number): number;
  getsockname(fd: number, address: Buffer, length: Buffer): number;
  bind(fd: number, address: Buffer, length: number): number;
  close(fd: number): number;
  fcntl(fd: number, command: number, argument: number): number;
  read(fd: number, buffer: Buffer, length: number): number;
  write(fd: number, buffer: Buffer, length: number): number;
  sendto(fd: number, buffer: Buffer, length: number, flags: number, address: Buffer, addressLength: number): number;
  recvfrom(fd: number, buffer: Buffer, length: number, flags: number, address: Buffer, addressLength: Buffer): number;
  poll(fds: Buffer, count: number, timeoutMs: number): number;
  sendmsg(fd: number, message: MessageHeader, flags: number): number;
}

let loaded: Libc | undefined;

export function libc(): Libc {
  if (loaded) return loaded;
  // A null path opens the running program, whose C library (glibc or musl) provides these calls.
  const lib = koffi.load(null);
  // glibc declares msg_iovlen and msg_controllen as size_t. musl declares
  // them as int and socklen_t with padding to the same size, so on
  // little-endian hosts the layouts agree for any length that fits an int.
  const iovec = koffi.struct("cyphonic_iovec", { iov_base: "void *", iov_len: "size_t" });
  koffi.struct("cyphonic_msghdr", {
    msg_name: "void *",
    msg_namelen: "uint32_t",
    msg_iov: koffi.pointer(iovec),
    msg_iovlen: "size_t",
    msg_control: "void *",
    msg_controllen: "size_t",
    msg_flags: "int",
  });

  // Buffers go to `void *` parameters as pointers to their own bytes, so
  // the kernel writes straight into the caller's buffer.
  loaded = {
    socket: lib.func("int socket(int domain, int type, int protocol)") as Libc["socket"],
    setsockopt: lib.func("int setsockopt(int fd, int level, int optname, const void *optval, uint32_t optlen)") as Libc["setsockopt"],
    getsockname: lib.func("int getsockname(int fd, void *addr, void *addrlen)") as Libc["getsockname"],
    bind: lib.func("int bind(int fd, const void *addr, uint32_t addrlen)") as Libc["bind"],
    close: lib.func("int close(int fd)") as Libc["close"],
    fcntl: lib.func("int fcntl(int fd, int cmd, int arg)") as Libc["fcntl"],
    read: lib.func("long read(int fd, void *buf, size_t count)") as Libc["read"],
    write: lib.func("long write(int fd, const void *buf, size_t count)") as Libc["write"],
    sendto: lib.func("long sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)") as Libc["sendto"],
    recvfrom: lib.func("long recvfrom(int fd, void *buf, size_t len, int flags, void *addr, void *addrlen)") as Libc["recvfrom"],
    poll: lib.func("int poll(void *fds, unsigned long nfds, int timeout)") as Libc["poll"],
    sendmsg: lib.func("long sendmsg(int fd, const cyphonic_msghdr *msg, int flags)") as Libc["sendmsg"],
  };
  return loaded;
}

/** Bytes of a size_t, which sizes struct cmsghdr's length field and alignment. */
export function sizeofSizeT(): number {
  return koffi.sizeof("size_t");
}

/** Returns the errno of the last failed call on this thread. */
export function errno(): number {
  return koffi.errno();
}

/** Returns the errno's name ("EAGAIN", "EADDRINUSE", ...), or "errno N" for one Node.js does not name. */
export function errnoName(value: number): string {
  for (const [name, number] of Object.entries(os.constants.errno)) {
    if (number === value) return name;
  }
  return `errno ${value}`;
}

/** Encodes a C int in host byte order, for setsockopt(2). */
export function cInt(value: number): Buffer {
  const out = Buffer.alloc(4);
  writeCInt(out, value);
  return out;
}

/** Writes a C int in host byte order. */
export function writeCInt(buffer: Buffer, value: number, offset = 0): void {
  if (os.endianness() === "LE") buffer.writeInt32LE(value, offset);
  else buffer.writeInt32BE(value, offset);
}

/** Reads a C int in host byte order. */
export function readCInt(buffer: Buffer, offset = 0): number {
  return os.endianness() === "LE" ? buffer.readInt32LE(offset) : buffer.readInt32BE(offset);
}

/** Writes a sa_family_t (or another C short) in host byte order. */
export function writeCShort(buffer: Buffer, value: number, offset: number): void {
  if (os.endianness() === "LE") buffer.writeUInt16LE(value, offset);
  else buffer.writeUInt16BE(value, offset);
}

/** Bytes of a struct sockaddr_in. */
export const SOCKADDR_IN_BYTES = 16;

/**
 * Encodes a struct sockaddr_in: the family in host byte order, then the port
 * and the address in network byte order, then 8 zero bytes.
 */
export function encodeSockaddrIn(address: Buffer, port: number): Buffer {
  const sockaddr = Buffer.alloc(SOCKADDR_IN_BYTES);
  writeCShort(sockaddr, AF_INET, 0);
  sockaddr.writeUInt16BE(port, 2);
  address.copy(sockaddr, 4);
  return sockaddr;
}

/** Reads a sa_family_t (or another C short) in host byte order. */
export function readCShort(buffer: Buffer, offset: number): number {
  return os.endianness() === "LE" ? buffer.readUInt16LE(offset) : buffer.readUInt16BE(offset);
}

function isMips(): boolean {
  return process.arch === "mips" || process.arch === "mipsel";
}
