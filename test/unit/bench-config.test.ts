// The benchmark's configuration from the environment: defaults, subsets,
// and a clear error for each malformed variable.
import { test } from "node:test";
import assert from "node:assert/strict";
import { loadConfig } from "../../scripts/bench/config.js";

const ROOT = "/repo";

test("bench config defaults", () => {
  const config = loadConfig({}, ROOT);
  assert.equal(config.quick, false);
  assert.equal(config.prefix, "bnch1");
  assert.equal(config.rounds, 3);
  assert.deepEqual([...config.phases], ["paths", "memory", "cloud"]);
  assert.equal(config.systems.size, 0);
  assert.equal(config.docsDir, "/repo/docs");
});

test("bench config system subset", () => {
  const config = loadConfig({ BENCH_SYSTEMS: " wireguard-go,cyphonic-adapter ,", BENCH_PHASES: "paths", BENCH_ROUNDS: "1" }, ROOT);
  assert.deepEqual([...config.systems], ["wireguard-go", "cyphonic-adapter"]);
  assert.deepEqual([...config.phases], ["paths"]);
  assert.equal(config.rounds, 1);
});

test("bench config rejects malformed values", () => {
  const cases: [NodeJS.ProcessEnv, RegExp][] = [
    [{ BENCH_SYSTEMS: "wireguard" }, /^invalid BENCH_SYSTEMS entry "wireguard": expected plain, wireguard-go, nebula-aes, nebula-chacha, cyphonic-node, cyphonic-adapter$/],
    [{ BENCH_PHASES: "paths,speed" }, /^invalid BENCH_PHASES entry "speed": expected paths, memory, cloud$/],
    [{ BENCH_ROUNDS: "0" }, /^invalid BENCH_ROUNDS "0": expected a whole number of at least 1$/],
    [{ BENCH_ROUNDS: "2.5" }, /^invalid BENCH_ROUNDS "2.5": expected a whole number of at least 1$/],
    [{ BENCH_CLOUD_NODES: "ten" }, /^invalid BENCH_CLOUD_NODES "ten": expected a whole number of at least 1$/],
    [{ BENCH_PREFIX: "Bad-Prefix" }, /^invalid BENCH_PREFIX "Bad-Prefix": expected a lowercase letter followed by 1 to 9 lowercase letters or digits$/],
  ];
  for (const [env, message] of cases) assert.throws(() => loadConfig(env, ROOT), { message }, JSON.stringify(env));
});
