// Hostile handshake input at the session engine: initiations that pass mac1,
// which needs only the receiver's public key, but carry a low-order X25519
// point. These tests fail until such an initiation is a counted protocol drop
// instead of an internal error.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { generateKeyPair, mac } from "../../firmware/src/protocol/crypto.js";
import { encodeInitiation, mac1Key } from "../../firmware/src/protocol/messages.js";
import { Peer } from "../../firmware/src/transport/peer.js";
import { Source } from "../../firmware/src/transport/path.js";
import { SecureEndpoint } from "../../firmware/src/transport/secure-endpoint.js";
import { logger } from "../../firmware/src/util/log.js";

const SOURCE: Source = { kind: "direct", endpoint: { address: "198.18.0.66", port: 4000 } };

/** Creates a responder that accepts every key, as the AS does. */
function responder() {
  const keys = generateKeyPair();
  const engine: SecureEndpoint = new SecureEndpoint(keys, () => {}, {
    acceptInitiation: (key) => ({ peer: engine.peer(key) ?? engine.addPeer(new Peer(key, null, undefined, false)) }),
    onMessage: () => {},
  }, logger("test"));
  return { keys, engine };
}

/** Builds an initiation with a valid mac1 whose ephemeral key is the all-zero point. */
function zeroEphemeralInitiation(responderPublic: Buffer): Buffer {
  const noiseMessage = Buffer.concat([Buffer.alloc(32), randomBytes(48 + 24)]);
  return encodeInitiation({ senderIndex: 1, noiseMessage }, responderPublic);
}

test("zero ephemeral key is a protocol drop", () => {
  const { keys, engine } = responder();
  for (let i = 0; i < 100; i++) engine.receive(zeroEphemeralInitiation(keys.publicKey), SOURCE);

  const counters = engine.counters.snapshot();
  assert.equal(counters["drop.internal_error"] ?? 0, 0, `counted as internal errors: ${JSON.stringify(counters)}`);
  const protocolDrops = Object.entries(counters)
    .filter(([name]) => name.startsWith("drop.") && name !== "drop.internal_error")
    .reduce((sum, [, n]) => sum + n, 0);
  assert.equal(protocolDrops, 100, `counters: ${JSON.stringify(counters)}`);
});

test("zero ephemeral key in a response is a protocol drop", () => {
  const { keys: responderKeys } = responder();
  const initiatorKeys = generateKeyPair();
  const initiator = new SecureEndpoint(initiatorKeys, () => {}, {
    acceptInitiation: () => ({ reject: "unknown_peer" }),
    onMessage: () => {},
  }, logger("test"));
  const peer = initiator.addPeer(new Peer(responderKeys.publicKey, { kind: "direct", endpoint: { address: "198.18.0.66", port: 4000 } }, undefined, true));
  initiator.initiate(peer);
  const localIndex = peer.handshake!.pending.localIndex;

  // A response to the pending initiation whose ephemeral key is the zero
  // point, with a valid mac1 for the initiator's public key.
  const response = Buffer.alloc(12 + 32 + 16 + 16);
  response[0] = 2;
  response.writeUInt32BE(7, 4);
  response.writeUInt32BE(localIndex, 8);
  const macOffset = response.length - 16;
  mac(mac1Key(initiatorKeys.publicKey), response.subarray(0, macOffset)).copy(response, macOffset);

  initiator.receive(response, SOURCE);
  const counters = initiator.counters.snapshot();
  assert.equal(counters["drop.internal_error"] ?? 0, 0, `counted as an internal error: ${JSON.stringify(counters)}`);
});
