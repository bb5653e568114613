import { test } from "node:test";
import assert from "node:assert/strict";
import { OPTION_DOMAIN_NAME, OPTION_DOMAIN_NAME_SERVER, OPTION_END, OPTION_PAD, OPTION_PARAMETER_REQUEST_LIST } from "../../firmware/src/adapter/dhcp/constants.js";
import {
  checkOptionLengths,
  encodedOptionBytes,
  encodeOptions,
  ipv4ListValue,
  parseOptionsField,
  readIPv4ListOption,
  readParameterRequestList,
  u16Value,
  u32Value,
  type DhcpOptions,
} from "../../firmware/src/adapter/dhcp/options.js";

test("long option splits into 255-byte instances", () => {
  const value = Buffer.alloc(300, 0x61);
  const encoded = encodeOptions([{ code: OPTION_DOMAIN_NAME, value }]);
  assert.equal(encoded.length, 304);
  assert.equal(encodedOptionBytes({ code: OPTION_DOMAIN_NAME, value }), 304);
  assert.deepEqual([encoded[0], encoded[1]], [OPTION_DOMAIN_NAME, 255]);
  assert.deepEqual([encoded[257], encoded[258]], [OPTION_DOMAIN_NAME, 45]);
  const options: DhcpOptions = new Map();
  assert.equal(parseOptionsField(Buffer.concat([encoded, Buffer.from([OPTION_END])]), options, "options"), null);
  assert.deepEqual(options.get(OPTION_DOMAIN_NAME), value);
});

test("empty value encodes one instance", () => {
  assert.deepEqual(encodeOptions([{ code: 80, value: Buffer.alloc(0) }]), Buffer.from([80, 0]));
});

test("pad and end cannot be encoded with a value", () => {
  assert.throws(() => encodeOptions([{ code: OPTION_PAD, value: Buffer.from([1]) }]), RangeError);
  assert.throws(() => encodeOptions([{ code: OPTION_END, value: Buffer.from([1]) }]), RangeError);
});

test("parameter request list drops duplicates", () => {
  const options: DhcpOptions = new Map([[OPTION_PARAMETER_REQUEST_LIST, Buffer.from([3, 1, 0, 3, 255, 6])]]);
  assert.deepEqual(readParameterRequestList(options), [3, 1, 6]);
  assert.deepEqual(readParameterRequestList(new Map()), []);
});

test("address list reads every address", () => {
  const options: DhcpOptions = new Map([[OPTION_DOMAIN_NAME_SERVER, ipv4ListValue(["100.64.0.3", "100.64.0.4"])]]);
  assert.deepEqual(readIPv4ListOption(options, OPTION_DOMAIN_NAME_SERVER), ["100.64.0.3", "100.64.0.4"]);
});

test("length check rejects partial address list", () => {
  const options: DhcpOptions = new Map([[OPTION_DOMAIN_NAME_SERVER, Buffer.from([100, 64, 0, 3, 1])]]);
  assert.equal(checkOptionLengths(options)?.reason, "bad_option_length");
  assert.equal(checkOptionLengths(new Map([[OPTION_DOMAIN_NAME_SERVER, Buffer.from([100, 64, 0, 3])]])), null);
});

test("unknown options skip the length check", () => {
  assert.equal(checkOptionLengths(new Map([[224, Buffer.alloc(0)]])), null);
});

test("integer values are big-endian", () => {
  assert.deepEqual(u16Value(1420), Buffer.from([0x05, 0x8c]));
  assert.deepEqual(u32Value(3600), Buffer.from([0, 0, 0x0e, 0x10]));
});
