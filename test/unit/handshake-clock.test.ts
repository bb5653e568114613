import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { HandshakeClock } from "../../firmware/src/transport/handshake-clock.js";

test("handshake clock strictly increases", () => {
  const clock = new HandshakeClock();
  let last = 0n;
  for (let i = 0; i < 10_000; i++) {
    const v = clock.next();
    assert.ok(v > last, `value ${v} after ${last}`);
    last = v;
  }
});

test("handshake clock resumes above a saved mark ahead of the wall clock", (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "clock-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, "handshake-clock");
  // A device whose clock was a day ahead before the reboot and is right now.
  const ahead = BigInt(Date.now()) + 86_400_000n;
  fs.writeFileSync(file, `${ahead}\n`);
  const clock = new HandshakeClock(file);
  assert.ok(clock.next() > ahead, "the first value after the restart is above the saved mark");
});

test("handshake clock saves its mark on stop", (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "clock-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, "handshake-clock");
  const clock = new HandshakeClock(file);
  clock.start();
  const used = clock.next();
  clock.stop();
  const saved = BigInt(fs.readFileSync(file, "utf8").trim());
  assert.ok(saved >= used, `saved ${saved} below used ${used}`);
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  const restarted = new HandshakeClock(file);
  assert.ok(restarted.next() > saved);
});

test("handshake clock ignores a garbled file", (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "clock-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, "handshake-clock");
  fs.writeFileSync(file, "not a number");
  const v = new HandshakeClock(file).next();
  assert.ok(v >= BigInt(Date.now()) - 1000n && v <= BigInt(Date.now()) + 1000n);
});
