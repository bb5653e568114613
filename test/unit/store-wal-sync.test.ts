import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { WalSync } from "../../firmware/src/cloud/store/wal-sync.js";
import { CloudStore } from "../../firmware/src/cloud/store/index.js";
import { TEST_CONFIG, makeTempDir, openTempStore } from "./fixtures/store-helpers.js";

type Callback = (err: NodeJS.ErrnoException | null) => void;

/** Creates a WalSync on a scratch file whose fsync calls wait until the test completes them. */
function manualSync(t: import("node:test").TestContext): { sync: WalSync; calls: Callback[] } {
  const path = join(makeTempDir(t), "cloud.db-wal");
  writeFileSync(path, "");
  const calls: Callback[] = [];
  const sync = new WalSync(path, (_fd, callback) => calls.push(callback));
  t.after(() => sync.close());
  return { sync, calls };
}

/** Returns a function that reports whether `promise` has settled, checked after pending callbacks ran. */
function tracked(promise: Promise<void>): () => Promise<string> {
  let state = "pending";
  promise.then(
    () => (state = "resolved"),
    (err: Error) => (state = `rejected: ${err.message}`),
  );
  return async () => {
    await new Promise((resolve) => setImmediate(resolve));
    return state;
  };
}

test("WalSync resolves at once without commits", async (t) => {
  const { sync, calls } = manualSync(t);
  await sync.durable();
  assert.equal(calls.length, 0);
});

test("WalSync waits for the fsync after a commit", async (t) => {
  const { sync, calls } = manualSync(t);
  sync.noteCommit();
  const state = tracked(sync.durable());
  assert.equal(await state(), "pending");
  assert.equal(calls.length, 1);
  calls[0]!(null);
  assert.equal(await state(), "resolved");
});

test("WalSync shares one fsync among later commits", async (t) => {
  const { sync, calls } = manualSync(t);
  sync.noteCommit();
  const first = tracked(sync.durable());
  // These commits come after the running fsync started, so it does not cover them.
  sync.noteCommit();
  const second = tracked(sync.durable());
  sync.noteCommit();
  const third = tracked(sync.durable());
  assert.equal(calls.length, 1);

  calls[0]!(null);
  assert.equal(await first(), "resolved");
  assert.equal(await second(), "pending");
  assert.equal(calls.length, 2, "a second fsync covers the later commits");

  calls[1]!(null);
  assert.equal(await second(), "resolved");
  assert.equal(await third(), "resolved");
  assert.equal(calls.length, 2);
});

test("WalSync rejects when the fsync fails", async (t) => {
  const { sync, calls } = manualSync(t);
  sync.noteCommit();
  const state = tracked(sync.durable());
  calls[0]!(Object.assign(new Error("EIO: i/o error, fsync"), { code: "EIO" }));
  assert.equal(await state(), "rejected: EIO: i/o error, fsync");

  // The failed commit is not counted as durable, so the next waiter syncs again.
  const retry = tracked(sync.durable());
  assert.equal(calls.length, 2);
  calls[1]!(null);
  assert.equal(await retry(), "resolved");
});

test("WalSync close lets the running fsync finish", async (t) => {
  const { sync, calls } = manualSync(t);
  sync.noteCommit();
  const state = tracked(sync.durable());
  sync.close();
  assert.equal(await state(), "pending");
  calls[0]!(null);
  assert.equal(await state(), "resolved");

  sync.noteCommit();
  await assert.rejects(sync.durable(), /closed before its last commits were synced/);
});

test("routeFor returns one route per pair", async (t) => {
  const store = openTempStore(t);
  const a = store.createNode("alice", "node");
  const b = store.createNode("bob", "node");
  const [first, second] = await Promise.all([store.routeFor(a.id, b.id), store.routeFor(b.id, a.id)]);
  assert.equal(first.routeId, second.routeId);
  assert.equal(first.nodeA, a.id);
  assert.equal(first.nodeB, b.id);
  assert.deepEqual(await store.routesOf(a.id), [first]);
});

test("routeFor route is visible to other connections", async (t) => {
  const path = join(makeTempDir(t), "cloud.db");
  const store = new CloudStore(path, TEST_CONFIG);
  t.after(() => store.close());
  const a = store.createNode("alice", "node");
  const b = store.createNode("bob", "node");
  const route = await store.routeFor(a.id, b.id);

  // The TRS may run in another process with its own connection.
  const reader = new Database(path, { readonly: true });
  t.after(() => reader.close());
  const row = reader.prepare<[number], { node_a: number; node_b: number }>("SELECT node_a, node_b FROM routes WHERE route_id = ?").get(route.routeId);
  assert.deepEqual(row, { node_a: a.id, node_b: b.id });
  assert.equal(store.getRoute(route.routeId)?.routeId, route.routeId);
});

test("routeFor leaves synchronous at FULL", async (t) => {
  const store = openTempStore(t);
  const a = store.createNode("alice", "node");
  const b = store.createNode("bob", "node");
  await store.routeFor(a.id, b.id);
  // Token redemption and node creation on the same connection must still sync on every commit.
  const db = (store as unknown as { db: Database.Database }).db;
  assert.equal(db.pragma("synchronous", { simple: true }), 2, "synchronous = FULL");
});
