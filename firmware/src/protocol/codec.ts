// Bounds-checked big-endian reader and writer for the signaling messages.
// Every read checks the remaining length first, so a truncated or lying
// length field raises ProtocolError("short"), never a RangeError from Buffer.
import { ProtocolError } from "./errors.js";

/** Upper bound of one length-prefixed string or byte field, in bytes. */
export const MAX_FIELD_BYTES = 1024;

const utf8 = new TextDecoder("utf-8", { fatal: true });

export class Reader {
  private offset = 0;

  constructor(private readonly buf: Buffer) {}

  get remaining(): number {
    return this.buf.length - this.offset;
  }

  private need(n: number, what: string): void {
    if (this.remaining < n) {
      throw new ProtocolError("short", `truncated ${what}: need ${n} bytes, have ${this.remaining}`);
    }
  }

  u8(what = "u8"): number {
    this.need(1, what);
    return this.buf.readUInt8(this.offset++);
  }

  u16(what = "u16"): number {
    this.need(2, what);
    const v = this.buf.readUInt16BE(this.offset);
    this.offset += 2;
    return v;
  }

  u32(what = "u32"): number {
    this.need(4, what);
    const v = this.buf.readUInt32BE(this.offset);
    this.offset += 4;
    return v;
  }

  u64(what = "u64"): bigint {
    this.need(8, what);
    const v = this.buf.readBigUInt64BE(this.offset);
    this.offset += 8;
    return v;
  }

  fixed(n: number, what = "bytes"): Buffer {
    this.need(n, what);
    const v = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    return Buffer.from(v);
  }

  /** Reads a u16 length followed by that many bytes. */
  bytes(what = "bytes"): Buffer {
    const n = this.u16(`${what} length`);
    if (n > MAX_FIELD_BYTES) throw new ProtocolError("oversized", `${what} length ${n} exceeds ${MAX_FIELD_BYTES}`);
    return this.fixed(n, what);
  }

  /** Reads a u16 length followed by UTF-8 text. Invalid UTF-8 is rejected, not replaced. */
  string(what = "string"): string {
    const raw = this.bytes(what);
    try {
      return utf8.decode(raw);
    } catch {
      throw new ProtocolError("bad_field", `${what} is not valid UTF-8`);
    }
  }

  rest(): Buffer {
    const v = this.buf.subarray(this.offset);
    this.offset = this.buf.length;
    return v;
  }

  end(what: string): void {
    if (this.remaining !== 0) {
      throw new ProtocolError("oversized", `${what}: ${this.remaining} trailing bytes`);
    }
  }
}

export class Writer {
  private readonly parts: Buffer[] = [];

  u8(v: number): this {
    const b = Buffer.allocUnsafe(1);
    b.writeUInt8(v);
    this.parts.push(b);
    return this;
  }

  u16(v: number): this {
    const b = Buffer.allocUnsafe(2);
    b.writeUInt16BE(v);
    this.parts.push(b);
    return this;
  }

  u32(v: number): this {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(v >>> 0);
    this.parts.push(b);
    return this;
  }

  u64(v: bigint): this {
    const b = Buffer.allocUnsafe(8);
    b.writeBigUInt64BE(v);
    this.parts.push(b);
    return this;
  }

  fixed(v: Buffer, n: number): this {
    if (v.length !== n) throw new RangeError(`fixed field needs ${n} bytes, got ${v.length}`);
    this.parts.push(v);
    return this;
  }

  bytes(v: Buffer): this {
    if (v.length > MAX_FIELD_BYTES) throw new RangeError(`field of ${v.length} bytes exceeds ${MAX_FIELD_BYTES}`);
    this.u16(v.length);
    this.parts.push(v);
    return this;
  }

  string(v: string): this {
    return this.bytes(Buffer.from(v, "utf8"));
  }

  raw(v: Buffer): this {
    this.parts.push(v);
    return this;
  }

  finish(): Buffer {
    return Buffer.concat(this.parts);
  }
}
