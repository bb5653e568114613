// One DNS over TCP client connection (RFC 7766): pipelined queries resolved
// concurrently, responses sent as they complete, bounded memory and time.
import type net from "node:net";
import type { Counters } from "../../util/counters.js";
import type { RateLimitedLog } from "../../util/log.js";
import { endpointOf } from "./query-handler.js";
import type { QueryHandler, QuerySource } from "./query-handler.js";
import { frameMessage, TcpFramer } from "./tcp-framer.js";
import type { DnsServerLimits } from "./types.js";

export interface TcpConnectionDeps {
  handler: QueryHandler;
  limits: DnsServerLimits;
  counters: Counters;
  warnings: RateLimitedLog;
}

export class TcpConnection {
  private readonly framer: TcpFramer;
  private readonly source: QuerySource;
  private queriesInProgress = 0;
  private readEnded = false;

  constructor(
    private readonly socket: net.Socket,
    private readonly deps: TcpConnectionDeps,
    onClose: () => void,
  ) {
    this.framer = new TcpFramer(deps.limits.maxQueryBytes, deps.limits.maxTcpBufferedBytes);
    this.source = { address: socket.remoteAddress ?? "unknown", port: socket.remotePort ?? 0, transport: "tcp" };

    socket.setNoDelay(true);
    socket.setTimeout(deps.limits.tcpIdleTimeoutMs);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("end", () => {
      // The client half-closed after its last query. Send the pending responses, then close.
      this.readEnded = true;
      this.endIfDone();
    });
    socket.on("timeout", () => {
      if (this.queriesInProgress > 0) return;
      deps.counters.add("dns.tcp_idle_timeout");
      socket.destroy();
    });
    // 'close' follows every 'error' and cleans up.
    socket.on("error", (err) => {
      deps.counters.add("dns.tcp_socket_error");
      const fields = { err, reason: "tcp_socket_error", endpoint: endpointOf(this.source) };
      deps.warnings.warn("tcp_socket_error", fields, "DNS TCP connection error");
    });
    socket.on("close", onClose);
  }

  destroy(): void {
    this.socket.destroy();
  }

  private get closed(): boolean {
    return this.socket.destroyed;
  }

  private abort(reason: string): void {
    this.deps.handler.drop(reason, this.source);
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    if (!this.framer.push(chunk)) {
      this.abort("tcp_buffer_overflow");
      return;
    }
    this.processBuffered();
  }

  /** Starts every buffered query up to the per-connection limit and pauses reading at that limit. */
  private processBuffered(): void {
    while (!this.closed && this.queriesInProgress < this.deps.limits.maxTcpQueriesPerConnection) {
      const output = this.framer.next();
      if (output.kind === "incomplete") break;
      if (output.kind === "error") {
        this.abort(output.reason);
        return;
      }
      this.startQuery(output.message);
    }
    if (this.closed) return;

    if (this.queriesInProgress >= this.deps.limits.maxTcpQueriesPerConnection) this.socket.pause();
    else this.socket.resume();
    this.endIfDone();
  }

  private startQuery(message: Buffer): void {
    this.queriesInProgress++;
    void this.deps.handler.handle(message, this.source).then((response) => {
      this.queriesInProgress--;
      if (this.closed) return;
      if (response) this.send(response);
      this.processBuffered();
    });
  }

  private send(response: Buffer): void {
    this.socket.write(frameMessage(response));
    // A client that sends queries but never reads would make the queue grow without bound.
    if (this.socket.writableLength > this.deps.limits.maxTcpWriteBacklogBytes) this.abort("tcp_write_backlog");
  }

  private endIfDone(): void {
    if (!this.readEnded || this.queriesInProgress > 0 || this.closed || this.socket.writableEnded) return;
    if (this.framer.bufferedBytes > 0) this.deps.handler.drop("tcp_partial_message", this.source);
    this.socket.end();
  }
}
