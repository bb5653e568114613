// Real sockets on the loopback interface with unprivileged ports. Whether a
// datagram on another interface is ignored needs a second interface, so the
// lab test (test/lab/dhcp.test.ts) covers that.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { randomInt } from "node:crypto";
import dgram from "node:dgram";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { DHCPACK, DHCPDISCOVER, DHCPOFFER, DHCPREQUEST, OPTION_DHCP_MESSAGE_TYPE } from "../../firmware/src/adapter/dhcp/constants.js";
import { DeviceSocketError, openDeviceSocket } from "../../firmware/src/adapter/dhcp/device-socket.js";
import { decodeMessage, type DhcpMessage } from "../../firmware/src/adapter/dhcp/message.js";
import { readU8Option } from "../../firmware/src/adapter/dhcp/options.js";
import { DhcpServer } from "../../firmware/src/adapter/dhcp/server.js";
import { DeviceTransport, type DhcpDatagram } from "../../firmware/src/adapter/dhcp/transport.js";
import { clientMessage, KNOWN_MAC, LogCapture } from "./dhcp-support.js";

const workDir = mkdtempSync(path.join(tmpdir(), "dhcp-socket-"));
after(() => rmSync(workDir, { recursive: true, force: true }));

function freePort(): number {
  return randomInt(20_000, 60_000);
}

function sendFrom(socket: dgram.Socket, data: Buffer | string, port: number, address: string): Promise<void> {
  return new Promise((resolve, reject) => socket.send(data, port, address, (err) => (err ? reject(err) : resolve())));
}

function nextMessage<T>(subscribe: (deliver: (value: T) => void) => void, timeoutMs = 2000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`nothing received within ${timeoutMs} ms`)), timeoutMs);
    subscribe((value) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}

function bindClient(port: number): Promise<dgram.Socket> {
  return new Promise((resolve) => {
    const socket = dgram.createSocket({ type: "udp4", reuseAddr: true });
    socket.bind(port, "0.0.0.0", () => resolve(socket));
  });
}

function closeSocket(socket: dgram.Socket): Promise<void> {
  return new Promise((resolve) => socket.close(() => resolve()));
}

test("device socket receives on lo", async () => {
  const port = freePort();
  const socket = await openDeviceSocket("lo", "0.0.0.0", port);
  const client = dgram.createSocket("udp4");
  try {
    const received = nextMessage<Buffer>((deliver) => socket.once("message", deliver));
    await sendFrom(client, "hello", port, "127.0.0.1");
    assert.equal((await received).toString(), "hello");
  } finally {
    await closeSocket(socket);
    await closeSocket(client);
  }
});

test("unknown interface is rejected", async () => {
  await assert.rejects(openDeviceSocket("nosuchif0", "0.0.0.0", freePort()), (err: unknown) => {
    assert.ok(err instanceof DeviceSocketError);
    assert.equal(err.code, "ENODEV");
    assert.match(err.message, /nosuchif0/);
    return true;
  });
});

test("address not on interface is rejected", async () => {
  // Binding sends nothing, so a documentation address (RFC 5737) is safe here.
  await assert.rejects(openDeviceSocket("lo", "198.51.100.1", freePort()), (err: unknown) => {
    assert.ok(err instanceof DeviceSocketError);
    assert.equal(err.code, "EADDRNOTAVAIL");
    return true;
  });
});

test("transport tells unicast from broadcast", async () => {
  const port = freePort();
  const missing: Error[] = [];
  const transport = await DeviceTransport.open({
    interfaceName: "lo",
    serverAddress: "127.0.0.1",
    serverPort: port,
    onSocketError: (err) => assert.fail(err),
    onServerAddressMissing: (err) => missing.push(err),
  });
  const client = dgram.createSocket("udp4");
  client.bind();
  await new Promise((resolve) => client.once("listening", resolve));
  client.setBroadcast(true);
  try {
    const cases: [string, boolean][] = [
      ["127.0.0.1", true],
      ["127.0.0.2", false],
      ["127.255.255.255", false],
    ];
    for (const [address, toServerAddress] of cases) {
      const received = nextMessage<DhcpDatagram>((deliver) => transport.onDatagram(deliver));
      await sendFrom(client, address, port, address);
      const datagram = await received;
      assert.equal(datagram.data.toString(), address);
      assert.equal(datagram.toServerAddress, toServerAddress, address);
    }
    assert.deepEqual(missing, []);
  } finally {
    await transport.close();
    await closeSocket(client);
  }
});

test("transport without server address still opens", async () => {
  const missing: Error[] = [];
  const transport = await DeviceTransport.open({
    interfaceName: "lo",
    serverAddress: "198.51.100.1",
    serverPort: freePort(),
    onSocketError: (err) => assert.fail(err),
    onServerAddressMissing: (err) => missing.push(err),
  });
  await transport.close();
  assert.equal(missing.length, 1);
  assert.match(missing[0]!.message, /EADDRNOTAVAIL/);
});

test("server answers over loopback", async () => {
  const serverPort = freePort();
  const clientPort = serverPort + 1;
  const log = new LogCapture();
  const server = await DhcpServer.start({
    interfaceName: "lo",
    serverAddress: "127.0.0.1",
    subnetMask: "255.0.0.0",
    router: "127.0.0.1",
    dnsServers: ["127.0.0.1"],
    domainName: "cyphonic.internal",
    mtuBytes: 1420,
    leaseSeconds: 600,
    reservations: () => [{ mac: KNOWN_MAC, address: "127.0.0.7" }],
    leaseFile: path.join(workDir, "loopback-leases.json"),
    serverPort,
    clientPort,
    logger: log.logger,
  });
  const client = await bindClient(clientPort);
  try {
    const waitForReply = () =>
      nextMessage<DhcpMessage>((deliver) =>
        client.once("message", (data) => {
          const decoded = decodeMessage(data);
          assert.ok(decoded.ok);
          deliver(decoded.message);
        }),
      );

    let reply = waitForReply();
    await sendFrom(client, clientMessage({ type: DHCPDISCOVER }), serverPort, "127.0.0.1");
    const offer = await reply;
    assert.equal(readU8Option(offer.options, OPTION_DHCP_MESSAGE_TYPE), DHCPOFFER);
    assert.equal(offer.yiaddr, "127.0.0.7");

    // A renewal is unicast to the server address, and the ACK goes to ciaddr.
    reply = waitForReply();
    await sendFrom(client, clientMessage({ type: DHCPREQUEST, ciaddr: "127.0.0.7" }), serverPort, "127.0.0.1");
    const ack = await reply;
    assert.equal(readU8Option(ack.options, OPTION_DHCP_MESSAGE_TYPE), DHCPACK);
    assert.equal(server.counters.get("dhcp.ack.renewing"), 1);
    assert.equal(server.isLeased(KNOWN_MAC, "127.0.0.7"), true);
  } finally {
    await closeSocket(client);
    await server.close();
  }
});
