import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { LeaseTable, loadLeaseTable } from "../../firmware/src/adapter/dhcp/lease-table.js";

const MAC_A = "02:00:00:00:00:0a";
const MAC_B = "02:00:00:00:00:0b";

function tempFile(): { dir: string; file: string } {
  const dir = mkdtempSync(path.join(tmpdir(), "dhcp-leases-"));
  return { dir, file: path.join(dir, "leases.json") };
}

test("lease is visible until it expires", () => {
  const table = new LeaseTable("/nonexistent/leases.json");
  table.bind(MAC_A, "100.64.0.10", 2000);
  assert.equal(table.get(MAC_A, 1999)?.address, "100.64.0.10");
  assert.equal(table.get(MAC_A, 2000), undefined);
  assert.deepEqual(table.list(1000), [{ mac: MAC_A, address: "100.64.0.10", expiresMs: 2000 }]);
  assert.deepEqual(table.list(2000), []);
});

test("expire removes only due leases", () => {
  const table = new LeaseTable("/nonexistent/leases.json");
  table.bind(MAC_A, "100.64.0.10", 1000);
  table.bind(MAC_B, "100.64.0.11", 5000);
  assert.equal(table.nextDeadlineMs(), 1000);
  assert.deepEqual(table.expire(1000), [{ mac: MAC_A, address: "100.64.0.10", expiresMs: 1000 }]);
  assert.equal(table.get(MAC_B, 1000)?.address, "100.64.0.11");
  assert.equal(table.nextDeadlineMs(), 5000);
  assert.deepEqual(table.expire(4999), []);
});

test("bind reports previous and ended leases", () => {
  const table = new LeaseTable("/nonexistent/leases.json");
  assert.deepEqual(table.bind(MAC_A, "100.64.0.10", 1000), { previous: undefined, ended: [] });
  const renewal = table.bind(MAC_A, "100.64.0.10", 2000);
  assert.equal(renewal.previous?.expiresMs, 1000);
  assert.deepEqual(renewal.ended, []);
  const moved = table.bind(MAC_A, "100.64.0.20", 3000);
  assert.deepEqual(moved.ended, [{ mac: MAC_A, address: "100.64.0.10", expiresMs: 2000 }]);
  // One address belongs to one client: B taking .20 ends A's lease.
  const takenByB = table.bind(MAC_B, "100.64.0.20", 3000);
  assert.deepEqual(takenByB.ended, [{ mac: MAC_A, address: "100.64.0.20", expiresMs: 3000 }]);
  assert.equal(table.get(MAC_A, 0), undefined);
});

test("decline holds address until deadline", () => {
  const table = new LeaseTable("/nonexistent/leases.json");
  table.bind(MAC_A, "100.64.0.10", 10_000);
  table.decline(MAC_A, "100.64.0.10", 5000);
  assert.equal(table.get(MAC_A, 0), undefined, "decline ends the lease");
  assert.equal(table.isDeclined("100.64.0.10", 4999), true);
  assert.equal(table.isDeclined("100.64.0.10", 5000), false);
  assert.equal(table.nextDeadlineMs(), 5000);
  table.expire(5000);
  assert.equal(table.nextDeadlineMs(), undefined);
});

test("save and load keep leases and holds", () => {
  const { dir, file } = tempFile();
  try {
    const table = new LeaseTable(file);
    table.bind(MAC_A, "100.64.0.10", 1_000_000);
    table.decline(MAC_B, "100.64.0.11", 2_000_000);
    table.save();
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(dir), ["leases.json"], "no temporary file is left behind");
    const loaded = loadLeaseTable(file);
    assert.equal(loaded.invalid, undefined);
    assert.deepEqual(loaded.table.list(0), [{ mac: MAC_A, address: "100.64.0.10", expiresMs: 1_000_000 }]);
    assert.equal(loaded.table.isDeclined("100.64.0.11", 0), true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("missing file gives empty table", () => {
  const { dir, file } = tempFile();
  try {
    const loaded = loadLeaseTable(file);
    assert.deepEqual(loaded.table.list(0), []);
    assert.equal(existsSync(file), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("invalid file is moved aside", () => {
  const { dir, file } = tempFile();
  try {
    for (const content of ["{not json", JSON.stringify({ version: 1, leases: [{ mac: "AA:BB", address: "x", expiresMs: -1 }], declined: [] })]) {
      writeFileSync(file, content);
      const loaded = loadLeaseTable(file);
      assert.ok(loaded.invalid, "invalid content is reported");
      assert.equal(loaded.invalid.movedTo, `${file}.invalid`);
      assert.equal(readFileSync(`${file}.invalid`, "utf8"), content);
      assert.equal(existsSync(file), false);
      assert.deepEqual(loaded.table.list(0), []);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("failed save leaves the table in memory", () => {
  const { dir } = tempFile();
  try {
    const blocker = path.join(dir, "not-a-directory");
    writeFileSync(blocker, "");
    const table = new LeaseTable(path.join(blocker, "leases.json"));
    table.bind(MAC_A, "100.64.0.10", 1000);
    assert.throws(() => table.save());
    assert.equal(table.get(MAC_A, 0)?.address, "100.64.0.10");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
