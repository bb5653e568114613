// Request/response over signaling: each request carries an id, is resent
// until answered (UDP may drop it), and settles with the matching response or
// an Error message. Services handle a repeated request id idempotently.
import { Signal, SignalType } from "../protocol/signaling.js";

export class SignalError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "SignalError";
  }
}

export class RequestTimeoutError extends Error {
  constructor(what: string, timeoutMs: number) {
    super(`${what}: no answer within ${timeoutMs} ms`);
    this.name = "RequestTimeoutError";
  }
}

interface Pending {
  resolve(s: Signal): void;
  reject(e: Error): void;
  timers: NodeJS.Timeout[];
}

export class RequestTracker {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  /**
   * Sends build(id) now and every retryMs until a response with that id
   * arrives or timeoutMs passes. Rejects with SignalError on an Error reply.
   */
  request(what: string, build: (requestId: number) => Signal, send: (s: Signal) => void, timeoutMs: number, retryMs = 1_000): Promise<Signal> {
    const requestId = this.nextId++;
    if (this.nextId > 0xffffffff) this.nextId = 1;
    const signal = build(requestId);
    return new Promise<Signal>((resolve, reject) => {
      const entry: Pending = { resolve, reject, timers: [] };
      this.pending.set(requestId, entry);
      const retry = setInterval(() => send(signal), retryMs);
      const timeout = setTimeout(() => this.settle(requestId, null, new RequestTimeoutError(what, timeoutMs)), timeoutMs);
      retry.unref();
      timeout.unref();
      entry.timers.push(retry, timeout);
      send(signal);
    });
  }

  /** Routes a response to its request; returns false when no request has that id. */
  complete(signal: Signal): boolean {
    if (!("requestId" in signal)) return false;
    if (!this.pending.has(signal.requestId)) return false;
    if (signal.type === SignalType.Error) this.settle(signal.requestId, null, new SignalError(signal.code, signal.message));
    else this.settle(signal.requestId, signal, null);
    return true;
  }

  cancelAll(err: Error): void {
    for (const id of [...this.pending.keys()]) this.settle(id, null, err);
  }

  private settle(requestId: number, signal: Signal | null, err: Error | null): void {
    const entry = this.pending.get(requestId);
    if (!entry) return;
    this.pending.delete(requestId);
    for (const t of entry.timers) clearTimeout(t);
    if (err) entry.reject(err);
    else entry.resolve(signal!);
  }
}
