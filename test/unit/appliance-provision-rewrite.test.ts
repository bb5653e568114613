// The network settings of the boot token file applied to the overlay's own
// files: the WAN and LAN keyfiles, the firewall's interface names and the
// adapter's configuration file.
import { test, TestContext } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseAdapterConfigText } from "../../firmware/src/appliance/config/index.js";
import { getKeyfileValue, setKeyfileValues } from "../../firmware/src/appliance/provisioning/keyfile.js";
import { NetworkChanges } from "../../firmware/src/appliance/provisioning/network-settings.js";
import {
  rewriteAdapterConfig,
  rewriteFile,
  rewriteFirewall,
  rewriteLanProfile,
  rewriteWanProfile,
} from "../../firmware/src/appliance/provisioning/root-files.js";

const OVERLAY = path.resolve("overlay");
const WAN = readFileSync(path.join(OVERLAY, "etc/NetworkManager/system-connections/cyphonic-wan.nmconnection"), "utf8");
const LAN = readFileSync(path.join(OVERLAY, "etc/NetworkManager/system-connections/cyphonic-lan.nmconnection"), "utf8");
const NFT = readFileSync(path.join(OVERLAY, "etc/cyphonic/appliance.nft"), "utf8");
const CONFIG = readFileSync(path.join(OVERLAY, "etc/cyphonic/adapter.json"), "utf8");

const STATIC: NetworkChanges = {
  wanInterface: "eth1",
  lanInterface: "eth0",
  wanIPv4: { mode: "static", address: "192.0.2.10", prefixLength: 24, gateway: "192.0.2.1", dns: ["192.0.2.53", "198.51.100.53"] },
};

/** Returns the lines of one section, header excluded, up to the next header. */
function sectionLines(text: string, section: string): string[] {
  const lines = text.split("\n");
  const start = lines.indexOf(`[${section}]`);
  assert.ok(start >= 0, `no [${section}] section`);
  const end = lines.findIndex((line, i) => i > start && line.startsWith("["));
  return lines.slice(start + 1, end < 0 ? undefined : end);
}

test("overlay files have the shipped defaults", () => {
  // The expectations below start from these values.
  assert.equal(getKeyfileValue(WAN, "connection", "interface-name"), "eth0");
  assert.equal(getKeyfileValue(LAN, "connection", "interface-name"), "eth1");
  assert.equal(getKeyfileValue(WAN, "ipv4", "method"), "auto");
  assert.match(NFT, /^define WAN = "eth0"$/m);
  assert.match(NFT, /^define LAN = "eth1"$/m);
  assert.match(CONFIG, /^ {2}"lanInterface": "eth1",$/m);
});

test("WAN profile static", () => {
  const out = rewriteWanProfile(WAN, STATIC, "wan");
  assert.equal(getKeyfileValue(out, "connection", "interface-name"), "eth1");
  assert.deepEqual(sectionLines(out, "ipv4"), ["method=manual", "address1=192.0.2.10/24", "gateway=192.0.2.1", "dns=192.0.2.53;198.51.100.53;", ""]);
  assert.deepEqual(sectionLines(out, "ipv6"), sectionLines(WAN, "ipv6"), "IPv6 stays automatic");
  // Only the interface line and the [ipv4] section differ: comments stay.
  const expected = WAN.replace("interface-name=eth0", "interface-name=eth1").replace(
    "[ipv4]\nmethod=auto\n",
    "[ipv4]\nmethod=manual\naddress1=192.0.2.10/24\ngateway=192.0.2.1\ndns=192.0.2.53;198.51.100.53;\n",
  );
  assert.equal(out, expected);
});

test("WAN profile static is idempotent", () => {
  const once = rewriteWanProfile(WAN, STATIC, "wan");
  assert.equal(rewriteWanProfile(once, STATIC, "wan"), once);
});

test("WAN profile static without DNS", () => {
  const noDns: NetworkChanges = { wanIPv4: { mode: "static", address: "192.0.2.10", prefixLength: 24, gateway: "192.0.2.1", dns: [] } };
  const withDns = rewriteWanProfile(WAN, STATIC, "wan");
  const out = rewriteWanProfile(withDns, noDns, "wan");
  assert.deepEqual(sectionLines(out, "ipv4"), ["method=manual", "address1=192.0.2.10/24", "gateway=192.0.2.1", ""]);
  assert.equal(getKeyfileValue(out, "connection", "interface-name"), "eth1", "an absent wan_interface keeps the current port");
});

test("WAN profile dhcp after static", () => {
  const staticText = rewriteWanProfile(WAN, STATIC, "wan");
  const out = rewriteWanProfile(staticText, { wanInterface: "eth0", wanIPv4: { mode: "dhcp" } }, "wan");
  assert.equal(out, WAN, "dhcp restores the shipped profile exactly");
});

test("WAN profile dhcp on the shipped file", () => {
  assert.equal(rewriteWanProfile(WAN, { wanIPv4: { mode: "dhcp" } }, "wan"), WAN);
});

test("root files unchanged without settings", () => {
  assert.equal(rewriteWanProfile(WAN, {}, "wan"), WAN);
  assert.equal(rewriteLanProfile(LAN, {}, "lan"), LAN);
  assert.equal(rewriteFirewall(NFT, {}, "nft"), NFT);
  assert.equal(rewriteAdapterConfig(CONFIG, {}, "adapter.json"), CONFIG);
});

test("LAN profile interface name", () => {
  const out = rewriteLanProfile(LAN, STATIC, "lan");
  assert.equal(out, LAN.replace("interface-name=eth1", "interface-name=eth0"));
  assert.deepEqual(sectionLines(out, "ipv4"), sectionLines(LAN, "ipv4"), "the LAN stays without addresses");
});

test("firewall define lines", () => {
  const out = rewriteFirewall(NFT, STATIC, "nft");
  assert.equal(out, NFT.replace('define WAN = "eth0"', 'define WAN = "eth1"').replace('define LAN = "eth1"', 'define LAN = "eth0"'));
  assert.equal(rewriteFirewall(out, STATIC, "nft"), out);
});

test("firewall with only lan_interface", () => {
  const out = rewriteFirewall(NFT, { lanInterface: "eth2" }, "nft");
  assert.match(out, /^define WAN = "eth0"$/m);
  assert.match(out, /^define LAN = "eth2"$/m);
});

test("adapter config lanInterface", () => {
  const out = rewriteAdapterConfig(CONFIG, STATIC, "adapter.json");
  assert.equal(out, CONFIG.replace('"lanInterface": "eth1"', '"lanInterface": "eth0"'), "only the lanInterface line changes");
  assert.equal(parseAdapterConfigText(out, "adapter.json").lanInterface, "eth0");
  assert.equal(rewriteAdapterConfig(out, STATIC, "adapter.json"), out, "a second run changes nothing");
  assert.equal(rewriteAdapterConfig(CONFIG, { wanInterface: "eth1" }, "adapter.json"), CONFIG, "only lan_interface changes the file");
});

test("adapter config keeps layout when unchanged", () => {
  const compact = '{"stateDir":"/var/lib/cyphonic","lanInterface":"eth0"}';
  assert.equal(rewriteAdapterConfig(compact, STATIC, "adapter.json"), compact);
});

test("adapter config adds a missing lanInterface", () => {
  const out = rewriteAdapterConfig('{"stateDir": "/var/lib/cyphonic"}\n', STATIC, "adapter.json");
  assert.equal(out, '{\n  "stateDir": "/var/lib/cyphonic",\n  "lanInterface": "eth0"\n}\n');
});

test("adapter config invalid JSON", () => {
  assert.throws(
    () => rewriteAdapterConfig('{"lanInterface": "eth1",}', STATIC, "/etc/cyphonic/adapter.json"),
    /^Error: \/etc\/cyphonic\/adapter\.json is not valid JSON \(.+\); fix it, or install it again from the appliance overlay$/,
  );
});

test("adapter config not an object", () => {
  for (const text of ["[]", "null", '"eth1"']) {
    assert.throws(() => rewriteAdapterConfig(text, STATIC, "/etc/cyphonic/adapter.json"), /adapter\.json must contain one JSON object; install it again/, text);
  }
});

test("firewall without define line", () => {
  const broken = NFT.replace(/^define LAN = .*\n/m, "");
  assert.throws(() => rewriteFirewall(broken, STATIC, "/etc/cyphonic/appliance.nft"), /\/etc\/cyphonic\/appliance\.nft has 0 lines matching .*define LAN.*install the file again/);
});

test("keyfile without section", () => {
  assert.throws(() => setKeyfileValues("[connection]\nid=x\n", "ipv4", { method: "auto" }, "x.nmconnection"), /x\.nmconnection has no \[ipv4\] section/);
});

test("keyfile repeated key keeps one line", () => {
  const out = setKeyfileValues("[ipv4]\nmethod=auto\nmethod=manual\n# note\n", "ipv4", { method: "manual" }, "x");
  assert.equal(out, "[ipv4]\nmethod=manual\n# note\n");
});

test("keyfile adds key to empty section", () => {
  const out = setKeyfileValues("[ethernet]\n\n[ipv4]\nmethod=auto\n", "ethernet", { mtu: "1500" }, "x");
  assert.equal(out, "[ethernet]\nmtu=1500\n\n[ipv4]\nmethod=auto\n");
});

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), "cyphonic-rewrite-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test("rewriteFile keeps the mode under umask 077", (t) => {
  const file = path.join(tempDir(t), "appliance.nft");
  writeFileSync(file, NFT);
  chmodSync(file, 0o644);
  const oldUmask = process.umask(0o077);
  t.after(() => process.umask(oldUmask));
  assert.equal(
    rewriteFile(file, (text) => rewriteFirewall(text, STATIC, file)),
    true,
  );
  assert.equal(statSync(file).mode & 0o777, 0o644);
  assert.match(readFileSync(file, "utf8"), /^define WAN = "eth1"$/m);
});

test("rewriteFile skips unchanged text", (t) => {
  const file = path.join(tempDir(t), "adapter.json");
  writeFileSync(file, CONFIG);
  const before = statSync(file);
  assert.equal(
    rewriteFile(file, (text) => text),
    false,
  );
  assert.equal(statSync(file).ino, before.ino, "the file was replaced");
});

test("rewriteFile on a missing file", (t) => {
  const file = path.join(tempDir(t), "cyphonic-wan.nmconnection");
  assert.throws(() => rewriteFile(file, (text) => text), /cyphonic-wan\.nmconnection is missing; install it from the appliance overlay/);
});
