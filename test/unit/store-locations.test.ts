import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import Database from "better-sqlite3";
import { CloudStore } from "../../firmware/src/cloud/store/index.js";
import { TEST_CONFIG, assertStoreError, makeTempDir, openTempStore } from "./fixtures/store-helpers.js";

const NOW = 1_700_000_000_000;

test("registerLocation stores the report", (t) => {
  const store = openTempStore(t);
  const node = store.createNode("alice", "node");
  const location = store.registerLocation(
    node.id,
    { localAddresses: ["192.168.1.10:4000", "[2001:db8::10]:4000"], observedAddress: "203.0.113.5", observedPort: 61000 },
    NOW,
  );
  assert.deepEqual(location, {
    nodeId: node.id,
    localAddresses: ["192.168.1.10:4000", "[2001:db8::10]:4000"],
    observedAddress: "203.0.113.5",
    observedPort: 61000,
    family: 4,
    napt: true,
    lastSeen: NOW,
    registeredAt: NOW,
  });
  assert.deepEqual(store.getLocation(node.id), location);
});

test("napt is false when observed matches a local address", (t) => {
  const store = openTempStore(t);
  const node = store.createNode("alice", "node");
  const direct = store.registerLocation(
    node.id,
    { localAddresses: ["192.168.1.10:4000", "198.51.100.7:4000"], observedAddress: "198.51.100.7", observedPort: 4000 },
    NOW,
  );
  assert.equal(direct.napt, false);

  // Same address, translated port.
  const portChanged = store.registerLocation(
    node.id,
    { localAddresses: ["198.51.100.7:4000"], observedAddress: "198.51.100.7", observedPort: 4001 },
    NOW,
  );
  assert.equal(portChanged.napt, true);

  const none = store.registerLocation(node.id, { localAddresses: [], observedAddress: "198.51.100.7", observedPort: 4000 }, NOW);
  assert.equal(none.napt, true);
});

test("napt compares canonical addresses", (t) => {
  const store = openTempStore(t);
  const node = store.createNode("alice", "node");
  // A dual-stack NMS socket reports IPv4 senders as IPv4-mapped IPv6.
  const mapped = store.registerLocation(
    node.id,
    { localAddresses: ["198.51.100.7:4000"], observedAddress: "::ffff:198.51.100.7", observedPort: 4000 },
    NOW,
  );
  assert.equal(mapped.napt, false);
  assert.equal(mapped.family, 4);
  assert.equal(mapped.observedAddress, "198.51.100.7");

  const v6 = store.registerLocation(
    node.id,
    { localAddresses: ["[2001:DB8:0:0:0:0:0:10]:4000"], observedAddress: "2001:db8::10", observedPort: 4000 },
    NOW,
  );
  assert.equal(v6.napt, false);
  assert.equal(v6.family, 6);
  assert.deepEqual(v6.localAddresses, ["[2001:db8::10]:4000"]);
});

test("registerLocation rejects malformed input", (t) => {
  const store = openTempStore(t);
  const node = store.createNode("alice", "node");
  const good = { localAddresses: ["192.0.2.1:4000"], observedAddress: "192.0.2.1", observedPort: 4000 };
  const bad = [
    { ...good, localAddresses: ["192.0.2.1"] },
    { ...good, localAddresses: ["192.0.2.1:0"] },
    { ...good, localAddresses: ["192.0.2.1:65536"] },
    { ...good, localAddresses: ["2001:db8::1:4000"] },
    { ...good, localAddresses: ["[fe80::1%eth0]:4000"] },
    { ...good, localAddresses: ["host.example:4000"] },
    { ...good, localAddresses: Array.from({ length: 17 }, (_, i) => `192.0.2.${i + 1}:4000`) },
    { ...good, observedAddress: "999.0.0.1" },
    { ...good, observedPort: 0 },
    { ...good, observedPort: 1.5 },
  ];
  for (const report of bad) {
    assertStoreError(() => store.registerLocation(node.id, report, NOW), "invalid_argument");
  }
  assert.equal(store.getLocation(node.id), undefined);
  assertStoreError(() => store.registerLocation(9999, good, NOW), "node_not_found");
});

test("re-registration replaces the location", (t) => {
  const store = openTempStore(t);
  const node = store.createNode("alice", "node");
  store.registerLocation(node.id, { localAddresses: ["192.0.2.1:4000"], observedAddress: "192.0.2.1", observedPort: 4000 }, NOW);
  const moved = store.registerLocation(
    node.id,
    { localAddresses: ["[2001:db8::1]:4000"], observedAddress: "2001:db8::99", observedPort: 5000 },
    NOW + 10,
  );
  assert.deepEqual(moved.localAddresses, ["[2001:db8::1]:4000"]);
  assert.equal(moved.observedAddress, "2001:db8::99");
  assert.equal(moved.observedPort, 5000);
  assert.equal(moved.family, 6);
  assert.equal(moved.registeredAt, NOW + 10);
  assert.equal(moved.lastSeen, NOW + 10);
});

test("keep-alive updates lastSeen after flush", (t) => {
  const path = join(makeTempDir(t), "cloud.db");
  const store = new CloudStore(path, TEST_CONFIG);
  t.after(() => store.close());
  const node = store.createNode("alice", "node");
  store.registerLocation(node.id, { localAddresses: [], observedAddress: "192.0.2.1", observedPort: 4000 }, NOW);

  store.touchLocation(node.id, NOW + 1000);
  store.touchLocation(node.id, NOW + 500);
  assert.equal(store.getLocation(node.id)?.lastSeen, NOW + 1000);

  const reader = new Database(path, { readonly: true });
  t.after(() => reader.close());
  const readLastSeen = reader.prepare<[number], { last_seen: number }>("SELECT last_seen FROM locations WHERE node_id = ?");
  assert.equal(readLastSeen.get(node.id)?.last_seen, NOW, "keep-alive was written before the flush");

  store.flushKeepAlives();
  assert.equal(readLastSeen.get(node.id)?.last_seen, NOW + 1000);
  assert.equal(store.getLocation(node.id)?.registeredAt, NOW);
});

test("flush never moves lastSeen backwards", (t) => {
  const store = openTempStore(t);
  const node = store.createNode("alice", "node");
  store.touchLocation(node.id, NOW + 1);
  store.registerLocation(node.id, { localAddresses: [], observedAddress: "192.0.2.1", observedPort: 4000 }, NOW + 50);
  store.flushKeepAlives();
  assert.equal(store.getLocation(node.id)?.lastSeen, NOW + 50);

  store.touchLocation(node.id, NOW + 100);
  store.registerLocation(node.id, { localAddresses: [], observedAddress: "192.0.2.1", observedPort: 4000 }, NOW + 60);
  store.flushKeepAlives();
  assert.equal(store.getLocation(node.id)?.lastSeen, NOW + 100);
  assert.equal(store.getLocation(node.id)?.registeredAt, NOW + 60);
});

test("keep-alive timer flushes", async (t) => {
  const path = join(makeTempDir(t), "cloud.db");
  const store = new CloudStore(path, { ...TEST_CONFIG, keepAliveFlushMs: 20 });
  t.after(() => store.close());
  const node = store.createNode("alice", "node");
  store.registerLocation(node.id, { localAddresses: [], observedAddress: "192.0.2.1", observedPort: 4000 }, NOW);
  store.touchLocation(node.id, NOW + 5);

  const reader = new Database(path, { readonly: true });
  t.after(() => reader.close());
  const readLastSeen = reader.prepare<[number], { last_seen: number }>("SELECT last_seen FROM locations WHERE node_id = ?");
  const deadline = Date.now() + 2000;
  while (readLastSeen.get(node.id)?.last_seen !== NOW + 5 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.equal(readLastSeen.get(node.id)?.last_seen, NOW + 5);
});

test("keep-alive timer yields between batches", async (t) => {
  const path = join(makeTempDir(t), "cloud.db");
  const store = new CloudStore(path, { ...TEST_CONFIG, keepAliveFlushMs: 20 });
  t.after(() => store.close());
  // More nodes than one batch (250), so a flush takes more than one turn of the event loop.
  const count = 600;
  for (let i = 0; i < count; i++) {
    const node = store.createNode(`n${i}`, "node");
    store.registerLocation(node.id, { localAddresses: [], observedAddress: "192.0.2.1", observedPort: 4000 }, NOW);
    store.touchLocation(node.id, NOW + 5);
  }

  const reader = new Database(path, { readonly: true });
  t.after(() => reader.close());
  const countWritten = reader.prepare<[number], { n: number }>("SELECT count(*) AS n FROM locations WHERE last_seen = ?");
  // Polling with setImmediate runs between the flush's batches, which it schedules the same way.
  const seen = new Set<number>();
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    const written = countWritten.get(NOW + 5)!.n;
    seen.add(written);
    if (written === count) break;
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.ok(seen.has(count), `all ${count} keep-alive times written; counts seen: ${[...seen].join(", ")}`);
  const partial = [...seen].filter((n) => n > 0 && n < count);
  assert.ok(partial.length > 0, `the event loop ran during the flush; counts seen: ${[...seen].join(", ")}`);
});

test("close flushes keep-alives", (t) => {
  const path = join(makeTempDir(t), "cloud.db");
  const first = new CloudStore(path, TEST_CONFIG);
  const node = first.createNode("alice", "node");
  first.registerLocation(node.id, { localAddresses: [], observedAddress: "192.0.2.1", observedPort: 4000 }, NOW);
  first.touchLocation(node.id, NOW + 7);
  first.close();

  const second = new CloudStore(path, TEST_CONFIG);
  t.after(() => second.close());
  assert.equal(second.getLocation(node.id)?.lastSeen, NOW + 7);
});

test("keep-alive of unregistered node is dropped", (t) => {
  const store = openTempStore(t);
  const node = store.createNode("alice", "node");
  store.touchLocation(node.id, NOW);
  store.touchLocation(9999, NOW);
  store.flushKeepAlives();
  assert.equal(store.getLocation(node.id), undefined);
  assert.equal(store.getLocation(9999), undefined);
});
