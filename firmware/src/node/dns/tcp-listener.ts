// DNS over TCP listener with a cap on concurrent connections.
import net from "node:net";
import { TcpConnection } from "./tcp-connection.js";
import type { TcpConnectionDeps } from "./tcp-connection.js";

export class TcpListener {
  private readonly connections = new Set<TcpConnection>();

  private constructor(
    private readonly server: net.Server,
    private readonly deps: TcpConnectionDeps,
  ) {
    server.on("connection", (socket) => this.onConnection(socket));
  }

  static listen(address: string, port: number, deps: TcpConnectionDeps): Promise<TcpListener> {
    return new Promise((resolve, reject) => {
      // Half-open sockets stay writable after the client's FIN, so pending responses still go out.
      const server = net.createServer({ allowHalfOpen: true });
      const listener = new TcpListener(server, deps);
      server.once("error", reject);
      server.listen({ host: address, port }, () => {
        server.off("error", reject);
        server.on("error", (err) => {
          deps.counters.add("dns.tcp_server_error");
          deps.warnings.warn("tcp_server_error", { err, reason: "tcp_server_error" }, "DNS TCP listener error");
        });
        resolve(listener);
      });
    });
  }

  get port(): number {
    const bound = this.server.address();
    return bound !== null && typeof bound === "object" ? bound.port : 0;
  }

  private onConnection(socket: net.Socket): void {
    if (this.connections.size >= this.deps.limits.maxTcpConnections) {
      const source = { address: socket.remoteAddress ?? "unknown", port: socket.remotePort ?? 0 };
      this.deps.handler.drop("tcp_connection_limit", source);
      socket.destroy();
      return;
    }
    const connection = new TcpConnection(socket, this.deps, () => this.connections.delete(connection));
    this.connections.add(connection);
  }

  /** Stops accepting and closes every open connection. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      for (const connection of this.connections) connection.destroy();
    });
  }
}
