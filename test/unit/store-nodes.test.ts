import { test } from "node:test";
import assert from "node:assert/strict";
import { assertStoreError, openTempStore } from "./fixtures/store-helpers.js";

test("createNode returns the stored record", (t) => {
  const store = openTempStore(t);
  const before = Date.now();
  const node = store.createNode("alice", "node");
  assert.equal(node.name, "alice");
  assert.equal(node.fqdn, "alice.overlay.test");
  assert.equal(node.kind, "node");
  assert.equal(node.publicKey, null);
  assert.equal(node.virtualIP, "100.64.0.1");
  assert.equal(node.adapterId, null);
  assert.equal(node.mac, null);
  assert.ok(node.createdAt >= before, `createdAt ${node.createdAt} is before the call`);
  assert.ok(node.createdAt <= Date.now(), `createdAt ${node.createdAt} is in the future`);
  assert.deepEqual(store.getNodeById(node.id), node);
});

test("node names follow RFC 1123 in lower case", (t) => {
  const store = openTempStore(t);
  const invalid = ["Bad_Name", "", "a".repeat(64), "-x", "x-", "Alice", "a.b", "a b", "ä"];
  for (const name of invalid) {
    assertStoreError(() => store.createNode(name, "node"), "invalid_name");
  }
  const valid = ["a", "0", "1host", "a-b", "a".repeat(63)];
  for (const name of valid) {
    assert.equal(store.createNode(name, "node").name, name);
  }
  assert.equal(store.listNodes().length, valid.length);
});

test("duplicate name is rejected", (t) => {
  const store = openTempStore(t);
  store.createNode("alice", "node");
  assertStoreError(() => store.createNode("alice", "adapter"), "name_in_use");
  assert.equal(store.listNodes().length, 1);
});

test("overlay domain is validated and lower-cased", (t) => {
  const store = openTempStore(t, { overlayDomain: "Overlay.Example." });
  assert.equal(store.overlayDomain, "overlay.example");
  assert.equal(store.createNode("bob", "node").fqdn, "bob.overlay.example");
  assertStoreError(() => openTempStore(t, { overlayDomain: "bad_domain" }), "invalid_config");
  assertStoreError(() => openTempStore(t, { overlayDomain: ["a", "b", "c", "d"].map((letter) => letter.repeat(50)).join(".") }), "invalid_config");
});

test("fqdn lookup ignores case and trailing dot", (t) => {
  const store = openTempStore(t);
  const node = store.createNode("alice", "node");
  assert.equal(store.getNodeByFqdn("alice.overlay.test")?.id, node.id);
  assert.equal(store.getNodeByFqdn("ALICE.Overlay.TEST")?.id, node.id);
  assert.equal(store.getNodeByFqdn("Alice.overlay.test.")?.id, node.id);
  assert.equal(store.getNodeByFqdn("alice.other.test"), undefined);
  assert.equal(store.getNodeByFqdn("x.alice.overlay.test"), undefined);
  assert.equal(store.getNodeByFqdn("overlay.test"), undefined);
  assert.equal(store.getNodeByFqdn("bob.overlay.test"), undefined);
});

test("lookup by id, virtual IP and key", (t) => {
  const store = openTempStore(t);
  store.createNode("alice", "node");
  const bob = store.createNode("bob", "node");
  assert.equal(store.getNodeById(bob.id)?.name, "bob");
  assert.equal(store.getNodeById(9999), undefined);
  assert.equal(store.getNodeByVirtualIP("100.64.0.2")?.id, bob.id);
  assert.equal(store.getNodeByVirtualIP("100.64.0.9"), undefined);
  assert.equal(store.getNodeByVirtualIP("not an address"), undefined);

  const key = Buffer.alloc(32, 7);
  const { secret } = store.createToken(bob.id, 60_000);
  store.redeemToken(secret, key);
  assert.equal(store.getNodeByPublicKey(key)?.id, bob.id);
  assert.equal(store.getNodeByPublicKey(key.toString("base64"))?.id, bob.id);
  assert.equal(store.getNodeByPublicKey(key.toString("base64url"))?.id, bob.id);
  assert.equal(store.getNodeByPublicKey(Buffer.alloc(32, 8)), undefined);
  assert.equal(store.getNodeByPublicKey(Buffer.alloc(31, 7)), undefined);
  assert.equal(store.getNodeByPublicKey("not base64"), undefined);
});

test("general node belongs to an adapter", (t) => {
  const store = openTempStore(t);
  const adapter = store.createNode("gateway", "adapter");
  const printer = store.addGeneralNode(adapter.id, "02-00-5E-10-00-01", "printer");
  assert.equal(printer.kind, "general");
  assert.equal(printer.adapterId, adapter.id);
  assert.equal(printer.mac, "02:00:5e:10:00:01");
  assert.equal(printer.fqdn, "printer.overlay.test");
  assert.equal(printer.virtualIP, "100.64.0.2");

  const camera = store.addGeneralNode(adapter.id, "020000000002", "camera");
  assert.equal(camera.mac, "02:00:00:00:00:02");
});

test("general node MAC validation and uniqueness", (t) => {
  const store = openTempStore(t);
  const adapter = store.createNode("gateway", "adapter");
  const other = store.createNode("gateway2", "adapter");
  const plain = store.createNode("plain", "node");

  const invalid = ["", "02:00:5e:10:00", "02:00:5e:10:00:01:02", "02:00-5e:10:00:01", "zz:00:5e:10:00:01"];
  for (const mac of invalid) {
    assertStoreError(() => store.addGeneralNode(adapter.id, mac, "dev"), "invalid_mac");
  }
  // Multicast, broadcast and all-zero addresses never identify a device.
  for (const mac of ["01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00"]) {
    assertStoreError(() => store.addGeneralNode(adapter.id, mac, "dev"), "invalid_mac");
  }

  store.addGeneralNode(adapter.id, "02:00:00:00:00:01", "dev1");
  assertStoreError(() => store.addGeneralNode(adapter.id, "02:00:00:00:00:01", "dev2"), "mac_in_use");
  assertStoreError(() => store.addGeneralNode(adapter.id, "02-00-00-00-00-01", "dev2"), "mac_in_use");
  assert.equal(store.addGeneralNode(other.id, "02:00:00:00:00:01", "dev2").adapterId, other.id);

  assertStoreError(() => store.addGeneralNode(plain.id, "02:00:00:00:00:03", "dev3"), "not_an_adapter");
  assertStoreError(() => store.addGeneralNode(9999, "02:00:00:00:00:03", "dev3"), "node_not_found");
  assertStoreError(() => store.createNode("dev3", "general"), "invalid_argument");
  assertStoreError(
    () => store.createNode("dev3", "node", { adapterId: adapter.id, mac: "02:00:00:00:00:03" }),
    "invalid_argument",
  );
});

test("deleteNode removes node, tokens and location", (t) => {
  const store = openTempStore(t);
  const node = store.createNode("alice", "node");
  const { secret } = store.createToken(node.id, 60_000);
  store.registerLocation(node.id, { localAddresses: [], observedAddress: "192.0.2.1", observedPort: 4000 });

  store.deleteNode(node.id);
  assert.equal(store.getNodeById(node.id), undefined);
  assert.equal(store.getLocation(node.id), undefined);
  assertStoreError(() => store.redeemToken(secret, Buffer.alloc(32, 1)), "token_invalid");
  assertStoreError(() => store.deleteNode(node.id), "node_not_found");
});

test("deleting an adapter deletes its general nodes", (t) => {
  const store = openTempStore(t);
  const adapter = store.createNode("gateway", "adapter");
  const printer = store.addGeneralNode(adapter.id, "02:00:00:00:00:01", "printer");
  const keep = store.createNode("keep", "node");
  store.deleteNode(adapter.id);
  assert.equal(store.getNodeById(printer.id), undefined);
  assert.deepEqual(
    store.listNodes().map((node) => node.id),
    [keep.id],
  );
});

test("ids of deleted nodes are not reused", (t) => {
  const store = openTempStore(t);
  const first = store.createNode("first", "node");
  store.deleteNode(first.id);
  const second = store.createNode("second", "node");
  assert.ok(second.id > first.id, `id ${second.id} reused`);
});

test("listNodes returns nodes in id order", (t) => {
  const store = openTempStore(t);
  const names = ["c", "a", "b"];
  for (const name of names) store.createNode(name, "node");
  assert.deepEqual(
    store.listNodes().map((node) => node.name),
    names,
  );
});
