// The UDP socket under a SecureEndpoint. One dual-stack IPv6 socket serves
// IPv4 peers too (as IPv4-mapped addresses), so a node keeps a single port and
// a single NAPT mapping whatever the peer's address family.
import dgram from "node:dgram";
import net from "node:net";
import { Endpoint, normalizeAddress } from "../protocol/endpoint.js";

export interface UdpSocket {
  readonly port: number;
  readonly dualStack: boolean;
  send(datagram: Buffer, to: Endpoint): void;
  close(): void;
}

/** Socket buffer size; large buffers absorb bursts that would otherwise be dropped by the kernel. */
const SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;

export async function bindUdp(
  port: number,
  onDatagram: (datagram: Buffer, from: Endpoint) => void,
  onSendError: (err: Error, to: Endpoint) => void,
  address?: string,
): Promise<UdpSocket> {
  const tryBind = (type: "udp4" | "udp6", bindAddress: string) =>
    new Promise<dgram.Socket>((resolve, reject) => {
      const socket = dgram.createSocket({ type, ipv6Only: false, recvBufferSize: SOCKET_BUFFER_BYTES, sendBufferSize: SOCKET_BUFFER_BYTES });
      socket.once("error", reject);
      socket.bind(port, bindAddress, () => {
        socket.off("error", reject);
        resolve(socket);
      });
    });

  let socket: dgram.Socket;
  let dualStack = false;
  if (address) {
    socket = await tryBind(net.isIPv6(address) ? "udp6" : "udp4", address);
  } else {
    try {
      socket = await tryBind("udp6", "::");
      dualStack = true;
    } catch {
      socket = await tryBind("udp4", "0.0.0.0");
    }
  }
  socket.on("message", (msg, rinfo) => {
    // Linux delivers datagrams from source port 0, to which nothing can be
    // sent back: a path there would only make later sends fail.
    if (rinfo.port === 0) return onSendError(Object.assign(new Error("datagram from source port 0 dropped"), { code: "SOURCE_PORT_0" }), { address: rinfo.address, port: 0 });
    onDatagram(msg, { address: normalizeAddress(rinfo.address), port: rinfo.port });
  });
  // Errors after bind (ICMP unreachable reported as ECONNREFUSED on Linux) must not stop the socket.
  socket.on("error", (err) => onSendError(err, { address: "", port: 0 }));

  const boundPort = socket.address().port;
  return {
    port: boundPort,
    dualStack,
    send(datagram, to) {
      const target = dualStack && net.isIPv4(to.address) ? `::ffff:${to.address}` : to.address;
      // dgram throws at once for arguments it rejects (port 0, say), and
      // reports later failures to the callback; either is a send error.
      try {
        socket.send(datagram, to.port, target, (err) => {
          if (err) onSendError(err, to);
        });
      } catch (err) {
        onSendError(err as Error, to);
      }
    },
    close() {
      socket.close();
    },
  };
}
