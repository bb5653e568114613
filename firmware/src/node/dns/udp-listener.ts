// DNS over UDP: one datagram is one query, one response datagram at most.
import dgram from "node:dgram";
import net from "node:net";
import type { Counters } from "../../util/counters.js";
import type { RateLimitedLog } from "../../util/log.js";
import { endpointOf } from "./query-handler.js";
import type { QueryHandler } from "./query-handler.js";

export interface UdpListenerDeps {
  handler: QueryHandler;
  maxInFlightQueries: number;
  counters: Counters;
  warnings: RateLimitedLog;
}

export class UdpListener {
  private closed = false;

  private constructor(
    private readonly socket: dgram.Socket,
    private readonly deps: UdpListenerDeps,
  ) {
    socket.on("message", (message, remote) => this.onMessage(message, remote));
    // A UDP socket reports errors such as a failed send here and keeps working.
    socket.on("error", (err) => {
      deps.counters.add("dns.udp_socket_error");
      deps.warnings.warn("udp_socket_error", { err, reason: "udp_socket_error" }, "DNS UDP socket error");
    });
  }

  /** Binds a UDP socket. Port 0 picks an ephemeral port, see `port`. */
  static bind(address: string, port: number, deps: UdpListenerDeps): Promise<UdpListener> {
    return new Promise((resolve, reject) => {
      const socket = dgram.createSocket(net.isIPv6(address) ? "udp6" : "udp4");
      const onError = (err: Error): void => {
        socket.close();
        reject(err);
      };
      socket.once("error", onError);
      socket.bind(port, address, () => {
        socket.off("error", onError);
        resolve(new UdpListener(socket, deps));
      });
    });
  }

  get port(): number {
    return this.socket.address().port;
  }

  private onMessage(message: Buffer, remote: dgram.RemoteInfo): void {
    const source = { address: remote.address, port: remote.port, transport: "udp" as const };
    const { handler } = this.deps;
    if (handler.inFlight >= this.deps.maxInFlightQueries) {
      handler.drop("overload", source);
      return;
    }

    void handler.handle(message, source).then((response) => {
      if (!response || this.closed) return;
      this.socket.send(response, remote.port, remote.address, (err) => {
        if (!err) return;
        this.deps.counters.add("dns.udp_send_error");
        this.deps.warnings.warn(
          "udp_send_error",
          { err, reason: "udp_send_error", endpoint: endpointOf(remote) },
          "DNS UDP response send failed",
        );
      });
    });
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }
}
