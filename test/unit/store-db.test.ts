import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, statSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { openDatabase } from "../../firmware/src/cloud/store/db.js";
import { MIGRATIONS } from "../../firmware/src/cloud/store/schema.js";
import { assertStoreError, makeTempDir } from "./fixtures/store-helpers.js";

test("openDatabase sets the pragmas", (t) => {
  const db = openDatabase(join(makeTempDir(t), "cloud.db"));
  t.after(() => db.close());
  assert.equal(db.pragma("journal_mode", { simple: true }), "wal");
  assert.equal(db.pragma("synchronous", { simple: true }), 2, "synchronous = FULL");
  assert.equal(db.pragma("foreign_keys", { simple: true }), 1);
  assert.equal(db.pragma("user_version", { simple: true }), MIGRATIONS.length);
});

test("missing directory is created with mode 0700", (t) => {
  const dir = join(makeTempDir(t), "state", "cloud");
  const db = openDatabase(join(dir, "cloud.db"));
  t.after(() => db.close());
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  assert.equal(statSync(join(dir, "..")).mode & 0o777, 0o700);
});

test("existing directory keeps its mode", (t) => {
  const dir = join(makeTempDir(t), "shared");
  mkdirSync(dir, { mode: 0o755 });
  const db = openDatabase(join(dir, "cloud.db"));
  t.after(() => db.close());
  assert.equal(statSync(dir).mode & 0o777, 0o755 & ~process.umask());
});

test("reopening keeps data and schema version", (t) => {
  const path = join(makeTempDir(t), "cloud.db");
  const first = openDatabase(path);
  first.prepare("INSERT INTO nodes (name, kind, virtual_ip, created_at) VALUES ('a', 'node', 1, 0)").run();
  first.close();

  const second = openDatabase(path);
  t.after(() => second.close());
  assert.equal(second.pragma("user_version", { simple: true }), MIGRATIONS.length);
  const row = second.prepare<[], { name: string }>("SELECT name FROM nodes").get();
  assert.equal(row?.name, "a");
});

test("newer schema version is rejected", (t) => {
  const path = join(makeTempDir(t), "cloud.db");
  const raw = new Database(path);
  raw.pragma(`user_version = ${MIGRATIONS.length + 1}`);
  raw.close();
  assertStoreError(() => openDatabase(path), "schema_too_new");
});

test("schema constraints hold", (t) => {
  const db = openDatabase(join(makeTempDir(t), "cloud.db"));
  t.after(() => db.close());
  const insert = db.prepare(
    "INSERT INTO nodes (name, kind, virtual_ip, adapter_id, mac, created_at) VALUES (?, ?, ?, ?, ?, 0)",
  );
  insert.run("adapter", "adapter", 1, null, null);
  assert.throws(() => insert.run("dup-ip", "node", 1, null, null), /UNIQUE/);
  assert.throws(() => insert.run("general", "general", 2, null, null), /CHECK/);
  assert.throws(() => insert.run("node-mac", "node", 3, null, "02:00:00:00:00:01"), /CHECK/);
  assert.throws(() => insert.run("orphan", "general", 4, 999, "02:00:00:00:00:01"), /FOREIGN KEY/);
  assert.throws(() => insert.run("kind", "router", 5, null, null), /CHECK/);
  assert.throws(
    () => db.prepare("UPDATE nodes SET public_key = ? WHERE name = 'adapter'").run(Buffer.alloc(31)),
    /CHECK/,
  );
});

test("in-memory database opens", () => {
  const db = openDatabase(":memory:");
  try {
    assert.equal(db.pragma("user_version", { simple: true }), MIGRATIONS.length);
    assert.equal(db.pragma("foreign_keys", { simple: true }), 1);
  } finally {
    db.close();
  }
});
