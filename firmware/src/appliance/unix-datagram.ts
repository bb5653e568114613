// Sends single datagrams to AF_UNIX SOCK_DGRAM sockets, the transport of the
// sd_notify(3) protocol. Node.js has no unix datagram sockets, so socket(2),
// sendto(2) and close(2) go through koffi to the C library.
import os from "node:os";
import koffi from "koffi";

const AF_UNIX = 1;
// O_CLOEXEC, so child processes (ip, nft) do not inherit the descriptor.
const SOCK_CLOEXEC = 0o2000000;
// MSG_DONTWAIT makes a full receive queue fail with EAGAIN instead of
// blocking the event loop. MSG_NOSIGNAL turns SIGPIPE into EPIPE.
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;

// struct sockaddr_un from <sys/un.h>: sa_family_t sun_family (2 bytes, host
// byte order), then char sun_path[108].
const SUN_FAMILY_BYTES = 2;
const SUN_PATH_BYTES = 108;

/** SOCK_DGRAM from the Linux UAPI headers, which is 1 on MIPS (arch/mips/include/asm/socket.h) and 2 elsewhere. */
function sockDgram(): number {
  return process.arch === "mips" || process.arch === "mipsel" ? 1 : 2;
}

/** A failed send. `code` is the errno name ("ENOENT", "ECONNREFUSED", ...) or INVALID_ADDRESS, LIBC_UNAVAILABLE or SHORT_SEND. */
export class UnixDatagramError extends Error {
  override readonly name = "UnixDatagramError";

  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** An encoded struct sockaddr_un and the address length to pass with it. */
export interface UnixSocketAddress {
  sockaddr: Buffer;
  /** Bytes of `sockaddr` that form the address: the family and the used part of sun_path. */
  length: number;
}

/**
 * Encodes a socket name as systemd writes it in $NOTIFY_SOCKET: an absolute
 * path, or "@name" for a name in the Linux abstract namespace. Throws
 * UnixDatagramError with code INVALID_ADDRESS for any other form.
 */
export function encodeUnixSocketAddress(name: string): UnixSocketAddress {
  const sockaddr = Buffer.alloc(SUN_FAMILY_BYTES + SUN_PATH_BYTES);
  if (os.endianness() === "LE") sockaddr.writeUInt16LE(AF_UNIX, 0);
  else sockaddr.writeUInt16BE(AF_UNIX, 0);

  if (name.startsWith("@")) {
    // An abstract name starts with a NUL byte and has no terminator, so every
    // byte up to the length is part of it. Counting the whole sun_path would
    // name a different socket, padded with NUL bytes.
    const nameBytes = Buffer.from(name.slice(1), "utf8");
    if (nameBytes.length === 0 || nameBytes.length > SUN_PATH_BYTES - 1) {
      throw invalidAddress(name, `an abstract socket name needs 1 to ${SUN_PATH_BYTES - 1} bytes after the "@"`);
    }
    nameBytes.copy(sockaddr, SUN_FAMILY_BYTES + 1);
    return { sockaddr, length: SUN_FAMILY_BYTES + 1 + nameBytes.length };
  }

  if (name.startsWith("/")) {
    const pathBytes = Buffer.from(name, "utf8");
    if (pathBytes.includes(0)) throw invalidAddress(name, "a socket path cannot contain a NUL byte");
    // The path and its NUL terminator must fit in sun_path, as systemd requires.
    if (pathBytes.length > SUN_PATH_BYTES - 1) {
      throw invalidAddress(name, `a socket path can have at most ${SUN_PATH_BYTES - 1} bytes`);
    }
    pathBytes.copy(sockaddr, SUN_FAMILY_BYTES);
    return { sockaddr, length: SUN_FAMILY_BYTES + pathBytes.length + 1 };
  }

  // NOTE: systemd 253 and later also accept "vsock:CID:PORT", through which a
  // virtual machine notifies its host. AF_VSOCK is not supported, because
  // services under the appliance's own systemd get a unix socket.
  throw invalidAddress(name, 'use an absolute path or "@" and an abstract socket name');
}

function invalidAddress(name: string, fix: string): UnixDatagramError {
  return new UnixDatagramError("INVALID_ADDRESS", `invalid unix socket address ${JSON.stringify(name)}: ${fix}`);
}

interface Libc {
  socket: (domain: number, type: number, protocol: number) => number;
  sendto: (fd: number, data: Buffer, length: number, flags: number, address: Buffer, addressLength: number) => number;
  close: (fd: number) => number;
}

let libc: Libc | undefined;

function loadLibc(): Libc {
  if (libc) return libc;
  try {
    // A null path opens the running program, whose C library (glibc or musl) provides the socket calls.
    const lib = koffi.load(null);
    libc = {
      socket: lib.func("int socket(int domain, int type, int protocol)") as Libc["socket"],
      sendto: lib.func("intptr_t sendto(int fd, const void *buf, size_t len, int flags, const void *dest_addr, uint32_t addrlen)") as Libc["sendto"],
      close: lib.func("int close(int fd)") as Libc["close"],
    };
  } catch (err) {
    throw new UnixDatagramError("LIBC_UNAVAILABLE", `loading the socket calls from the C library through koffi failed: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return libc;
}

/**
 * Sends `payload` as one datagram to `address` from a new socket, which is
 * closed before returning. Does not block: a receiver with a full queue fails
 * the send with EAGAIN. Throws UnixDatagramError.
 */
export function sendUnixDatagram(address: UnixSocketAddress, payload: Buffer): void {
  const calls = loadLibc();
  const fd = calls.socket(AF_UNIX, sockDgram() | SOCK_CLOEXEC, 0);
  if (fd < 0) throw errnoError("socket()", "creating a unix datagram socket");
  try {
    const sent = calls.sendto(fd, payload, payload.length, MSG_DONTWAIT | MSG_NOSIGNAL, address.sockaddr, address.length);
    if (sent < 0) throw errnoError("sendto()", `sending ${payload.length} bytes`);
    // A datagram is sent whole or not at all, so a short count is unexpected.
    if (sent !== payload.length) {
      throw new UnixDatagramError("SHORT_SEND", `sendto() sent ${sent} of ${payload.length} bytes`);
    }
  } finally {
    calls.close(fd);
  }
}

/** Builds the error from errno, which must be read before any other C call changes it. */
function errnoError(call: string, action: string): UnixDatagramError {
  const code = errnoName(koffi.errno());
  return new UnixDatagramError(code, `${action} failed: ${call} returned ${code}`);
}

function errnoName(errno: number): string {
  for (const [name, value] of Object.entries(os.constants.errno)) {
    if (value === errno) return name;
  }
  return `errno ${errno}`;
}
