// The dataplane worker as a real child process on loopback: sessions survive
// its SIGKILL and SIGSTOP without a new handshake and without a reused
// counter, and a crash loop backs off.
import { test } from "node:test";
import assert from "node:assert/strict";
import { COUNTER_BLOCK } from "../../firmware/src/dataplane/ipc.js";
import { setupWorker, waitFor } from "./fixtures/dataplane.js";

test("sessions outlive a killed and a stopped worker, with no new handshake", async () => {
  const t = await setupWorker();
  try {
    await t.exchange(1);
    const firstPid = t.dataplane.status().pid!;
    assert.ok(firstPid > 0);

    process.kill(firstPid, "SIGKILL");
    const secondPid = await waitFor("a new worker", () => {
      const pid = t.dataplane.status().pid;
      return pid && pid !== firstPid ? pid : null;
    });
    await t.exchange(2);
    assert.match(t.dataplane.status().lastRecovery!.reason, /SIGKILL/);

    process.kill(secondPid, "SIGSTOP");
    const thirdPid = await waitFor("a worker after the hang", () => {
      const pid = t.dataplane.status().pid;
      return pid && pid !== secondPid ? pid : null;
    });
    await t.exchange(3);
    const recovery = t.dataplane.status().lastRecovery!;
    assert.equal(recovery.reason, "missed heartbeats");
    assert.ok(recovery.gapMs >= 1_250, `gap ${recovery.gapMs} ms`);
    assert.ok(recovery.gapMs < 10_000, `gap ${recovery.gapMs} ms`);
    assert.notEqual(thirdPid, secondPid);

    // One handshake in all: B sent one response, A sent one initiation.
    assert.equal(t.b.engine.counters.get("handshake.responses_sent"), 1);
    assert.equal(t.a.engine.counters.get("handshake.initiations_sent"), 1);
    assert.equal(t.dataplane.status().restarts, 2);
    // Each new worker started above every counter granted before, so B saw
    // counters past two blocks and never a replay.
    const bSession = t.sessionOfB();
    assert.ok(bSession.usage().window.highest >= 2n * COUNTER_BLOCK, `highest counter ${bSession.usage().window.highest}`);
    assert.equal(t.b.engine.counters.get("drop.replay"), 0);
  } finally {
    t.close();
  }
});

test("a crash loop backs off: immediate, then 0.5, 1 and 2 s", async () => {
  const t = await setupWorker();
  try {
    const delays: number[] = [];
    let pid = t.dataplane.status().pid!;
    for (let i = 0; i < 4; i++) {
      const killedAt = Date.now();
      process.kill(pid, "SIGKILL");
      await waitFor("the exit to be noticed", () => t.dataplane.status().restarts === i + 1);
      delays.push(t.dataplane.status().nextRestartDelayMs);
      const old = pid;
      pid = await waitFor("a new worker", () => {
        const p = t.dataplane.status().pid;
        return p && p !== old ? p : null;
      });
      assert.ok(Date.now() - killedAt >= delays[i]!, `restart ${i + 1} came before its delay`);
    }
    assert.deepEqual(delays, [0, 500, 1_000, 2_000]);
    assert.equal(t.dataplane.status().crashStreak, 4);
    await t.exchange(7);
  } finally {
    t.close();
  }
});
