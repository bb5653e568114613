import { test } from "node:test";
import assert from "node:assert/strict";
import { generateKeyPair } from "../../firmware/src/protocol/crypto.js";
import { TokenFileError, formatTokenFile, parseTokenFile } from "../../firmware/src/node/token-file.js";

const key = generateKeyPair().publicKey;
const valid = formatTokenFile({
  asEndpoints: [{ address: "198.18.0.10", port: 7400 }, { address: "2001:db8:1::10", port: 7400 }],
  asKey: key,
  token: "abcdefghijklmnopqrstuvwxyz012345",
});

test("token file round-trips", () => {
  const parsed = parseTokenFile(valid);
  assert.deepEqual(parsed.asEndpoints, [{ address: "198.18.0.10", port: 7400 }, { address: "2001:db8:1::10", port: 7400 }]);
  assert.deepEqual(parsed.asKey, key);
  assert.equal(parsed.token, "abcdefghijklmnopqrstuvwxyz012345");
});

const bad: [string, string, string | null][] = [
  ["missing token", valid.replace(/^token=.*$/m, ""), "token"],
  ["missing key", valid.replace(/^as_key=.*$/m, ""), "as_key"],
  ["short key", valid.replace(/^as_key=.*$/m, "as_key=AAAA"), "as_key"],
  ["low-order key", valid.replace(/^as_key=.*$/m, `as_key=${Buffer.alloc(32).toString("base64")}`), "as_key"],
  ["endpoint without port", valid.replace(/^as_endpoint=.*$/m, "as_endpoint=198.18.0.10"), "as_endpoint"],
  ["host name endpoint", valid.replace(/^as_endpoint=.*$/m, "as_endpoint=cloud.example:7400"), "as_endpoint"],
  ["token with spaces", valid.replace(/^token=.*$/m, "token=abc def ghi jkl mno pqr"), "token"],
  ["unknown field", valid + "colour=blue\n", "colour"],
  ["line without equals", valid + "just words\n", null],
  ["binary garbage", "\u0000\u0001\u0002=\u0003", "\u0000\u0001\u0002"],
];

for (const [name, text, field] of bad) {
  test(`token file rejects ${name}`, () => {
    assert.throws(
      () => parseTokenFile(text, "t.txt"),
      (e: unknown) => e instanceof TokenFileError && e.field === field && e.message.startsWith("t.txt: "),
    );
  });
}
