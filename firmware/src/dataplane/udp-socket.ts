// The dataplane worker's UDP socket, driven by the packet loop with plain
// system calls: sendto(2) and recvfrom(2) on a non-blocking descriptor, into
// buffers the loop owns. dgram would allocate a 64 KiB buffer, an address
// string and an rinfo object for every datagram received, and a request
// object for every one sent. This socket allocates only when a peer's
// address changes.
//
// Like transport/udp.ts, it is one dual-stack IPv6 socket when the host has
// IPv6, so IPv4 peers arrive as IPv4-mapped addresses, which are reported
// as plain IPv4.
import os from "node:os";
import { Endpoint, bytesToIPv4, bytesToIPv6, ipv4ToBytes, ipv6ToBytes } from "../protocol/endpoint.js";
import {
  AF_INET,
  AF_INET6,
  EAGAIN,
  IPPROTO_IPV6,
  IPV6_V6ONLY,
  Libc,
  MessageHeader,
  SOCKADDR_IN_BYTES,
  SOCK_CLOEXEC,
  SOL_UDP,
  UDP_SEGMENT,
  cInt,
  encodeSockaddrIn,
  errno,
  errnoName,
  libc,
  nonblockFlag,
  readCInt,
  readCShort,
  sizeofSizeT,
  socketConstants,
  writeCInt,
  writeCShort,
} from "../util/libc.js";

/** Socket buffer size: large buffers absorb the bursts of a TCP flow that would otherwise be dropped. */
export const SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;

// struct sockaddr_in6 is 28 bytes: family, port, flow info, address, scope
// id. struct sockaddr_in is 16: family, port, address, padding.
const SOCKADDR_IN6_BYTES = 28;
const IPV4_MAPPED_PREFIX = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);

/** A failed socket call; `code` is the errno name ("EADDRINUSE", "EAFNOSUPPORT", ...). */
export class UdpSocketError extends Error {
  override readonly name = "UdpSocketError";

  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export class DataplaneUdpSocket {
  /** The source of the last datagram received, reused while the next one comes from the same address. */
  private readonly lastSockaddr = Buffer.alloc(SOCKADDR_IN6_BYTES);
  private lastSource: Endpoint | null = null;
  private readonly sockaddr = Buffer.alloc(SOCKADDR_IN6_BYTES);
  private readonly sockaddrLength = Buffer.alloc(4);
  /** Encoded destinations by endpoint object: the fast path sends many datagrams to the same path object. */
  private readonly destinations = new WeakMap<Endpoint, Buffer>();
  private closed = false;
  // One struct cmsghdr (length, level, type) with a u16 segment size, padded
  // to CMSG_SPACE(2); the length field is a size_t.
  private readonly segmentDataOffset = sizeofSizeT() + 8;
  private readonly segmentControl = Buffer.alloc(align(sizeofSizeT() + 8 + 2, sizeofSizeT()));
  private readonly segmentMessage: MessageHeader = {
    msg_name: null,
    msg_namelen: 0,
    msg_iov: [{ iov_base: null, iov_len: 0 }],
    msg_iovlen: 1,
    msg_control: this.segmentControl,
    msg_controllen: this.segmentControl.length,
    msg_flags: 0,
  };

  private constructor(
    readonly fd: number,
    readonly port: number,
    readonly dualStack: boolean,
    private readonly calls: Libc,
  ) {
    const cmsgLength = this.segmentDataOffset + 2;
    if (sizeofSizeT() === 4) writeCInt(this.segmentControl, cmsgLength);
    else if (os.endianness() === "LE") this.segmentControl.writeBigUInt64LE(BigInt(cmsgLength));
    else this.segmentControl.writeBigUInt64BE(BigInt(cmsgLength));
    writeCInt(this.segmentControl, SOL_UDP, sizeofSizeT());
    writeCInt(this.segmentControl, UDP_SEGMENT, sizeofSizeT() + 4);
  }

  /**
   * Opens a non-blocking UDP socket on `port` (0 for any) of every local
   * address: IPv6 with IPv4-mapped addresses, or IPv4 alone when the host has
   * no IPv6. Throws UdpSocketError.
   */
  static open(port: number): DataplaneUdpSocket {
    const calls = libc();
    try {
      return DataplaneUdpSocket.openFamily(calls, AF_INET6, port);
    } catch (err) {
      if (!(err instanceof UdpSocketError) || !["EAFNOSUPPORT", "EADDRNOTAVAIL", "EPROTONOSUPPORT"].includes(err.code)) throw err;
      return DataplaneUdpSocket.openFamily(calls, AF_INET, port);
    }
  }

  private static openFamily(calls: Libc, family: number, port: number): DataplaneUdpSocket {
    const c = socketConstants();
    const fd = calls.socket(family, c.SOCK_DGRAM | nonblockFlag() | SOCK_CLOEXEC, 0);
    if (fd < 0) throw socketError("socket()", "creating the UDP socket");
    try {
      if (family === AF_INET6) setOption(calls, fd, IPPROTO_IPV6, IPV6_V6ONLY, 0, "IPV6_V6ONLY");
      // The FORCE options exceed net.core.[rw]mem_max for a process with
      // CAP_NET_ADMIN, which the node has for its TUN device. Without it the
      // plain options apply, capped by the sysctl.
      setBuffer(calls, fd, c.SO_RCVBUFFORCE, c.SO_RCVBUF, "SO_RCVBUF");
      setBuffer(calls, fd, c.SO_SNDBUFFORCE, c.SO_SNDBUF, "SO_SNDBUF");
      const address = Buffer.alloc(family === AF_INET6 ? SOCKADDR_IN6_BYTES : SOCKADDR_IN_BYTES);
      writeCShort(address, family, 0);
      address.writeUInt16BE(port, 2);
      if (calls.bind(fd, address, address.length) !== 0) {
        throw socketError("bind()", `binding UDP port ${port} on ${family === AF_INET6 ? "[::]" : "0.0.0.0"}`);
      }
      const length = cInt(address.length);
      if (calls.getsockname(fd, address, length) !== 0) throw socketError("getsockname()", "reading the bound port");
      return new DataplaneUdpSocket(fd, address.readUInt16BE(2), family === AF_INET6, calls);
    } catch (err) {
      calls.close(fd);
      throw err;
    }
  }

  /**
   * Sends one datagram. Returns 0 when the kernel took it, or the errno
   * (EAGAIN when the send buffer is full, ENETUNREACH, ...).
   */
  send(datagram: Buffer, to: Endpoint): number {
    const destination = this.destination(to);
    const sent = this.calls.sendto(this.fd, datagram, datagram.length, 0, destination, destination.length);
    return sent < 0 ? errno() : 0;
  }

  /**
   * Sends the first `length` bytes of `buffer` as datagrams of
   * `segmentBytes` each (the last may be shorter) to one destination, in one
   * sendmsg(2) with UDP_SEGMENT. The kernel splits them as late as it can, so
   * the stack and any forwarding in between handle the batch once. Returns 0
   * or the errno: EMSGSIZE when a segment exceeds the route's MTU, EIO when
   * the kernel or the outgoing device cannot segment.
   */
  sendSegments(buffer: Buffer, length: number, segmentBytes: number, to: Endpoint): number {
    const destination = this.destination(to);
    const message = this.segmentMessage;
    message.msg_name = destination;
    message.msg_namelen = destination.length;
    message.msg_iov[0]!.iov_base = buffer;
    message.msg_iov[0]!.iov_len = length;
    writeCShort(this.segmentControl, segmentBytes, this.segmentDataOffset);
    const sent = this.calls.sendmsg(this.fd, message, 0);
    return sent < 0 ? errno() : 0;
  }

  /**
   * Receives one datagram into `buffer`. Returns its length, or -1 when none
   * is waiting, or throws UdpSocketError for another error. The datagram's
   * source is then `source`.
   */
  receive(buffer: Buffer): number {
    writeCInt(this.sockaddrLength, SOCKADDR_IN6_BYTES);
    const n = this.calls.recvfrom(this.fd, buffer, buffer.length, 0, this.sockaddr, this.sockaddrLength);
    if (n >= 0) return n;
    const code = errno();
    if (code === EAGAIN) return -1;
    throw new UdpSocketError(errnoName(code), `receiving from the UDP socket failed: recvfrom() returned ${errnoName(code)}`);
  }

  /** The source of the datagram the last receive() returned. Source port 0 is returned as it is; the caller drops it. */
  get source(): Endpoint {
    const length = readCInt(this.sockaddrLength);
    if (this.lastSource && this.sockaddr.compare(this.lastSockaddr, 0, length, 0, length) === 0) return this.lastSource;
    this.sockaddr.copy(this.lastSockaddr, 0, 0, length);
    this.lastSource = decode(this.sockaddr);
    return this.lastSource;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.calls.close(this.fd);
  }

  private destination(to: Endpoint): Buffer {
    let destination = this.destinations.get(to);
    if (!destination) {
      destination = this.encode(to);
      this.destinations.set(to, destination);
    }
    return destination;
  }

  private encode(to: Endpoint): Buffer {
    const v4 = !to.address.includes(":");
    if (!this.dualStack) {
      if (!v4) throw new UdpSocketError("EAFNOSUPPORT", `cannot send to ${to.address}: the socket is IPv4 only`);
      return encodeSockaddrIn(ipv4ToBytes(to.address), to.port);
    }
    const out = Buffer.alloc(SOCKADDR_IN6_BYTES);
    writeCShort(out, AF_INET6, 0);
    out.writeUInt16BE(to.port, 2);
    if (v4) {
      IPV4_MAPPED_PREFIX.copy(out, 8);
      ipv4ToBytes(to.address).copy(out, 20);
    } else {
      ipv6ToBytes(to.address).copy(out, 8);
    }
    return out;
  }
}

function align(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

function decode(sockaddr: Buffer): Endpoint {
  const port = sockaddr.readUInt16BE(2);
  if (readCShort(sockaddr, 0) === AF_INET) return { address: bytesToIPv4(sockaddr.subarray(4, 8)), port };
  const address = sockaddr.subarray(8, 24);
  if (address.compare(IPV4_MAPPED_PREFIX, 0, 12, 0, 12) === 0) return { address: bytesToIPv4(address.subarray(12)), port };
  return { address: bytesToIPv6(address), port };
}

function setOption(calls: Libc, fd: number, level: number, name: number, value: number, label: string): void {
  const option = cInt(value);
  if (calls.setsockopt(fd, level, name, option, option.length) !== 0) throw socketError(`setsockopt(${label})`, "setting up the UDP socket");
}

function setBuffer(calls: Libc, fd: number, force: number, plain: number, label: string): void {
  const size = cInt(SOCKET_BUFFER_BYTES);
  if (calls.setsockopt(fd, socketConstants().SOL_SOCKET, force, size, size.length) === 0) return;
  setOption(calls, fd, socketConstants().SOL_SOCKET, plain, SOCKET_BUFFER_BYTES, label);
}

function socketError(call: string, action: string): UdpSocketError {
  const code = errnoName(errno());
  let hint = "";
  if (code === "EADDRINUSE") hint = ": another socket holds the port";
  else if (code === "EACCES") hint = ": the port needs CAP_NET_BIND_SERVICE";
  return new UdpSocketError(code, `${action} failed: ${call} returned ${code}${hint}`);
}
