// Shared pieces of the DHCP server tests: client messages, an in-memory
// transport and a server started on it with a temporary lease file.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import pino from "pino";
import {
  BOOTREQUEST,
  HLEN_ETHERNET,
  HTYPE_ETHERNET,
  OPTION_DHCP_MESSAGE_TYPE,
  OPTION_REQUESTED_IP_ADDRESS,
  OPTION_SERVER_IDENTIFIER,
} from "../../firmware/src/adapter/dhcp/constants.js";
import { decodeMessage, encodeMessage, type DhcpMessage } from "../../firmware/src/adapter/dhcp/message.js";
import { ipv4Value, u8Value, type OptionEntry } from "../../firmware/src/adapter/dhcp/options.js";
import { DhcpServer } from "../../firmware/src/adapter/dhcp/server.js";
import type { DhcpDatagram, DhcpTransport } from "../../firmware/src/adapter/dhcp/transport.js";
import type { DhcpLeaseChange, DhcpReservation, DhcpServerOptions } from "../../firmware/src/adapter/dhcp/types.js";

export const SERVER_ADDRESS = "100.64.0.3";
export const KNOWN_MAC = "02:00:00:00:00:07";
export const KNOWN_ADDRESS = "100.64.0.7";
export const UNKNOWN_MAC = "02:00:00:00:00:99";
export const OTHER_SERVER = "100.64.0.250";
export const LEASE_SECONDS = 3600;

export interface ClientMessageFields {
  type: number;
  mac?: string;
  xid?: number;
  ciaddr?: string;
  giaddr?: string;
  flags?: number;
  op?: number;
  htype?: number;
  hlen?: number;
  /** Option 54. */
  serverIdentifier?: string;
  /** Option 50. */
  requestedAddress?: string;
  /** Options after 53, 54 and 50. */
  options?: OptionEntry[];
}

export function macBytes(mac: string): Buffer {
  return Buffer.from(mac.split(":").map((octet) => parseInt(octet, 16)));
}

/** Encodes a client message with option 53 first. */
export function clientMessage(fields: ClientMessageFields): Buffer {
  const options: OptionEntry[] = [{ code: OPTION_DHCP_MESSAGE_TYPE, value: u8Value(fields.type) }];
  if (fields.serverIdentifier) options.push({ code: OPTION_SERVER_IDENTIFIER, value: ipv4Value(fields.serverIdentifier) });
  if (fields.requestedAddress) options.push({ code: OPTION_REQUESTED_IP_ADDRESS, value: ipv4Value(fields.requestedAddress) });
  options.push(...(fields.options ?? []));
  return encodeMessage(
    {
      op: fields.op ?? BOOTREQUEST,
      htype: fields.htype ?? HTYPE_ETHERNET,
      hlen: fields.hlen ?? HLEN_ETHERNET,
      hops: 0,
      xid: fields.xid ?? 0x1234abcd,
      secs: 0,
      flags: fields.flags ?? 0,
      ciaddr: fields.ciaddr ?? "0.0.0.0",
      yiaddr: "0.0.0.0",
      siaddr: "0.0.0.0",
      giaddr: fields.giaddr ?? "0.0.0.0",
      chaddr: macBytes(fields.mac ?? KNOWN_MAC),
      sname: Buffer.alloc(0),
      file: Buffer.alloc(0),
    },
    options,
  );
}

export interface SentDatagram {
  data: Buffer;
  address: string;
  port: number;
  message: DhcpMessage;
}

/** A transport that records what the server sends and lets the test deliver datagrams. */
export class MemoryTransport implements DhcpTransport {
  readonly sent: SentDatagram[] = [];
  closed = false;
  private handler: ((datagram: DhcpDatagram) => void) | undefined;

  onDatagram(handler: (datagram: DhcpDatagram) => void): void {
    this.handler = handler;
  }

  async send(data: Buffer, address: string, port: number): Promise<void> {
    const decoded = decodeMessage(data);
    if (!decoded.ok) throw new Error(`server sent an undecodable reply: ${decoded.failure.detail}`);
    this.sent.push({ data, address, port, message: decoded.message });
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /** Delivers one datagram and returns the datagrams the server sent in reply. */
  async deliver(data: Buffer, toServerAddress = false): Promise<SentDatagram[]> {
    const before = this.sent.length;
    this.handler?.({ data, toServerAddress, source: "0.0.0.0:68" });
    // The server handles a datagram synchronously; the wait lets its send promises settle.
    await new Promise((resolve) => setImmediate(resolve));
    return this.sent.slice(before);
  }
}

/** Log lines written through a pino logger, parsed. */
export class LogCapture {
  readonly lines: Record<string, unknown>[] = [];
  readonly logger: pino.Logger;

  constructor() {
    const stream = new Writable({
      write: (chunk: Buffer, _encoding, callback) => {
        for (const line of chunk.toString("utf8").split("\n")) if (line.trim() !== "") this.lines.push(JSON.parse(line) as Record<string, unknown>);
        callback();
      },
    });
    this.logger = pino({ level: "debug" }, stream);
  }

  matching(message: string | RegExp, fields: Record<string, unknown> = {}): Record<string, unknown>[] {
    return this.lines.filter((line) => {
      const text = String(line.msg);
      const messageMatches = typeof message === "string" ? text === message : message.test(text);
      return messageMatches && Object.entries(fields).every(([key, value]) => line[key] === value);
    });
  }
}

export interface TestServer {
  server: DhcpServer;
  transport: MemoryTransport;
  events: DhcpLeaseChange[];
  reservations: DhcpReservation[];
  log: LogCapture;
  dir: string;
  leaseFile: string;
  /** Closes the server and removes the temporary directory. */
  stop(): Promise<void>;
}

export async function startTestServer(overrides: Partial<DhcpServerOptions> = {}, dir?: string): Promise<TestServer> {
  const workDir = dir ?? mkdtempSync(path.join(tmpdir(), "dhcp-test-"));
  const leaseFile = path.join(workDir, "state", "leases.json");
  const reservations: DhcpReservation[] = [{ mac: KNOWN_MAC, address: KNOWN_ADDRESS, hostname: "sensor-7" }];
  const events: DhcpLeaseChange[] = [];
  const transport = new MemoryTransport();
  const log = new LogCapture();
  const server = await DhcpServer.start(
    {
      interfaceName: "lan0",
      serverAddress: SERVER_ADDRESS,
      subnetMask: "255.255.0.0",
      router: SERVER_ADDRESS,
      dnsServers: [SERVER_ADDRESS],
      domainName: "cyphonic.internal",
      mtuBytes: 1420,
      leaseSeconds: LEASE_SECONDS,
      reservations: () => reservations,
      leaseFile,
      onLease: (change) => events.push(change),
      logger: log.logger,
      ...overrides,
    },
    { transport },
  );
  return {
    server,
    transport,
    events,
    reservations,
    log,
    dir: workDir,
    leaseFile,
    async stop() {
      await server.close();
      if (!dir) rmSync(workDir, { recursive: true, force: true });
    },
  };
}
