// DNS over TCP framing (RFC 1035 section 4.2.2, RFC 7766 section 8): each
// message is preceded by its length as a 16-bit big-endian number. A stream
// may carry several messages, and one message may arrive in many segments.

const LENGTH_PREFIX_BYTES = 2;

export type FramerOutput =
  | { kind: "message"; message: Buffer }
  | { kind: "incomplete" }
  | { kind: "error"; reason: "tcp_message_too_large" | "tcp_empty_message" };

/** Prepends the 2-byte length to `message`, which must not exceed 65535 bytes. */
export function frameMessage(message: Buffer): Buffer {
  const prefix = Buffer.alloc(LENGTH_PREFIX_BYTES);
  prefix.writeUInt16BE(message.length, 0);
  return Buffer.concat([prefix, message]);
}

/** Splits a byte stream into DNS messages with bounded memory. */
export class TcpFramer {
  private pending: Buffer = Buffer.alloc(0);

  constructor(
    private readonly maxMessageBytes: number,
    private readonly maxBufferedBytes: number,
  ) {}

  get bufferedBytes(): number {
    return this.pending.length;
  }

  /** Appends received bytes. Returns false when the buffer would exceed maxBufferedBytes, and then keeps nothing. */
  push(chunk: Buffer): boolean {
    if (this.pending.length + chunk.length > this.maxBufferedBytes) {
      this.pending = Buffer.alloc(0);
      return false;
    }
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    return true;
  }

  /** Removes and returns the next whole message, if the buffer contains one. */
  next(): FramerOutput {
    if (this.pending.length < LENGTH_PREFIX_BYTES) return { kind: "incomplete" };

    const messageBytes = this.pending.readUInt16BE(0);
    // The length is checked before the body arrives, so an oversized message
    // is rejected without buffering it.
    if (messageBytes > this.maxMessageBytes) return { kind: "error", reason: "tcp_message_too_large" };
    if (messageBytes === 0) return { kind: "error", reason: "tcp_empty_message" };

    const end = LENGTH_PREFIX_BYTES + messageBytes;
    if (this.pending.length < end) return { kind: "incomplete" };

    // Copy the message out, so the rest of a large chunk is not kept alive by it.
    const message = Buffer.from(this.pending.subarray(LENGTH_PREFIX_BYTES, end));
    this.pending = this.pending.subarray(end);
    return { kind: "message", message };
  }
}
