// Hostile load at the Authentication Service. Any key may open a session with
// the AS, and the AS public key is in every token file. This test fails while
// initiations from throwaway keys can fill the AS peer table and lock out a
// node that holds a valid token.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AuthenticationService } from "../../firmware/src/cloud/as.js";
import { CloudStore } from "../../firmware/src/cloud/store/index.js";
import { generateKeyPair } from "../../firmware/src/protocol/crypto.js";
import { createInitiation } from "../../firmware/src/protocol/handshake.js";
import { Source } from "../../firmware/src/transport/path.js";

/** The AS limit of concurrent clients (MAX_PEERS in as.ts), plus one. */
const STRANGERS = 10_001;

test("AS serves new node after flood", { timeout: 120_000 }, (t) => {
  const dir = mkdtempSync(join(tmpdir(), "cyphonic-hostile-as-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const store = new CloudStore(join(dir, "cloud.db"), { overlayDomain: "overlay.test", pool: { cidr: "100.64.0.0/16", reserved: [] } });
  t.after(() => store.close());
  const identity = generateKeyPair();
  const service = { endpoints: [{ address: "198.18.0.10", port: 7401 }], staticKey: generateKeyPair().publicKey };
  const as = new AuthenticationService({ store, identity, nms: service, trs: service, prefixLength: 16 });
  t.after(() => as.close());
  const counters = as.channel.engine.counters;

  // One source address and throwaway keys, as a single attacker host sends them.
  const attacker: Source = { kind: "direct", endpoint: { address: "198.18.0.66", port: 4000 } };
  for (let i = 0; i < STRANGERS; i++) {
    const initiation = createInitiation(generateKeyPair(), identity.publicKey, i + 1, BigInt(Date.now()), Buffer.alloc(0));
    as.channel.engine.receive(initiation.datagram, attacker);
  }

  // A new node with a valid token opens its session from another address.
  const before = counters.get("handshake.responses_sent");
  const node: Source = { kind: "direct", endpoint: { address: "198.18.0.20", port: 7000 } };
  const initiation = createInitiation(generateKeyPair(), identity.publicKey, 1, BigInt(Date.now()), Buffer.alloc(0));
  as.channel.engine.receive(initiation.datagram, node);
  assert.equal(counters.get("handshake.responses_sent"), before + 1, `the AS sent no handshake response to the node: ${JSON.stringify(counters.snapshot())}`);
});
