import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes, randomInt } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import {
  DHCPACK,
  DHCPDECLINE,
  DHCPDISCOVER,
  DHCPINFORM,
  DHCPNAK,
  DHCPOFFER,
  DHCPRELEASE,
  DHCPREQUEST,
  OPTION_DHCP_MESSAGE_TYPE,
  OPTION_IP_ADDRESS_LEASE_TIME,
  OPTION_SERVER_IDENTIFIER,
} from "../../firmware/src/adapter/dhcp/constants.js";
import { readIPv4Option, readU8Option } from "../../firmware/src/adapter/dhcp/options.js";
import {
  clientMessage,
  KNOWN_ADDRESS,
  KNOWN_MAC,
  OTHER_SERVER,
  SERVER_ADDRESS,
  startTestServer,
  UNKNOWN_MAC,
  type SentDatagram,
  type TestServer,
} from "./dhcp-support.js";

const WRONG_ADDRESS = "100.64.0.99";

function messageType(sent: SentDatagram): number | undefined {
  return readU8Option(sent.message.options, OPTION_DHCP_MESSAGE_TYPE);
}

function onlyReply(replies: SentDatagram[]): SentDatagram {
  assert.equal(replies.length, 1, `expected one reply, got ${replies.length}`);
  return replies[0]!;
}

async function withServer(run: (t: TestServer) => Promise<void>, overrides = {}): Promise<void> {
  const t = await startTestServer(overrides);
  try {
    await run(t);
  } finally {
    await t.stop();
  }
}

/** DISCOVER, OFFER, REQUEST, ACK for the known client. */
async function bind(t: TestServer): Promise<void> {
  await t.transport.deliver(clientMessage({ type: DHCPDISCOVER }));
  const ack = onlyReply(await t.transport.deliver(clientMessage({ type: DHCPREQUEST, serverIdentifier: SERVER_ADDRESS, requestedAddress: KNOWN_ADDRESS })));
  assert.equal(messageType(ack), DHCPACK);
}

test("discover gets offer of reserved address", () =>
  withServer(async (t) => {
    const offer = onlyReply(await t.transport.deliver(clientMessage({ type: DHCPDISCOVER, requestedAddress: WRONG_ADDRESS })));
    assert.equal(messageType(offer), DHCPOFFER);
    assert.equal(offer.message.yiaddr, KNOWN_ADDRESS, "option 50 in a DISCOVER is only a hint");
    assert.equal(readIPv4Option(offer.message.options, OPTION_SERVER_IDENTIFIER), SERVER_ADDRESS);
    assert.equal(offer.address, "255.255.255.255");
    assert.equal(offer.port, 68);
    assert.equal(t.server.counters.get("dhcp.tx.offer"), 1);
    assert.deepEqual(t.server.leases(), [], "an offer is no lease");
  }));

test("unknown MAC gets no reply", () =>
  withServer(async (t) => {
    for (let i = 0; i < 3; i++) assert.deepEqual(await t.transport.deliver(clientMessage({ type: DHCPDISCOVER, mac: UNKNOWN_MAC })), []);
    assert.deepEqual(await t.transport.deliver(clientMessage({ type: DHCPDISCOVER, mac: "02:00:00:00:00:98" })), []);
    assert.equal(t.server.counters.get("dhcp.drop.unknown_client"), 4);
    // One line per MAC per interval of the rate limiter.
    assert.equal(t.log.matching(/no reservation/, { mac: UNKNOWN_MAC }).length, 1);
    assert.equal(t.log.matching(/no reservation/, { mac: "02:00:00:00:00:98" }).length, 1);
  }));

test("selecting request gets ack and lease", () =>
  withServer(async (t) => {
    await bind(t);
    assert.equal(t.server.counters.get("dhcp.ack.selecting"), 1);
    assert.equal(t.server.isLeased(KNOWN_MAC, KNOWN_ADDRESS), true);
    assert.equal(t.server.isLeased(KNOWN_MAC.toUpperCase(), KNOWN_ADDRESS), true);
    assert.equal(t.server.isLeased(KNOWN_MAC, WRONG_ADDRESS), false);
    assert.deepEqual(t.events, [{ mac: KNOWN_MAC, address: KNOWN_ADDRESS, event: "bound" }]);
    const [lease] = t.server.leases();
    assert.ok(lease);
    assert.ok(Math.abs(lease.expiresMs - (Date.now() + 3600_000)) < 5000, "expires one lease time from now");
    const saved = JSON.parse(readFileSync(t.leaseFile, "utf8")) as { leases: { mac: string; address: string }[] };
    assert.deepEqual(saved.leases.map(({ mac, address }) => ({ mac, address })), [{ mac: KNOWN_MAC, address: KNOWN_ADDRESS }]);
  }));

test("selecting request for wrong address gets nak", () =>
  withServer(async (t) => {
    const nak = onlyReply(await t.transport.deliver(clientMessage({ type: DHCPREQUEST, serverIdentifier: SERVER_ADDRESS, requestedAddress: WRONG_ADDRESS })));
    assert.equal(messageType(nak), DHCPNAK);
    assert.equal(nak.address, "255.255.255.255");
    assert.equal(t.server.counters.get("dhcp.nak.selecting"), 1);
    assert.deepEqual(t.server.leases(), []);
  }));

test("request for other server is ignored", () =>
  withServer(async (t) => {
    assert.deepEqual(await t.transport.deliver(clientMessage({ type: DHCPREQUEST, serverIdentifier: OTHER_SERVER, requestedAddress: KNOWN_ADDRESS })), []);
    assert.equal(t.server.counters.get("dhcp.drop.other_server"), 1);
    assert.deepEqual(t.events, []);
  }));

test("init-reboot acks right and naks wrong", () =>
  withServer(async (t) => {
    const ack = onlyReply(await t.transport.deliver(clientMessage({ type: DHCPREQUEST, requestedAddress: KNOWN_ADDRESS })));
    assert.equal(messageType(ack), DHCPACK);
    assert.equal(ack.address, "255.255.255.255", "the client has no address yet");
    const nak = onlyReply(await t.transport.deliver(clientMessage({ type: DHCPREQUEST, requestedAddress: WRONG_ADDRESS })));
    assert.equal(messageType(nak), DHCPNAK);
    assert.equal(t.server.counters.get("dhcp.ack.init_reboot"), 1);
    assert.equal(t.server.counters.get("dhcp.nak.init_reboot"), 1);
    // RFC 2131 section 4.3.2: no record of the client, so silence.
    assert.deepEqual(await t.transport.deliver(clientMessage({ type: DHCPREQUEST, mac: UNKNOWN_MAC, requestedAddress: KNOWN_ADDRESS })), []);
  }));

test("renewing request gets unicast ack", () =>
  withServer(async (t) => {
    await bind(t);
    const ack = onlyReply(await t.transport.deliver(clientMessage({ type: DHCPREQUEST, ciaddr: KNOWN_ADDRESS }), true));
    assert.equal(messageType(ack), DHCPACK);
    assert.equal(ack.address, KNOWN_ADDRESS);
    assert.equal(ack.message.ciaddr, KNOWN_ADDRESS);
    assert.equal(t.server.counters.get("dhcp.ack.renewing"), 1);
    assert.deepEqual(t.events.map((e) => e.event), ["bound", "renewed"]);
  }));

test("rebinding acks right and naks wrong", () =>
  withServer(async (t) => {
    await bind(t);
    const ack = onlyReply(await t.transport.deliver(clientMessage({ type: DHCPREQUEST, ciaddr: KNOWN_ADDRESS }), false));
    assert.equal(messageType(ack), DHCPACK);
    assert.equal(t.server.counters.get("dhcp.ack.rebinding"), 1);
    const nak = onlyReply(await t.transport.deliver(clientMessage({ type: DHCPREQUEST, ciaddr: WRONG_ADDRESS }), false));
    assert.equal(messageType(nak), DHCPNAK);
    assert.equal(nak.address, "255.255.255.255");
    assert.equal(t.server.counters.get("dhcp.nak.rebinding"), 1);
  }));

test("changed reservation naks renewal", () =>
  withServer(async (t) => {
    await bind(t);
    t.reservations[0] = { mac: KNOWN_MAC, address: "100.64.0.17" };
    const nak = onlyReply(await t.transport.deliver(clientMessage({ type: DHCPREQUEST, ciaddr: KNOWN_ADDRESS }), true));
    assert.equal(messageType(nak), DHCPNAK);
    assert.equal(t.server.counters.get("dhcp.nak.renewing"), 1);
    assert.equal(t.server.isLeased(KNOWN_MAC, KNOWN_ADDRESS), false, "the NAK ends the old lease");
    assert.deepEqual(t.events.at(-1), { mac: KNOWN_MAC, address: KNOWN_ADDRESS, event: "expired" });
    const offer = onlyReply(await t.transport.deliver(clientMessage({ type: DHCPDISCOVER })));
    assert.equal(offer.message.yiaddr, "100.64.0.17");
  }));

test("removed reservation naks leased client", () =>
  withServer(async (t) => {
    await bind(t);
    t.reservations.length = 0;
    const nak = onlyReply(await t.transport.deliver(clientMessage({ type: DHCPREQUEST, ciaddr: KNOWN_ADDRESS }), true));
    assert.equal(messageType(nak), DHCPNAK);
    assert.deepEqual(t.server.leases(), []);
    // Without a lease the client is unknown again and gets silence.
    assert.deepEqual(await t.transport.deliver(clientMessage({ type: DHCPREQUEST, ciaddr: KNOWN_ADDRESS }), true), []);
  }));

test("release frees the lease", () =>
  withServer(async (t) => {
    await bind(t);
    assert.deepEqual(await t.transport.deliver(clientMessage({ type: DHCPRELEASE, ciaddr: KNOWN_ADDRESS, serverIdentifier: OTHER_SERVER }), true), []);
    assert.equal(t.server.isLeased(KNOWN_MAC, KNOWN_ADDRESS), true, "a release for another server is ignored");
    assert.deepEqual(await t.transport.deliver(clientMessage({ type: DHCPRELEASE, ciaddr: KNOWN_ADDRESS, serverIdentifier: SERVER_ADDRESS }), true), []);
    assert.equal(t.server.isLeased(KNOWN_MAC, KNOWN_ADDRESS), false);
    assert.deepEqual(t.events.at(-1), { mac: KNOWN_MAC, address: KNOWN_ADDRESS, event: "released" });
    const saved = JSON.parse(readFileSync(t.leaseFile, "utf8")) as { leases: unknown[] };
    assert.deepEqual(saved.leases, []);
    await t.transport.deliver(clientMessage({ type: DHCPRELEASE, ciaddr: KNOWN_ADDRESS }), true);
    assert.equal(t.server.counters.get("dhcp.drop.no_lease"), 1);
  }));

test("decline holds the address back", () =>
  withServer(async (t) => {
    await bind(t);
    const decline = clientMessage({ type: DHCPDECLINE, serverIdentifier: SERVER_ADDRESS, requestedAddress: KNOWN_ADDRESS });
    assert.deepEqual(await t.transport.deliver(decline), []);
    assert.deepEqual(t.events.at(-1), { mac: KNOWN_MAC, address: KNOWN_ADDRESS, event: "declined" });
    assert.equal(t.server.counters.get("dhcp.lease.declined"), 1);
    assert.equal(t.server.isLeased(KNOWN_MAC, KNOWN_ADDRESS), false);
    assert.equal(t.log.matching(/declined its reserved address/, { mac: KNOWN_MAC }).length, 1);
    assert.deepEqual(await t.transport.deliver(clientMessage({ type: DHCPDISCOVER })), []);
    assert.equal(t.server.counters.get("dhcp.drop.address_declined"), 1);
    const nak = onlyReply(await t.transport.deliver(clientMessage({ type: DHCPREQUEST, requestedAddress: KNOWN_ADDRESS })));
    assert.equal(messageType(nak), DHCPNAK);
  }));

test("decline hold ends", () =>
  withServer(
    async (t) => {
      await t.transport.deliver(clientMessage({ type: DHCPDECLINE, requestedAddress: KNOWN_ADDRESS }));
      assert.deepEqual(await t.transport.deliver(clientMessage({ type: DHCPDISCOVER })), []);
      await new Promise((resolve) => setTimeout(resolve, 1100));
      assert.equal(messageType(onlyReply(await t.transport.deliver(clientMessage({ type: DHCPDISCOVER })))), DHCPOFFER);
    },
    { declineHoldSeconds: 1 },
  ));

test("decline of another address is ignored", () =>
  withServer(async (t) => {
    await t.transport.deliver(clientMessage({ type: DHCPDECLINE, requestedAddress: WRONG_ADDRESS }));
    await t.transport.deliver(clientMessage({ type: DHCPDECLINE, mac: UNKNOWN_MAC, requestedAddress: KNOWN_ADDRESS }));
    assert.equal(t.server.counters.get("dhcp.drop.decline_mismatch"), 1);
    assert.equal(t.server.counters.get("dhcp.drop.unknown_client"), 1);
    assert.equal(messageType(onlyReply(await t.transport.deliver(clientMessage({ type: DHCPDISCOVER })))), DHCPOFFER);
  }));

test("inform gets options without lease", () =>
  withServer(async (t) => {
    const ack = onlyReply(await t.transport.deliver(clientMessage({ type: DHCPINFORM, ciaddr: KNOWN_ADDRESS }), true));
    assert.equal(messageType(ack), DHCPACK);
    assert.equal(ack.message.yiaddr, "0.0.0.0");
    assert.equal(ack.address, KNOWN_ADDRESS);
    assert.equal(ack.message.options.has(OPTION_IP_ADDRESS_LEASE_TIME), false);
    assert.deepEqual(t.server.leases(), []);
    assert.equal(t.server.counters.get("dhcp.ack.inform"), 1);
  }));

test("invalid requests are counted drops", () =>
  withServer(async (t) => {
    const cases: [Buffer, string][] = [
      [clientMessage({ type: DHCPDISCOVER, giaddr: "100.64.0.1" }), "relayed"],
      [clientMessage({ type: DHCPDISCOVER, op: 2 }), "bad_op"],
      [clientMessage({ type: DHCPDISCOVER, htype: 6 }), "bad_htype"],
      [clientMessage({ type: DHCPDISCOVER, hlen: 16 }), "bad_htype"],
      [clientMessage({ type: DHCPDISCOVER, mac: "ff:ff:ff:ff:ff:ff" }), "bad_chaddr"],
      [clientMessage({ type: DHCPDISCOVER, mac: "00:00:00:00:00:00" }), "bad_chaddr"],
      [clientMessage({ type: DHCPOFFER }), "unexpected_message_type"],
      [clientMessage({ type: 13 }), "unexpected_message_type"],
      [clientMessage({ type: DHCPREQUEST }), "missing_requested_address"],
      [clientMessage({ type: DHCPDISCOVER }).subarray(0, 200), "short"],
    ];
    for (const [datagram, reason] of cases) {
      const before = t.server.counters.get(`dhcp.drop.${reason}`);
      assert.deepEqual(await t.transport.deliver(datagram), [], reason);
      assert.equal(t.server.counters.get(`dhcp.drop.${reason}`), before + 1, reason);
    }
    const bootp = clientMessage({ type: DHCPDISCOVER });
    bootp.fill(0, 240, 243);
    await t.transport.deliver(bootp);
    assert.equal(t.server.counters.get("dhcp.drop.not_dhcp"), 1);
  }));

test("garbage never stops the server", () =>
  withServer(async (t) => {
    for (let i = 0; i < 2000; i++) {
      const datagram = i % 2 ? randomBytes(randomInt(0, 1600)) : clientMessage({ type: DHCPDISCOVER, xid: i });
      if (i % 2 === 0) for (let j = 0; j < 6; j++) datagram[randomInt(0, datagram.length)] = randomInt(0, 256);
      t.transport.deliver(datagram).catch(() => assert.fail("deliver rejected"));
    }
    assert.equal(t.server.counters.get("dhcp.drop.internal_error"), 0);
    assert.equal(t.server.counters.get("dhcp.rx.datagrams"), 2000);
    assert.equal(messageType(onlyReply(await t.transport.deliver(clientMessage({ type: DHCPDISCOVER })))), DHCPOFFER);
  }));

test("throwing callbacks do not stop the server", () =>
  withServer(
    async (t) => {
      await bind(t);
      assert.equal(t.server.isLeased(KNOWN_MAC, KNOWN_ADDRESS), true);
      assert.equal(t.log.matching("onLease callback failed").length, 1);
    },
    {
      onLease: () => {
        throw new Error("callback bug");
      },
    },
  ));

test("throwing reservations drop the message", () =>
  withServer(
    async (t) => {
      assert.deepEqual(await t.transport.deliver(clientMessage({ type: DHCPDISCOVER })), []);
      assert.equal(t.server.counters.get("dhcp.drop.reservations_error"), 1);
    },
    {
      reservations: () => {
        throw new Error("registry unavailable");
      },
    },
  ));

test("reservation with invalid address is unknown", () =>
  withServer(
    async (t) => {
      assert.deepEqual(await t.transport.deliver(clientMessage({ type: DHCPDISCOVER })), []);
      assert.equal(t.server.counters.get("dhcp.drop.unknown_client"), 1);
    },
    { reservations: () => [{ mac: KNOWN_MAC.toUpperCase(), address: "100.64.0.300" }] },
  ));

test("restart keeps leases", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "dhcp-restart-"));
  try {
    const first = await startTestServer({}, dir);
    await bind(first);
    await first.stop();
    const second = await startTestServer({}, dir);
    try {
      assert.equal(second.server.isLeased(KNOWN_MAC, KNOWN_ADDRESS), true);
      assert.deepEqual(second.server.leases().map((l) => l.address), [KNOWN_ADDRESS]);
      const ack = onlyReply(await second.transport.deliver(clientMessage({ type: DHCPREQUEST, ciaddr: KNOWN_ADDRESS }), true));
      assert.equal(messageType(ack), DHCPACK);
      assert.deepEqual(second.events, [{ mac: KNOWN_MAC, address: KNOWN_ADDRESS, event: "renewed" }]);
    } finally {
      await second.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("lease expires after lease time", () =>
  withServer(
    async (t) => {
      await bind(t);
      assert.equal(t.server.isLeased(KNOWN_MAC, KNOWN_ADDRESS), true);
      await new Promise((resolve) => setTimeout(resolve, 2200));
      assert.equal(t.server.isLeased(KNOWN_MAC, KNOWN_ADDRESS), false);
      assert.deepEqual(t.events.at(-1), { mac: KNOWN_MAC, address: KNOWN_ADDRESS, event: "expired" });
      assert.equal(t.server.counters.get("dhcp.lease.expired"), 1);
      const saved = JSON.parse(readFileSync(t.leaseFile, "utf8")) as { leases: unknown[] };
      assert.deepEqual(saved.leases, []);
    },
    { leaseSeconds: 2 },
  ));

test("lease file write failure keeps serving", () =>
  withServer(async (t) => {
    const stateDir = path.dirname(t.leaseFile);
    rmSync(stateDir, { recursive: true, force: true });
    writeFileSync(stateDir, "not a directory");
    await bind(t);
    assert.equal(t.server.counters.get("dhcp.lease_file.write_error"), 1);
    assert.equal(t.server.isLeased(KNOWN_MAC, KNOWN_ADDRESS), true);
    rmSync(stateDir);
  }));

test("invalid options reject start", async () => {
  const bad = [{ subnetMask: "255.0.255.0" }, { serverAddress: "100.64.0" }, { mtuBytes: 40 }, { leaseSeconds: 1 }, { interfaceName: "a/b" }, { domainName: "bad_name" }, { dnsServers: ["x"] }];
  const dir = mkdtempSync(path.join(tmpdir(), "dhcp-options-"));
  try {
    for (const overrides of bad) {
      await assert.rejects(startTestServer(overrides, dir), /invalid/, JSON.stringify(overrides));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
