import { test } from "node:test";
import assert from "node:assert/strict";
import { frameMessage, TcpFramer } from "../../firmware/src/node/dns/tcp-framer.js";

function drain(framer: TcpFramer): Buffer[] {
  const messages: Buffer[] = [];
  while (true) {
    const output = framer.next();
    if (output.kind !== "message") return messages;
    messages.push(output.message);
  }
}

test("framer splits two messages in one chunk", () => {
  const framer = new TcpFramer(512, 4096);
  const first = Buffer.from("first message");
  const second = Buffer.from("second");
  assert.equal(framer.push(Buffer.concat([frameMessage(first), frameMessage(second)])), true);
  assert.deepEqual(drain(framer), [first, second]);
  assert.equal(framer.bufferedBytes, 0);
});

test("framer joins a message sent byte by byte", () => {
  const framer = new TcpFramer(512, 4096);
  const message = Buffer.from("a message split into single bytes");
  const stream = Buffer.concat([frameMessage(message), frameMessage(message)]);
  const received: Buffer[] = [];
  for (const byte of stream) {
    assert.equal(framer.push(Buffer.from([byte])), true);
    received.push(...drain(framer));
  }
  assert.deepEqual(received, [message, message]);
});

test("framer waits for the whole message", () => {
  const framer = new TcpFramer(512, 4096);
  const framed = frameMessage(Buffer.from("0123456789"));
  framer.push(framed.subarray(0, 5));
  assert.deepEqual(framer.next(), { kind: "incomplete" });
  assert.equal(framer.bufferedBytes, 5);
  framer.push(framed.subarray(5));
  assert.deepEqual(framer.next(), { kind: "message", message: Buffer.from("0123456789") });
});

test("framer rejects length above the cap", () => {
  const framer = new TcpFramer(512, 4096);
  framer.push(Buffer.from([0x02, 0x01]));
  assert.deepEqual(framer.next(), { kind: "error", reason: "tcp_message_too_large" });
});

test("framer rejects a zero length", () => {
  const framer = new TcpFramer(512, 4096);
  framer.push(Buffer.from([0, 0, 1, 2]));
  assert.deepEqual(framer.next(), { kind: "error", reason: "tcp_empty_message" });
});

test("framer caps buffered bytes", () => {
  const framer = new TcpFramer(512, 100);
  assert.equal(framer.push(Buffer.alloc(60)), true);
  assert.equal(framer.push(Buffer.alloc(41)), false);
  assert.equal(framer.bufferedBytes, 0);
});

test("frameMessage prefixes the length", () => {
  assert.deepEqual(frameMessage(Buffer.alloc(258, 7)).subarray(0, 3), Buffer.from([0x01, 0x02, 7]));
});
