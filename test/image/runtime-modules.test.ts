// The selection of npm packages that the image ships next to the bundle.
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { dependencyClosure, externalPackages } from "../../scripts/image/runtime-modules.js";

describe("runtime-modules", () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), "runtime-modules-"));
  after(() => fs.rmSync(base, { recursive: true, force: true }));

  const writePackage = (modules: string, name: string, pkg: object): void => {
    fs.mkdirSync(path.join(modules, name), { recursive: true });
    fs.writeFileSync(path.join(modules, name, "package.json"), JSON.stringify({ name, ...pkg }));
  };

  test("external packages of a bundle", () => {
    const bundle = [
      'var a = require("node:fs");',
      'var b = require("fs");',
      'var c = __toESM(require("koffi"));',
      'var d = require("sodium-native");',
      'var e = require("@scope/pkg/lib/x.js");',
      'var f = require("./local.js");',
      'var g = require("koffi");',
      "var h = notrequire(\"left-out\");",
    ].join("\n");
    assert.deepEqual(externalPackages(bundle), ["@scope/pkg", "koffi", "sodium-native"]);
  });

  test("external packages of the built bundle", { skip: !fs.existsSync("dist/cyphonic.cjs") && "dist/cyphonic.cjs not built" }, () => {
    const names = externalPackages(fs.readFileSync("dist/cyphonic.cjs", "utf8"));
    for (const native of ["koffi", "sodium-native"]) assert.ok(names.includes(native), `${native} in ${names.join(", ")}`);
  });

  test("closure follows dependencies and installed optional ones", () => {
    const modules = path.join(base, "node_modules");
    writePackage(modules, "koffi", { optionalDependencies: { "@koromix/koffi-linux-arm64": "1", "@koromix/koffi-linux-x64": "1" } });
    writePackage(modules, "@koromix/koffi-linux-arm64", {});
    writePackage(modules, "sodium-native", { dependencies: { "require-addon": "1" } });
    writePackage(modules, "require-addon", { dependencies: { "bare-module-resolve": "1" } });
    writePackage(modules, "bare-module-resolve", { dependencies: { "require-addon": "1" } });
    writePackage(modules, "unrelated", {});
    assert.deepEqual(dependencyClosure(["koffi", "sodium-native"], modules), [
      "@koromix/koffi-linux-arm64",
      "bare-module-resolve",
      "koffi",
      "require-addon",
      "sodium-native",
    ]);
  });

  test("closure rejects a missing dependency", () => {
    const modules = path.join(base, "missing");
    writePackage(modules, "better-sqlite3", { dependencies: { bindings: "1" } });
    assert.throws(() => dependencyClosure(["better-sqlite3"], modules), /package bindings is not installed/);
  });
});
