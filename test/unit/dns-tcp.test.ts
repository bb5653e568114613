import { test } from "node:test";
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import type net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { DnsServer } from "../../firmware/src/node/dns/index.js";
import type { OverlayLookup } from "../../firmware/src/node/dns/index.js";
import { DEFAULT_DNS_LIMITS } from "../../firmware/src/node/dns/limits.js";
import { TcpConnection } from "../../firmware/src/node/dns/tcp-connection.js";
import { RateLimitedLog, logger } from "../../firmware/src/util/log.js";
import {
  encodeQuery,
  firstAnswerData,
  frame,
  LOOPBACK,
  PEER_IPV4,
  questionBytes,
  standaloneQueryHandler,
  startTestServer,
  TcpDnsClient,
  waitFor,
} from "./dns-support.js";
import type { TestServer } from "./dns-support.js";

async function withServer(
  run: (t: TestServer) => Promise<void>,
  overrides: Parameters<typeof startTestServer>[0] = {},
): Promise<void> {
  const t = await startTestServer(overrides);
  try {
    await run(t);
  } finally {
    await t.server.close();
  }
}

function idsOf(messages: Buffer[]): number[] {
  return messages.map((message) => message.readUInt16BE(0)).sort((a, b) => a - b);
}

test("two messages in one TCP write", async () => {
  await withServer(async (t) => {
    const client = await TcpDnsClient.connect(t.port);
    const first = encodeQuery({ name: "peer.cyphonic.internal", id: 1 });
    const second = encodeQuery({ name: "missing.cyphonic.internal", id: 2 });
    await client.write(Buffer.concat([frame(first), frame(second)]));
    const messages = await client.waitForMessages(2);
    assert.deepEqual(idsOf(messages), [1, 2]);

    const byId = new Map(messages.map((message) => [message.readUInt16BE(0), message]));
    assert.equal(firstAnswerData(byId.get(1) ?? Buffer.alloc(0)), PEER_IPV4);
    assert.equal((byId.get(2)?.readUInt16BE(2) ?? 0) & 0x0f, 3);
    assert.deepEqual(questionBytes(byId.get(2) ?? Buffer.alloc(0)), questionBytes(second));
    client.destroy();
  });
});

test("TCP messages split byte by byte", async () => {
  await withServer(async (t) => {
    const client = await TcpDnsClient.connect(t.port);
    const stream = Buffer.concat([
      frame(encodeQuery({ name: "peer.cyphonic.internal", id: 11 })),
      frame(encodeQuery({ name: "web.cyphonic.internal", id: 12 })),
    ]);
    for (const byte of stream) {
      await client.write(Buffer.from([byte]));
      // Lets each byte leave as its own segment, because the client socket has Nagle disabled.
      await sleep(1);
    }
    const messages = await client.waitForMessages(2);
    assert.deepEqual(idsOf(messages), [11, 12]);
    assert.equal(client.closed, false);
    client.destroy();
  });
});

test("TCP length above cap closes connection", async () => {
  await withServer(async (t) => {
    const client = await TcpDnsClient.connect(t.port);
    await client.write(Buffer.from([0xff, 0xff, 0x00, 0x01]));
    await client.waitForClose();
    assert.equal(client.messages.length, 0);
    assert.equal(t.server.counters.get("dns.drop.tcp_message_too_large"), 1);
  });
});

test("TCP zero length closes connection", async () => {
  await withServer(async (t) => {
    const client = await TcpDnsClient.connect(t.port);
    await client.write(Buffer.from([0x00, 0x00]));
    await client.waitForClose();
    assert.equal(t.server.counters.get("dns.drop.tcp_empty_message"), 1);
  });
});

test("TCP buffered bytes are capped", async () => {
  await withServer(
    async (t) => {
      const client = await TcpDnsClient.connect(t.port);
      // A declared 2000-byte message is within maxQueryBytes but cannot be buffered in 1024 bytes.
      const prefix = Buffer.from([0x07, 0xd0]);
      await client.write(Buffer.concat([prefix, Buffer.alloc(1500)]));
      await client.waitForClose();
      assert.equal(t.server.counters.get("dns.drop.tcp_buffer_overflow"), 1);
    },
    { limits: { maxTcpBufferedBytes: 1024 } },
  );
});

test("TCP idle connection times out", async () => {
  await withServer(
    async (t) => {
      const client = await TcpDnsClient.connect(t.port);
      await client.write(frame(encodeQuery({ name: "peer.cyphonic.internal", id: 21 })));
      await client.waitForMessages(1);
      const answeredAt = Date.now();
      await client.waitForClose(3_000);
      const idleMs = Date.now() - answeredAt;
      assert.ok(idleMs >= 150, `closed after ${idleMs} ms, expected about 200 ms`);
      assert.equal(t.server.counters.get("dns.tcp_idle_timeout"), 1);
    },
    { limits: { tcpIdleTimeoutMs: 200 } },
  );
});

test("TCP connection count is capped", async () => {
  await withServer(
    async (t) => {
      const first = await TcpDnsClient.connect(t.port);
      const second = await TcpDnsClient.connect(t.port);
      const third = await TcpDnsClient.connect(t.port);
      await third.waitForClose();
      assert.equal(t.server.counters.get("dns.drop.tcp_connection_limit"), 1);

      // The admitted connections still work, and a closed one frees its slot.
      await first.write(frame(encodeQuery({ name: "peer.cyphonic.internal", id: 31 })));
      assert.equal((await first.waitForMessages(1))[0]?.readUInt16BE(0), 31);
      second.destroy();
      await second.waitForClose();
      await sleep(50);
      const fourth = await TcpDnsClient.connect(t.port);
      await fourth.write(frame(encodeQuery({ name: "peer.cyphonic.internal", id: 32 })));
      assert.equal((await fourth.waitForMessages(1))[0]?.readUInt16BE(0), 32);
      first.destroy();
      fourth.destroy();
    },
    { limits: { maxTcpConnections: 2 } },
  );
});

test("TCP half-close still gets answers", async () => {
  await withServer(async (t) => {
    const client = await TcpDnsClient.connect(t.port);
    const first = frame(encodeQuery({ name: "peer.cyphonic.internal", id: 41 }));
    const second = frame(encodeQuery({ name: "web.cyphonic.internal", id: 42 }));
    client.socket.end(Buffer.concat([first, second]));
    await client.waitForClose();
    assert.deepEqual(idsOf(client.messages), [41, 42]);
  });
});

test("TCP partial message at close is counted", async () => {
  await withServer(async (t) => {
    const client = await TcpDnsClient.connect(t.port);
    const query = frame(encodeQuery({ name: "peer.cyphonic.internal", id: 51 }));
    client.socket.end(Buffer.concat([query, query.subarray(0, 10)]));
    await client.waitForClose();
    assert.deepEqual(idsOf(client.messages), [51]);
    assert.equal(t.server.counters.get("dns.drop.tcp_partial_message"), 1);
  });
});

test("TCP pipelining respects per-connection limit", async () => {
  let active = 0;
  let maxActive = 0;
  const lookup: OverlayLookup = async () => {
    active++;
    maxActive = Math.max(maxActive, active);
    await sleep(20);
    active--;
    return { kind: "address", ipv4: PEER_IPV4, ttlSeconds: 5 };
  };
  const server = await DnsServer.start({
    listen: [{ address: LOOPBACK, port: 0 }],
    overlayDomain: "cyphonic.internal",
    lookup,
    limits: { maxTcpQueriesPerConnection: 4 },
  });
  try {
    const client = await TcpDnsClient.connect(server.listening[0]?.port ?? 0);
    const queries = Array.from({ length: 12 }, (_, i) =>
      frame(encodeQuery({ name: `host${i}.cyphonic.internal`, id: 100 + i })),
    );
    await client.write(Buffer.concat(queries));
    const messages = await client.waitForMessages(12);
    assert.deepEqual(idsOf(messages), Array.from({ length: 12 }, (_, i) => 100 + i));
    assert.equal(maxActive, 4);
    client.destroy();
  } finally {
    await server.close();
  }
});

/**
 * Socket stand-in whose kernel buffer never drains: every write stays queued
 * in writableLength, as with a client that stopped reading.
 */
class UnreadSocket extends EventEmitter {
  remoteAddress = LOOPBACK;
  remotePort = 40000;
  writableLength = 0;
  writableEnded = false;
  destroyed = false;

  setNoDelay(): void {}
  setTimeout(): void {}
  pause(): void {}
  resume(): void {}
  end(): void {
    this.writableEnded = true;
  }

  write(bytes: Buffer): boolean {
    this.writableLength += bytes.length;
    return false;
  }

  destroy(): void {
    this.destroyed = true;
    this.emit("close");
  }
}

test("TCP write backlog closes connection", async () => {
  const { handler, counters } = standaloneQueryHandler();
  const socket = new UnreadSocket();
  const limits = { ...DEFAULT_DNS_LIMITS, maxTcpWriteBacklogBytes: 300 };
  const warnings = new RateLimitedLog(logger("dns-test"));
  new TcpConnection(socket as unknown as net.Socket, { handler, limits, counters, warnings }, () => {});

  const queries = Array.from({ length: 10 }, (_, i) => frame(encodeQuery({ name: "peer.cyphonic.internal", id: i })));
  socket.emit("data", Buffer.concat(queries));
  await waitFor(() => socket.destroyed, 2_000, "connection close");

  assert.equal(counters.get("dns.drop.tcp_write_backlog"), 1);
  // Each framed response is 2 + 78 bytes, so the fourth one crosses the 300-byte limit and no fifth is written.
  assert.equal(socket.writableLength, 4 * 80);
});

test("close ends open TCP connections", async () => {
  const t = await startTestServer();
  const client = await TcpDnsClient.connect(t.port);
  await t.server.close();
  await client.waitForClose();
  assert.equal(client.closed, true);
});
