// One query/response exchange with the upstream resolver, over UDP or TCP.
import dgram from "node:dgram";
import net from "node:net";
import { HEADER_BYTES, readHeader } from "./header.js";
import { MAX_TCP_MESSAGE_BYTES } from "./limits.js";
import { frameMessage, TcpFramer } from "./tcp-framer.js";

export interface UpstreamAddress {
  address: string;
  port: number;
}

export type ExchangeResult =
  | { kind: "response"; message: Buffer }
  | { kind: "timeout" }
  | { kind: "error"; err: unknown };

export interface ExchangeRequest {
  upstream: UpstreamAddress;
  /** Query with the ID that the response must carry. */
  query: Buffer;
  /** The query's question section, which the response must repeat byte for byte. */
  questionBytes: Buffer;
  timeoutMs: number;
  signal: AbortSignal;
  /** Called for each response that does not belong to the query, with a stable reason code. */
  onMismatch: (reason: string) => void;
}

/** Returns why `response` does not match the query (length, QR, ID, QDCOUNT, question), or null when it does. */
export function responseMismatch(response: Buffer, query: Buffer, questionBytes: Buffer): string | null {
  if (response.length < HEADER_BYTES + questionBytes.length) return "short";
  const header = readHeader(response);
  if (!header.isResponse) return "not_response";
  if (header.id !== query.readUInt16BE(0)) return "id";
  if (header.qdcount !== 1) return "qdcount";
  if (!response.subarray(HEADER_BYTES, HEADER_BYTES + questionBytes.length).equals(questionBytes)) return "question";
  return null;
}

/**
 * Runs `start` with a `finish` callback that settles the exchange once, on a
 * response, an error, the timeout or the abort signal, and then runs `cleanup`.
 */
function settleOnce(
  request: ExchangeRequest,
  start: (finish: (result: ExchangeResult) => void) => () => void,
): Promise<ExchangeResult> {
  return new Promise((resolve) => {
    let settled = false;
    let cleanup: (() => void) | undefined = undefined;
    const onAbort = (): void => finish({ kind: "error", err: new Error("DNS server is closing") });
    const timer = setTimeout(() => finish({ kind: "timeout" }), request.timeoutMs);

    function finish(result: ExchangeResult): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      request.signal.removeEventListener("abort", onAbort);
      cleanup?.();
      resolve(result);
    }

    if (request.signal.aborted) {
      onAbort();
      return;
    }
    request.signal.addEventListener("abort", onAbort);
    cleanup = start(finish);
    if (settled) cleanup();
  });
}

/**
 * Sends the query from a new socket with an OS-chosen port, connected to the
 * upstream so the kernel discards datagrams from any other source.
 */
export function exchangeOverUdp(request: ExchangeRequest): Promise<ExchangeResult> {
  return settleOnce(request, (finish) => {
    const socket = dgram.createSocket(net.isIPv6(request.upstream.address) ? "udp6" : "udp4");
    socket.on("error", (err) => finish({ kind: "error", err }));
    socket.on("message", (message) => {
      const mismatch = responseMismatch(message, request.query, request.questionBytes);
      if (mismatch) {
        request.onMismatch(mismatch);
        return;
      }
      finish({ kind: "response", message });
    });
    socket.connect(request.upstream.port, request.upstream.address, () => {
      socket.send(request.query, (err) => {
        if (err) finish({ kind: "error", err });
      });
    });

    return () => {
      try {
        socket.close();
      } catch {
        // Already closed after an error.
      }
    };
  });
}

/** Sends the query over a new TCP connection and reads one response. */
export function exchangeOverTcp(request: ExchangeRequest): Promise<ExchangeResult> {
  return settleOnce(request, (finish) => {
    const framer = new TcpFramer(MAX_TCP_MESSAGE_BYTES, MAX_TCP_MESSAGE_BYTES + 2);
    const socket = net.createConnection({ host: request.upstream.address, port: request.upstream.port });
    socket.on("connect", () => socket.write(frameMessage(request.query)));
    socket.on("error", (err) => finish({ kind: "error", err }));
    socket.on("close", () => {
      finish({ kind: "error", err: new Error("upstream closed the TCP connection before a response") });
    });
    socket.on("data", (chunk) => {
      if (!framer.push(chunk)) {
        finish({ kind: "error", err: new Error("upstream sent more than one maximum-size TCP message") });
        return;
      }
      while (true) {
        const output = framer.next();
        if (output.kind === "incomplete") return;
        if (output.kind === "error") {
          finish({ kind: "error", err: new Error(`invalid TCP framing from upstream: ${output.reason}`) });
          return;
        }
        const mismatch = responseMismatch(output.message, request.query, request.questionBytes);
        if (!mismatch) {
          finish({ kind: "response", message: output.message });
          return;
        }
        request.onMismatch(mismatch);
      }
    });

    return () => socket.destroy();
  });
}
