// scripts/image/run-stage.sh against small stages that only run scripts on
// the build machine: the order of sub-stages and steps, SKIP files, the
// executable bit of NN-run.sh, the exported variables and functions, and the
// steps it rejects. The chroot steps (packages, NN-run-chroot.sh) run in the
// image test, against a real arm64 root. Needs root, as the runner does.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { run } from "./vm.js";

const RUNNER = path.resolve(__dirname, "..", "..", "scripts", "image", "run-stage.sh");
const isRoot = process.getuid?.() === 0;

/** Writes `files` (relative path to content) below `dir`; names ending in "*" become executable without it. */
function writeTree(dir: string, files: Record<string, string>): void {
  for (const [name, content] of Object.entries(files)) {
    const executable = name.endsWith("*");
    const file = path.join(dir, executable ? name.slice(0, -1) : name);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, content, { mode: executable ? 0o755 : 0o644 });
  }
}

/** Returns a step script that appends its label and `extra` (expanded by bash) to the trace file next to the root. */
function traceStep(label: string, extra = ""): string {
  return `#!/bin/bash -e\necho "${label}${extra}" >>"\${STAGE_WORK_DIR}/trace"\n`;
}

describe("run-stage.sh", { skip: isRoot ? false : "needs root" }, () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), "run-stage-"));
  let count = 0;

  /** Makes a work directory with a root that passes the runner's check, and returns the root's path. */
  const makeRoot = (): string => {
    count += 1;
    const root = path.join(base, `work-${count}`, "rootfs");
    fs.mkdirSync(path.join(root, "bin"), { recursive: true });
    fs.copyFileSync("/bin/bash", path.join(root, "bin", "bash"));
    fs.chmodSync(path.join(root, "bin", "bash"), 0o755);
    return root;
  };
  const trace = (root: string): string[] => {
    const file = path.join(path.dirname(root), "trace");
    return fs.existsSync(file) ? fs.readFileSync(file, "utf8").trim().split("\n") : [];
  };

  after(() => fs.rmSync(base, { recursive: true, force: true }));

  test("steps run in pi-gen order", async () => {
    const stage = path.join(base, "stage-order");
    writeTree(stage, {
      "prerun.sh*": traceStep("prerun"),
      "01-second/00-run.sh*": traceStep("01-second/00", ' cwd=$(basename "$PWD")'),
      "00-first/05-run.sh*": traceStep("00-first/05", " root=${ROOTFS_DIR} host=${TARGET_HOSTNAME}"),
      "00-first/01-run.sh*": traceStep("00-first/01", ' functions=$(type -t on_chroot),$(type -t log)'),
      "00-first/02-run.sh": traceStep("not executable, must not run"),
      "02-skipped/SKIP": "",
      "02-skipped/00-run.sh*": traceStep("skipped sub-stage, must not run"),
    });
    const root = makeRoot();
    const result = await run([RUNNER, stage, root]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(trace(root), [
      "prerun",
      "00-first/01 functions=function,function",
      `00-first/05 root=${root} host=cyphonic-adapter`,
      "01-second/00 cwd=01-second",
    ]);
    assert.match(result.stderr, /Skip .*\/00-first\/02-run\.sh \(not executable\)/);
  });

  test("stage with SKIP runs nothing", async () => {
    const stage = path.join(base, "stage-skip");
    writeTree(stage, { SKIP: "", "prerun.sh*": traceStep("prerun"), "00-a/00-run.sh*": traceStep("00-a/00") });
    const root = makeRoot();
    const result = await run([RUNNER, stage, root]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(trace(root), []);
  });

  test("failing run.sh stops the stage", async () => {
    const stage = path.join(base, "stage-fail");
    writeTree(stage, {
      "00-a/00-run.sh*": "#!/bin/bash -e\nfalse\n",
      "00-a/01-run.sh*": traceStep("00-a/01"),
    });
    const root = makeRoot();
    const result = await run([RUNNER, stage, root]);
    assert.notEqual(result.code, 0);
    assert.deepEqual(trace(root), []);
  });

  test("quilt patches are rejected", async () => {
    const stage = path.join(base, "stage-patches");
    writeTree(stage, { "00-a/00-patches/series": "01-fix.diff\n", "00-a/01-run.sh*": traceStep("00-a/01") });
    const root = makeRoot();
    const result = await run([RUNNER, stage, root]);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /00-patches: quilt patches are not supported/);
    assert.deepEqual(trace(root), []);
  });

  test("root without bash is rejected", async () => {
    const stage = path.join(base, "stage-noroot");
    writeTree(stage, { "00-a/00-run.sh*": traceStep("00-a/00") });
    const root = path.join(base, "empty", "rootfs");
    fs.mkdirSync(root, { recursive: true });
    const result = await run([RUNNER, stage, root]);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /has no \/bin\/bash/);
  });
});
