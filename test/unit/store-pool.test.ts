import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { CloudStore } from "../../firmware/src/cloud/store/index.js";
import { TEST_CONFIG, assertStoreError, makeTempDir, openTempStore } from "./fixtures/store-helpers.js";

test("pool allocates addresses in sequence", (t) => {
  const store = openTempStore(t, { pool: { cidr: "10.1.0.0/24", reserved: [] } });
  const addresses = ["a", "b", "c"].map((name) => store.createNode(name, "node").virtualIP);
  assert.deepEqual(addresses, ["10.1.0.1", "10.1.0.2", "10.1.0.3"]);
});

test("pool skips reserved addresses", (t) => {
  const store = openTempStore(t, { pool: { cidr: "10.1.0.0/24", reserved: ["10.1.0.1", "10.1.0.3"] } });
  const addresses = ["a", "b", "c"].map((name) => store.createNode(name, "node").virtualIP);
  assert.deepEqual(addresses, ["10.1.0.2", "10.1.0.4", "10.1.0.5"]);
});

test("pool skips network and broadcast addresses", (t) => {
  const store = openTempStore(t, { pool: { cidr: "192.168.7.0/29", reserved: [] } });
  const addresses = ["a", "b", "c", "d", "e", "f"].map((name) => store.createNode(name, "node").virtualIP);
  assert.deepEqual(addresses, [
    "192.168.7.1",
    "192.168.7.2",
    "192.168.7.3",
    "192.168.7.4",
    "192.168.7.5",
    "192.168.7.6",
  ]);
  assertStoreError(() => store.createNode("g", "node"), "pool_exhausted");
});

test("full /30 pool raises pool_exhausted", (t) => {
  const store = openTempStore(t, { pool: { cidr: "10.9.9.4/30", reserved: [] } });
  assert.equal(store.createNode("a", "node").virtualIP, "10.9.9.5");
  assert.equal(store.createNode("b", "node").virtualIP, "10.9.9.6");
  assertStoreError(() => store.createNode("c", "node"), "pool_exhausted");
  assert.equal(store.listNodes().length, 2);
  assertStoreError(() => store.createNode("d", "node"), "pool_exhausted");
});

test("/30 pool with a reserved address holds one node", (t) => {
  const store = openTempStore(t, { pool: { cidr: "10.9.9.4/30", reserved: ["10.9.9.5"] } });
  assert.equal(store.createNode("a", "node").virtualIP, "10.9.9.6");
  assertStoreError(() => store.createNode("b", "node"), "pool_exhausted");
});

test("deleted node's address is reused", (t) => {
  const store = openTempStore(t, { pool: { cidr: "10.9.9.4/30", reserved: [] } });
  const a = store.createNode("a", "node");
  const b = store.createNode("b", "node");
  store.deleteNode(a.id);
  const c = store.createNode("c", "node");
  assert.equal(c.virtualIP, a.virtualIP);
  assert.notEqual(c.virtualIP, b.virtualIP);
  assertStoreError(() => store.createNode("d", "node"), "pool_exhausted");
});

test("pool fills a gap before the end", (t) => {
  const store = openTempStore(t, { pool: { cidr: "10.1.0.0/24", reserved: [] } });
  const nodes = ["a", "b", "c", "d"].map((name) => store.createNode(name, "node"));
  store.deleteNode(nodes[1]!.id);
  store.deleteNode(nodes[2]!.id);
  assert.equal(store.createNode("e", "node").virtualIP, "10.1.0.2");
  assert.equal(store.createNode("f", "node").virtualIP, "10.1.0.3");
  assert.equal(store.createNode("g", "node").virtualIP, "10.1.0.5");
});

test("addresses survive reopening", (t) => {
  const path = join(makeTempDir(t), "cloud.db");
  const config = { ...TEST_CONFIG, pool: { cidr: "10.1.0.0/24", reserved: [] } };
  const first = new CloudStore(path, config);
  const virtualIPs = ["a", "b"].map((name) => first.createNode(name, "node").virtualIP);
  first.close();

  const second = new CloudStore(path, config);
  t.after(() => second.close());
  assert.deepEqual(
    second.listNodes().map((node) => node.virtualIP),
    virtualIPs,
  );
  assert.equal(second.createNode("c", "node").virtualIP, "10.1.0.3");
});

test("invalid pool configuration is rejected", (t) => {
  const invalid = [
    { cidr: "100.64.0.0", reserved: [] },
    { cidr: "100.64.0.0/31", reserved: [] },
    { cidr: "100.64.0.0/33", reserved: [] },
    { cidr: "100.64.0.1/16", reserved: [] },
    { cidr: "100.64.0.0/x", reserved: [] },
    { cidr: "300.64.0.0/16", reserved: [] },
    { cidr: "100.064.0.0/16", reserved: [] },
    { cidr: "100.64.0.0/16", reserved: ["100.64.0.0"] },
    { cidr: "100.64.0.0/16", reserved: ["100.64.255.255"] },
    { cidr: "100.64.0.0/16", reserved: ["10.0.0.1"] },
    { cidr: "100.64.0.0/16", reserved: ["not an address"] },
  ];
  for (const pool of invalid) {
    assertStoreError(() => openTempStore(t, { pool }), "invalid_config");
  }
});

test("large pool allocates past many nodes", (t) => {
  const store = openTempStore(t, { pool: { cidr: "100.64.0.0/16", reserved: ["100.64.1.0"] } });
  let last = "";
  for (let i = 0; i < 300; i++) last = store.createNode(`n${i}`, "node").virtualIP;
  // Nodes 0 to 254 take 100.64.0.1 to 100.64.0.255, and 100.64.1.0 is reserved.
  assert.equal(last, "100.64.1.45");
});
