// Forwarding of names outside the overlay zone to the upstream resolver.
import { randomInt } from "node:crypto";
import dnsPacket from "dns-packet";
import type { Transport } from "./edns.js";
import { exchangeOverTcp, exchangeOverUdp } from "./upstream-exchange.js";
import type { ExchangeResult, UpstreamAddress } from "./upstream-exchange.js";

export class Forwarder {
  private readonly closing = new AbortController();

  constructor(
    readonly upstream: UpstreamAddress,
    private readonly timeoutMs: number,
    private readonly onMismatch: (reason: string) => void,
  ) {}

  /**
   * Sends the client's query unchanged except for a random ID, and returns the
   * upstream response with the client's ID restored. The whole exchange,
   * a TCP retry included, finishes within the query timeout.
   */
  async forward(query: Buffer, questionBytes: Buffer, clientTransport: Transport): Promise<ExchangeResult> {
    const deadline = Date.now() + this.timeoutMs;
    const clientId = query.readUInt16BE(0);
    // A fresh ID and source port per query make a spoofed response hard to
    // match (RFC 5452 section 9.2), whatever ID the client chose.
    const upstreamQuery = Buffer.from(query);
    upstreamQuery.writeUInt16BE(randomInt(0, 0x10000), 0);
    const request = {
      upstream: this.upstream,
      query: upstreamQuery,
      questionBytes,
      timeoutMs: this.timeoutMs,
      signal: this.closing.signal,
      onMismatch: this.onMismatch,
    };

    let result = await exchangeOverUdp(request);

    // A TCP client takes any size, so a truncated UDP response is fetched
    // again over TCP (RFC 7766 section 5).
    const truncated = result.kind === "response" && (result.message.readUInt16BE(2) & dnsPacket.TRUNCATED_RESPONSE) !== 0;
    if (truncated && clientTransport === "tcp") {
      const remainingMs = deadline - Date.now();
      result = remainingMs > 0 ? await exchangeOverTcp({ ...request, timeoutMs: remainingMs }) : { kind: "timeout" };
    }

    if (result.kind === "response") result.message.writeUInt16BE(clientId, 0);
    return result;
  }

  /** Ends every exchange in progress with an error result. */
  close(): void {
    this.closing.abort();
  }
}
