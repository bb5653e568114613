// A UDP socket bound to one network interface with SO_BINDTODEVICE, so it
// receives only datagrams that arrived on that interface and its sends,
// 255.255.255.255 included, leave through that interface. Without it the
// kernel routes a limited broadcast out of the default-route interface.
//
// Node's dgram cannot set SO_BINDTODEVICE, so the socket is created, set up
// and bound through koffi with the C library, and dgram wraps the bound
// descriptor (socket.bind({ fd })).
import dgram from "node:dgram";
import net from "node:net";
import { ipv4ToBytes } from "../../protocol/endpoint.js";
import { AF_INET, Libc, SOCKADDR_IN_BYTES, SOCK_CLOEXEC, cInt, encodeSockaddrIn, errno, errnoName, libc, socketConstants } from "../../util/libc.js";

/** A failed socket call, with the errno name in `code` ("EADDRNOTAVAIL", "EPERM", ...). */
export class DeviceSocketError extends Error {
  override readonly name = "DeviceSocketError";

  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Opens a UDP socket on `interfaceName`, bound to `address`:`port`, with
 * SO_REUSEADDR and SO_BROADCAST. `address` "0.0.0.0" receives broadcasts and
 * unicasts to any local address. Rejects with DeviceSocketError; binding to a
 * device needs CAP_NET_RAW before Linux 5.7 and port 67 needs CAP_NET_BIND_SERVICE.
 */
export async function openDeviceSocket(interfaceName: string, address: string, port: number): Promise<dgram.Socket> {
  if (!net.isIPv4(address)) throw new RangeError(`invalid IPv4 address ${JSON.stringify(address)}`);
  const c = socketConstants();
  const calls = libc();
  const fd = calls.socket(AF_INET, c.SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw socketError("socket()", `creating a UDP socket for ${interfaceName}`);
  try {
    setIntOption(calls, fd, c.SOL_SOCKET, c.SO_REUSEADDR, "SO_REUSEADDR", interfaceName);
    setIntOption(calls, fd, c.SOL_SOCKET, c.SO_BROADCAST, "SO_BROADCAST", interfaceName);
    const name = Buffer.from(`${interfaceName}\0`, "latin1");
    if (calls.setsockopt(fd, c.SOL_SOCKET, c.SO_BINDTODEVICE, name, name.length) !== 0) {
      throw socketError("setsockopt(SO_BINDTODEVICE)", `binding the socket to interface ${interfaceName}`);
    }
    if (calls.bind(fd, encodeSockaddrIn(ipv4ToBytes(address), port), SOCKADDR_IN_BYTES) !== 0) {
      throw socketError("bind()", `binding ${address}:${port} on ${interfaceName}`);
    }
  } catch (err) {
    calls.close(fd);
    throw err;
  }
  return wrapDescriptor(fd, calls);
}

/** Sets a boolean socket option to 1. */
function setIntOption(calls: Libc, fd: number, level: number, name: number, label: string, interfaceName: string): void {
  const enabled = cInt(1);
  if (calls.setsockopt(fd, level, name, enabled, enabled.length) !== 0) throw socketError(`setsockopt(${label})`, `setting up the socket on ${interfaceName}`);
}

function wrapDescriptor(fd: number, calls: Libc): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket("udp4");
    const onError = (err: Error): void => {
      calls.close(fd);
      reject(err);
    };
    socket.once("error", onError);
    socket.bind({ fd }, () => {
      socket.off("error", onError);
      resolve(socket);
    });
  });
}

function socketError(call: string, action: string): DeviceSocketError {
  const code = errnoName(errno());
  let hint = "";
  if (code === "EPERM" || code === "EACCES") hint = ": run as root, or grant CAP_NET_BIND_SERVICE (and CAP_NET_RAW on kernels before 5.7)";
  else if (code === "ENODEV") hint = ": the interface does not exist";
  else if (code === "EADDRNOTAVAIL") hint = ": the address is not assigned to a local interface";
  else if (code === "EADDRINUSE") hint = ": another socket holds the port";
  return new DeviceSocketError(code, `${action} failed: ${call} returned ${code}${hint}`);
}
