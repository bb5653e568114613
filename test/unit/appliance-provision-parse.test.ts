// Validation of the token file that a user puts on the boot partition: every
// bad input gives one error that names the line, the field and the fix, and
// never repeats the token secret.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { BootTokenFileError } from "../../firmware/src/appliance/provisioning/errors.js";
import { parseBootTokenFile } from "../../firmware/src/appliance/provisioning/boot-token-file.js";
import { generateKeyPair } from "../../firmware/src/protocol/crypto.js";

const AS_KEY = generateKeyPair().publicKey.toString("base64");
const SECRET = "Secret-Token_0123456789";
const TOKEN_LINES = ["# from the operator", "as_endpoint=198.51.100.7:7400", `as_key=${AS_KEY}`, `token=${SECRET}`];

function parse(lines: string[]) {
  return parseBootTokenFile(Buffer.from(lines.join("\n") + "\n"));
}

/** Parses the lines, expecting a BootTokenFileError, and returns it. */
function parseError(lines: string[]): BootTokenFileError {
  try {
    parse(lines);
  } catch (err) {
    assert.ok(err instanceof BootTokenFileError, `expected a BootTokenFileError, got ${String(err)}`);
    return err;
  }
  assert.fail("the file was accepted");
}

interface BadCase {
  name: string;
  lines: string[];
  field: string | null;
  line: number | null;
  message: RegExp;
}

const BAD_CASES: BadCase[] = [
  {
    name: "misspelled wan_mode",
    lines: [...TOKEN_LINES, "wan_mode=dhcpp"],
    field: "wan_mode",
    line: 5,
    message: /^cyphonic-token\.txt: line 5: wan_mode must be dhcp or static, got "dhcpp"$/,
  },
  { name: "unknown field", lines: [...TOKEN_LINES, "wan_ip=192.0.2.10"], field: "wan_ip", line: 5, message: /unknown field "wan_ip"; the fields are as_endpoint, .*wan_dns$/ },
  { name: "line without equals sign", lines: ["as_endpoint=198.51.100.7:7400", `as_key=${AS_KEY}`, `token ${SECRET}`], field: null, line: 3, message: /line 3: the line is not KEY=VALUE/ },
  { name: "repeated field", lines: [...TOKEN_LINES, "wan_mode=dhcp", "wan_mode=static"], field: "wan_mode", line: 6, message: /wan_mode is set again \(first on line 5\); keep one/ },
  { name: "empty as_endpoint", lines: ["as_endpoint=", `as_key=${AS_KEY}`, `token=${SECRET}`], field: "as_endpoint", line: 1, message: /line 1: as_endpoint is empty; fill in the value from the operator/ },
  { name: "missing token", lines: TOKEN_LINES.slice(0, 3), field: "token", line: null, message: /^cyphonic-token\.txt: missing field "token"; add the line token=/ },
  { name: "endpoint without port", lines: ["as_endpoint=198.51.100.7", `as_key=${AS_KEY}`, `token=${SECRET}`], field: "as_endpoint", line: 1, message: /line 1: invalid as_endpoint: .*ADDRESS:PORT.*; copy the value again/ },
  { name: "short as_key", lines: ["as_endpoint=198.51.100.7:7400", "as_key=AAAA", `token=${SECRET}`], field: "as_key", line: 2, message: /line 2: invalid as_key: expected 32 bytes of base64, got 3/ },
  {
    name: "low-order as_key",
    lines: ["as_endpoint=198.51.100.7:7400", `as_key=${Buffer.alloc(32).toString("base64")}`, `token=${SECRET}`],
    field: "as_key",
    line: 2,
    message: /line 2: invalid as_key: not a usable X25519 public key; copy it again from the token the operator issued$/,
  },
  { name: "short token", lines: ["as_endpoint=198.51.100.7:7400", `as_key=${AS_KEY}`, "token=Short-Secret"], field: "token", line: 3, message: /line 3: invalid token: expected 16 to 256 base64url characters/ },
  { name: "empty wan_interface", lines: [...TOKEN_LINES, "wan_interface="], field: "wan_interface", line: 5, message: /wan_interface is empty; write a value after "=" or delete the line/ },
  { name: "interface name with quote", lines: [...TOKEN_LINES, 'lan_interface=eth1"'], field: "lan_interface", line: 5, message: /lan_interface must be a network interface name .*got "eth1""/ },
  { name: "interface name too long", lines: [...TOKEN_LINES, "wan_interface=enx0123456789abc"], field: "wan_interface", line: 5, message: /1 to 15 letters/ },
  { name: "same port twice", lines: [...TOKEN_LINES, "wan_interface=eth1", "lan_interface=eth1"], field: "lan_interface", line: 6, message: /lan_interface is eth1, the same port as wan_interface on line 5/ },
  { name: "static without address", lines: [...TOKEN_LINES, "wan_mode=static", "wan_gateway=192.0.2.1"], field: "wan_address", line: 5, message: /wan_mode=static needs wan_address; add a line such as wan_address=192\.0\.2\.10\/24/ },
  { name: "static without gateway", lines: [...TOKEN_LINES, "wan_mode=static", "wan_address=192.0.2.10/24"], field: "wan_gateway", line: 5, message: /wan_mode=static needs wan_gateway/ },
  {
    name: "address without prefix",
    lines: [...TOKEN_LINES, "wan_mode=static", "wan_address=192.0.2.10", "wan_gateway=192.0.2.1"],
    field: "wan_address",
    line: 6,
    message: /line 6: wan_address must be an IPv4 address with a prefix length from 1 to 31, such as 192\.0\.2\.10\/24, got "192\.0\.2\.10"/,
  },
  { name: "address /32", lines: [...TOKEN_LINES, "wan_mode=static", "wan_address=192.0.2.10/32", "wan_gateway=192.0.2.1"], field: "wan_address", line: 6, message: /prefix length from 1 to 31/ },
  { name: "address 300.1.1.1", lines: [...TOKEN_LINES, "wan_mode=static", "wan_address=300.1.1.1/24", "wan_gateway=192.0.2.1"], field: "wan_address", line: 6, message: /got "300\.1\.1\.1\/24"/ },
  { name: "network address", lines: [...TOKEN_LINES, "wan_mode=static", "wan_address=192.0.2.0/24", "wan_gateway=192.0.2.1"], field: "wan_address", line: 6, message: /192\.0\.2\.0\/24 is not a usable host address/ },
  { name: "loopback address", lines: [...TOKEN_LINES, "wan_mode=static", "wan_address=127.0.0.2/8", "wan_gateway=127.0.0.1"], field: "wan_address", line: 6, message: /not a usable host address/ },
  { name: "gateway not IPv4", lines: [...TOKEN_LINES, "wan_mode=static", "wan_address=192.0.2.10/24", "wan_gateway=router"], field: "wan_gateway", line: 7, message: /wan_gateway must be the router's IPv4 address, such as 192\.0\.2\.1, got "router"/ },
  { name: "gateway outside subnet", lines: [...TOKEN_LINES, "wan_mode=static", "wan_address=192.0.2.10/24", "wan_gateway=198.51.100.1"], field: "wan_gateway", line: 7, message: /198\.51\.100\.1 is not a host in the subnet of wan_address 192\.0\.2\.10\/24/ },
  { name: "gateway is broadcast", lines: [...TOKEN_LINES, "wan_mode=static", "wan_address=192.0.2.10/24", "wan_gateway=192.0.2.255"], field: "wan_gateway", line: 7, message: /not a host in the subnet/ },
  { name: "gateway is own address", lines: [...TOKEN_LINES, "wan_mode=static", "wan_address=192.0.2.10/24", "wan_gateway=192.0.2.10"], field: "wan_gateway", line: 7, message: /is the adapter's own wan_address/ },
  {
    name: "IPv6 DNS server",
    lines: [...TOKEN_LINES, "wan_mode=static", "wan_address=192.0.2.10/24", "wan_gateway=192.0.2.1", "wan_dns=192.0.2.53,2001:db8::53"],
    field: "wan_dns",
    line: 8,
    message: /wan_dns must be IPv4 addresses separated by commas, .*got "2001:db8::53"; IPv6 DNS servers come from router advertisements/,
  },
  { name: "empty DNS entry", lines: [...TOKEN_LINES, "wan_mode=static", "wan_address=192.0.2.10/24", "wan_gateway=192.0.2.1", "wan_dns=192.0.2.53,"], field: "wan_dns", line: 8, message: /got ""/ },
  { name: "static field with dhcp", lines: [...TOKEN_LINES, "wan_mode=dhcp", "wan_gateway=192.0.2.1"], field: "wan_gateway", line: 6, message: /wan_gateway is used only with wan_mode=static; add the line wan_mode=static or delete this line/ },
  { name: "static field without mode", lines: [...TOKEN_LINES, "wan_address=192.0.2.10/24"], field: "wan_address", line: 5, message: /wan_address is used only with wan_mode=static/ },
];

for (const bad of BAD_CASES) {
  test(`boot token file rejects ${bad.name}`, () => {
    const err = parseError(bad.lines);
    assert.equal(err.field, bad.field);
    assert.equal(err.line, bad.line);
    assert.match(err.message, bad.message);
    assert.ok(!err.message.includes(SECRET), "the message repeats the token secret");
  });
}

test("boot token file rejects UTF-16", () => {
  const err = (() => {
    try {
      parseBootTokenFile(Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(TOKEN_LINES.join("\n"), "utf16le")]));
    } catch (e) {
      return e as BootTokenFileError;
    }
    assert.fail("a UTF-16 file was accepted");
  })();
  assert.ok(err instanceof BootTokenFileError);
  assert.match(err.message, /^cyphonic-token\.txt: the file is saved as UTF-16; save it again as UTF-8/);
});

test("boot token file token only", () => {
  const parsed = parse(TOKEN_LINES);
  assert.equal(parsed.token.token, SECRET);
  assert.equal(parsed.token.asKey.toString("base64"), AS_KEY);
  assert.deepEqual(parsed.token.asEndpoints, [{ address: "198.51.100.7", port: 7400 }]);
  assert.deepEqual(parsed.network, {}, "absent network fields change nothing");
  assert.match(parsed.tokenSha256, /^[0-9a-f]{64}$/);
});

test("boot token file from Notepad", () => {
  const text = "\uFEFF" + [...TOKEN_LINES, "WAN_MODE=DHCP", "Lan_Interface = eth0 ", "wan_interface=eth1"].join("\r\n") + "\r\n";
  const parsed = parseBootTokenFile(Buffer.from(text, "utf8"));
  assert.equal(parsed.token.token, SECRET);
  assert.deepEqual(parsed.network, { wanIPv4: { mode: "dhcp" }, lanInterface: "eth0", wanInterface: "eth1" });
  assert.equal(parsed.networkLines.get("lan_interface"), 6);
});

test("boot token example filled in", () => {
  const example = readFileSync(path.resolve("overlay/boot/firmware/cyphonic-token.txt.example"), "utf8");
  const filled = example
    .replace(/^as_endpoint=$/m, "as_endpoint=198.51.100.7:7400,[2001:db8::7]:7400")
    .replace(/^as_key=$/m, `as_key=${AS_KEY}`)
    .replace(/^token=$/m, `token=${SECRET}`)
    .replace(/^#wan_interface=eth0$/m, "wan_interface=eth1")
    .replace(/^#lan_interface=eth1$/m, "lan_interface=eth0")
    .replace(/^#(wan_(mode|address|gateway|dns)=.*)$/gm, "$1")
    .replace(/^wan_mode=dhcp$/m, "wan_mode=static");
  const parsed = parseBootTokenFile(Buffer.from(filled));
  assert.deepEqual(parsed.token.asEndpoints, [
    { address: "198.51.100.7", port: 7400 },
    { address: "2001:db8::7", port: 7400 },
  ]);
  assert.deepEqual(parsed.network, {
    wanInterface: "eth1",
    lanInterface: "eth0",
    wanIPv4: { mode: "static", address: "192.0.2.10", prefixLength: 24, gateway: "192.0.2.1", dns: ["192.0.2.53", "198.51.100.53"] },
  });
});

test("boot token example unfilled", () => {
  const example = readFileSync(path.resolve("overlay/boot/firmware/cyphonic-token.txt.example"));
  const err = (() => {
    try {
      parseBootTokenFile(example);
    } catch (e) {
      return e as BootTokenFileError;
    }
    assert.fail("the unfilled example was accepted");
  })();
  assert.equal(err.field, "as_endpoint");
  assert.match(err.message, /as_endpoint is empty/);
});
