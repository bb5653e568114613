// The server's network side: two UDP sockets bound to the LAN interface. One
// is bound to 0.0.0.0 and receives broadcasts. The other is bound to the
// server address and receives the unicasts to it, because the kernel prefers
// the socket with the more specific address. So the receiving socket
// distinguishes a RENEWING client (unicast) from a REBINDING one (broadcast),
// which Node cannot read from IP_PKTINFO.
import type dgram from "node:dgram";
import { DeviceSocketError, openDeviceSocket } from "./device-socket.js";

export interface DhcpDatagram {
  data: Buffer;
  /** True when the datagram was unicast to the server address. */
  toServerAddress: boolean;
  /** "address:port" of the sender. */
  source: string;
}

/** The server's network side. Tests replace it with an in-memory one. */
export interface DhcpTransport {
  onDatagram(handler: (datagram: DhcpDatagram) => void): void;
  /** Sends one datagram. Rejects when the kernel refuses it. */
  send(data: Buffer, address: string, port: number): Promise<void>;
  close(): Promise<void>;
}

export interface DeviceTransportOptions {
  interfaceName: string;
  serverAddress: string;
  serverPort: number;
  /** Called for errors that the sockets report after they are open; the sockets keep working. */
  onSocketError: (err: Error) => void;
  /** Called when the server address is not assigned to the interface, so only broadcasts can reach the server. */
  onServerAddressMissing: (err: DeviceSocketError) => void;
}

export class DeviceTransport implements DhcpTransport {
  private handler: ((datagram: DhcpDatagram) => void) | undefined;
  private closed = false;

  private constructor(
    private readonly broadcastSocket: dgram.Socket,
    private readonly unicastSocket: dgram.Socket | undefined,
    onSocketError: (err: Error) => void,
  ) {
    this.listen(broadcastSocket, false, onSocketError);
    if (unicastSocket) this.listen(unicastSocket, true, onSocketError);
  }

  /** Opens both sockets. Rejects when the broadcast socket cannot be opened. */
  static async open(options: DeviceTransportOptions): Promise<DeviceTransport> {
    const { interfaceName, serverAddress, serverPort } = options;
    const broadcastSocket = await openDeviceSocket(interfaceName, "0.0.0.0", serverPort);
    let unicastSocket: dgram.Socket | undefined;
    try {
      unicastSocket = await openDeviceSocket(interfaceName, serverAddress, serverPort);
    } catch (err) {
      if (!(err instanceof DeviceSocketError && err.code === "EADDRNOTAVAIL")) {
        broadcastSocket.close();
        throw err;
      }
      options.onServerAddressMissing(err);
    }
    return new DeviceTransport(broadcastSocket, unicastSocket, options.onSocketError);
  }

  onDatagram(handler: (datagram: DhcpDatagram) => void): void {
    this.handler = handler;
  }

  /** Sends from the server-address socket when there is one, so the IP source address is the server identifier. */
  send(data: Buffer, address: string, port: number): Promise<void> {
    const socket = this.unicastSocket ?? this.broadcastSocket;
    return new Promise((resolve, reject) => {
      socket.send(data, port, address, (err) => (err ? reject(err) : resolve()));
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const sockets = this.unicastSocket ? [this.broadcastSocket, this.unicastSocket] : [this.broadcastSocket];
    await Promise.all(sockets.map((socket) => new Promise<void>((resolve) => socket.close(() => resolve()))));
  }

  private listen(socket: dgram.Socket, toServerAddress: boolean, onSocketError: (err: Error) => void): void {
    socket.on("message", (data, remote) => {
      this.handler?.({ data, toServerAddress, source: `${remote.address}:${remote.port}` });
    });
    socket.on("error", onSocketError);
  }
}
