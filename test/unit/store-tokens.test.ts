import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import Database from "better-sqlite3";
import { CloudStore } from "../../firmware/src/cloud/store/index.js";
import { TEST_CONFIG, assertStoreError, makeTempDir, openTempStore } from "./fixtures/store-helpers.js";

const NOW = 1_700_000_000_000;
const TTL_MS = 60_000;
const KEY_A = Buffer.alloc(32, 0xa1);
const KEY_B = Buffer.alloc(32, 0xb2);

test("createToken returns a random base64url secret", (t) => {
  const store = openTempStore(t);
  const node = store.createNode("alice", "node");
  const first = store.createToken(node.id, TTL_MS, NOW);
  const second = store.createToken(node.id, TTL_MS, NOW);
  assert.match(first.secret, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(Buffer.from(first.secret, "base64url").length, 32);
  assert.notEqual(first.secret, second.secret);
  assert.equal(first.expiresAt, NOW + TTL_MS);
});

test("token table stores only the secret hash", (t) => {
  const dir = makeTempDir(t);
  const path = join(dir, "cloud.db");
  const store = new CloudStore(path, TEST_CONFIG);
  const node = store.createNode("alice", "node");
  const { secret } = store.createToken(node.id, TTL_MS, NOW);
  store.close();

  const db = new Database(path, { readonly: true });
  t.after(() => db.close());
  const rows = db.prepare("SELECT * FROM tokens").all() as Record<string, unknown>[];
  assert.equal(rows.length, 1);
  const expectedHash = createHash("sha256").update(secret).digest();
  assert.deepEqual(rows[0]?.hash, expectedHash);
  for (const value of Object.values(rows[0] ?? {})) {
    assert.ok(!String(value).includes(secret), "a column contains the secret");
    if (Buffer.isBuffer(value)) assert.ok(!value.equals(Buffer.from(secret, "base64url")), "a column contains the raw secret");
  }
});

test("redeemToken binds the key", (t) => {
  const store = openTempStore(t);
  const node = store.createNode("alice", "node");
  const { secret } = store.createToken(node.id, TTL_MS, NOW);
  const redeemed = store.redeemToken(secret, KEY_A, NOW + 1);
  assert.equal(redeemed.id, node.id);
  assert.deepEqual(redeemed.publicKey, KEY_A);
  assert.deepEqual(store.getNodeById(node.id)?.publicKey, KEY_A);
  assert.equal(store.getNodeByPublicKey(KEY_A)?.id, node.id);
});

test("redeemToken accepts a base64 key", (t) => {
  const store = openTempStore(t);
  const node = store.createNode("alice", "node");
  const { secret } = store.createToken(node.id, TTL_MS, NOW);
  assert.deepEqual(store.redeemToken(secret, KEY_A.toString("base64"), NOW).publicKey, KEY_A);
});

test("unknown token is token_invalid", (t) => {
  const store = openTempStore(t);
  const node = store.createNode("alice", "node");
  const { secret } = store.createToken(node.id, TTL_MS, NOW);
  assertStoreError(() => store.redeemToken("not-a-token", KEY_A, NOW), "token_invalid");
  assertStoreError(() => store.redeemToken(secret.slice(0, -1), KEY_A, NOW), "token_invalid");
  assertStoreError(() => store.redeemToken("", KEY_A, NOW), "token_invalid");
  assert.equal(store.getNodeById(node.id)?.publicKey, null);
});

test("token expiry boundary", (t) => {
  const store = openTempStore(t);
  const early = store.createNode("early", "node");
  const late = store.createNode("late", "node");
  const earlyToken = store.createToken(early.id, TTL_MS, NOW);
  const lateToken = store.createToken(late.id, TTL_MS, NOW);

  // The last accepted millisecond is expiresAt - 1.
  assert.equal(store.redeemToken(earlyToken.secret, KEY_A, earlyToken.expiresAt - 1).id, early.id);
  assertStoreError(() => store.redeemToken(lateToken.secret, KEY_B, lateToken.expiresAt), "token_expired");
  assert.equal(store.getNodeById(late.id)?.publicKey, null);
});

test("redeemed token with another key is token_reused", (t) => {
  const store = openTempStore(t);
  const node = store.createNode("alice", "node");
  const { secret } = store.createToken(node.id, TTL_MS, NOW);
  store.redeemToken(secret, KEY_A, NOW);
  assertStoreError(() => store.redeemToken(secret, KEY_B, NOW + 1), "token_reused");
  assert.deepEqual(store.getNodeById(node.id)?.publicKey, KEY_A);
});

test("redemption with the same key is idempotent", (t) => {
  const store = openTempStore(t);
  const node = store.createNode("alice", "node");
  const { secret, expiresAt } = store.createToken(node.id, TTL_MS, NOW);
  store.redeemToken(secret, KEY_A, NOW);
  const again = store.redeemToken(secret, KEY_A, NOW + 1);
  assert.equal(again.id, node.id);
  assert.deepEqual(again.publicKey, KEY_A);
  // A device retrying after expiry still gets its binding confirmed.
  assert.deepEqual(store.redeemToken(secret, KEY_A, expiresAt + 1).publicKey, KEY_A);
});

test("replaced key makes old token token_reused", (t) => {
  const store = openTempStore(t);
  const node = store.createNode("alice", "node");
  const first = store.createToken(node.id, TTL_MS, NOW);
  store.redeemToken(first.secret, KEY_A, NOW);
  const second = store.createToken(node.id, TTL_MS, NOW);
  store.redeemToken(second.secret, KEY_B, NOW);
  assert.deepEqual(store.getNodeById(node.id)?.publicKey, KEY_B);
  assertStoreError(() => store.redeemToken(first.secret, KEY_A, NOW), "token_reused");
  assert.deepEqual(store.getNodeById(node.id)?.publicKey, KEY_B);
});

test("key of another node is key_in_use", (t) => {
  const store = openTempStore(t);
  const alice = store.createNode("alice", "node");
  const bob = store.createNode("bob", "node");
  store.redeemToken(store.createToken(alice.id, TTL_MS, NOW).secret, KEY_A, NOW);
  const bobToken = store.createToken(bob.id, TTL_MS, NOW);
  assertStoreError(() => store.redeemToken(bobToken.secret, KEY_A, NOW), "key_in_use");
  assert.equal(store.getNodeById(bob.id)?.publicKey, null);
  // The failed attempt left the token unredeemed, so a fresh key still works.
  assert.deepEqual(store.redeemToken(bobToken.secret, KEY_B, NOW).publicKey, KEY_B);
});

test("malformed key is invalid_key", (t) => {
  const store = openTempStore(t);
  const node = store.createNode("alice", "node");
  const { secret } = store.createToken(node.id, TTL_MS, NOW);
  assertStoreError(() => store.redeemToken(secret, Buffer.alloc(31), NOW), "invalid_key");
  assertStoreError(() => store.redeemToken(secret, "short", NOW), "invalid_key");
  assert.deepEqual(store.redeemToken(secret, KEY_A, NOW).publicKey, KEY_A);
});

test("createToken argument checks", (t) => {
  const store = openTempStore(t);
  const adapter = store.createNode("gateway", "adapter");
  const general = store.addGeneralNode(adapter.id, "02:00:00:00:00:01", "printer");
  assertStoreError(() => store.createToken(9999, TTL_MS, NOW), "node_not_found");
  assertStoreError(() => store.createToken(general.id, TTL_MS, NOW), "invalid_kind");
  for (const ttlMs of [0, -1, 1.5, Number.NaN]) {
    assertStoreError(() => store.createToken(adapter.id, ttlMs, NOW), "invalid_argument");
  }
  assert.equal(store.createToken(adapter.id, 1, NOW).expiresAt, NOW + 1);
});
