import { test } from "node:test";
import assert from "node:assert/strict";
import { ReplayWindow } from "../../firmware/src/protocol/replay.js";
import { REPLAY_WINDOW_BITS } from "../../firmware/src/protocol/constants.js";

test("replay window accepts each counter once", () => {
  const w = new ReplayWindow();
  for (let i = 0n; i < 100n; i++) assert.equal(w.accept(i), true, `first ${i}`);
  for (let i = 0n; i < 100n; i++) assert.equal(w.accept(i), false, `again ${i}`);
});

test("replay window accepts reordering inside the window", () => {
  const w = new ReplayWindow();
  assert.equal(w.accept(10_000n), true);
  assert.equal(w.accept(9_999n), true);
  assert.equal(w.accept(10n), false, "far left of the window");
  assert.equal(w.accept(10_000n - BigInt(REPLAY_WINDOW_BITS) + 64n), true, "just inside");
  assert.equal(w.accept(9_999n), false);
});

test("replay window clears bits after a jump", () => {
  const w = new ReplayWindow();
  assert.equal(w.accept(5n), true);
  const far = 5n + BigInt(REPLAY_WINDOW_BITS) * 3n;
  assert.equal(w.accept(far), true);
  // A counter that maps to the same bit as 5 but is new must be accepted.
  assert.equal(w.accept(far - BigInt(REPLAY_WINDOW_BITS) + 64n), true);
  assert.equal(w.accept(5n), false);
});

test("replay window check does not record", () => {
  const w = new ReplayWindow();
  assert.equal(w.check(7n), true);
  assert.equal(w.check(7n), true);
  assert.equal(w.accept(7n), true);
  assert.equal(w.check(7n), false);
});

test("replay window random order matches a set", () => {
  const w = new ReplayWindow();
  const seen = new Set<bigint>();
  let highest = -1n;
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff), seed);
  for (let i = 0; i < 20000; i++) {
    const c = BigInt(Math.max(0, Number(highest) + (rand() % 600) - 500));
    const tooOld = highest - c >= BigInt(REPLAY_WINDOW_BITS - 32);
    const expected = !seen.has(c) && !tooOld;
    assert.equal(w.accept(c), expected, `counter ${c} highest ${highest}`);
    if (expected) {
      seen.add(c);
      if (c > highest) highest = c;
    }
  }
});
