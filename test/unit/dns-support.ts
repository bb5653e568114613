// Shared fixtures of the DNS server tests: a scripted lookup, query builders,
// UDP/TCP clients, a fake upstream resolver and a dig wrapper. Everything
// binds to 127.0.0.1 only.
import { execFile } from "node:child_process";
import dgram from "node:dgram";
import net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import dnsPacket from "dns-packet";
import type { Answer, DecodedPacket, RecordClass, RecordType } from "dns-packet";
import { Counters } from "../../firmware/src/util/counters.js";
import { logger, RateLimitedLog } from "../../firmware/src/util/log.js";
import { DnsServer } from "../../firmware/src/node/dns/index.js";
import { OverlayZone } from "../../firmware/src/node/dns/overlay-zone.js";
import { QueryHandler } from "../../firmware/src/node/dns/query-handler.js";
import type { DnsQueryContext, DnsServerOptions, OverlayLookup } from "../../firmware/src/node/dns/index.js";

export const OVERLAY_DOMAIN = "cyphonic.internal";
export const PEER_IPV4 = "10.77.0.5";
export const OTHER_MEMBER_IPV4 = "10.77.1.1";
export const MEMBER_TTL_SECONDS = 10;
export const LOOPBACK = "127.0.0.1";

export interface LookupCall {
  fqdn: string;
  ctx: DnsQueryContext;
}

/**
 * Builds a lookup whose result follows the first label: "missing*" is
 * NXDOMAIN, "failing*" is SERVFAIL, "throwing*" rejects, "slow*" resolves
 * after `slowMs`, "peer" is PEER_IPV4 and any other name is OTHER_MEMBER_IPV4.
 */
export function scriptedLookup(slowMs = 5_000): { lookup: OverlayLookup; calls: LookupCall[] } {
  const calls: LookupCall[] = [];
  const lookup: OverlayLookup = async (fqdn, ctx) => {
    calls.push({ fqdn, ctx });
    const first = fqdn.split(".")[0] ?? "";
    if (first.startsWith("missing")) return { kind: "nxdomain" };
    if (first.startsWith("failing")) return { kind: "servfail", reason: "member database unavailable" };
    if (first.startsWith("throwing")) throw new Error("lookup exploded");
    if (first.startsWith("slow")) await sleep(slowMs);
    const ipv4 = first === "peer" ? PEER_IPV4 : OTHER_MEMBER_IPV4;
    return { kind: "address", ipv4, ttlSeconds: MEMBER_TTL_SECONDS };
  };
  return { lookup, calls };
}

export interface TestServer {
  server: DnsServer;
  port: number;
  calls: LookupCall[];
}

export async function startTestServer(overrides: Partial<DnsServerOptions> = {}): Promise<TestServer> {
  const { lookup, calls } = scriptedLookup();
  const server = await DnsServer.start({
    listen: [{ address: LOOPBACK, port: 0 }],
    overlayDomain: OVERLAY_DOMAIN,
    lookup,
    upstream: null,
    queryTimeoutMs: 1_000,
    ...overrides,
  });
  const port = server.listening[0]?.port;
  if (port === undefined) throw new Error("DNS server started without a listen address");
  return { server, port, calls };
}

/** Builds a QueryHandler without sockets, with the scripted lookup and no upstream. */
export function standaloneQueryHandler(): { handler: QueryHandler; counters: Counters } {
  const counters = new Counters();
  const log = logger("dns-test");
  const handler = new QueryHandler({
    zone: new OverlayZone(OVERLAY_DOMAIN),
    lookup: scriptedLookup().lookup,
    forwarder: null,
    queryTimeoutMs: 1_000,
    maxQueryBytes: 4096,
    counters,
    log,
    warnings: new RateLimitedLog(log),
  });
  return { handler, counters };
}

export interface QuerySpec {
  name: string;
  type?: RecordType;
  class?: RecordClass;
  id?: number;
  /** Header flags without QR. Defaults to RD. */
  flags?: number;
  /** EDNS0 UDP payload size; omit for a query without an OPT record. */
  udpPayloadSize?: number;
  ednsVersion?: number;
  dnssecOk?: boolean;
}

export function encodeQuery(spec: QuerySpec): Buffer {
  const additionals: Answer[] = [];
  if (spec.udpPayloadSize !== undefined) {
    additionals.push({
      type: "OPT",
      name: ".",
      udpPayloadSize: spec.udpPayloadSize,
      extendedRcode: 0,
      ednsVersion: spec.ednsVersion ?? 0,
      flags: spec.dnssecOk ? dnsPacket.DNSSEC_OK : 0,
      flag_do: spec.dnssecOk ?? false,
      options: [],
    });
  }
  return dnsPacket.encode({
    type: "query",
    id: spec.id ?? 0x1234,
    flags: spec.flags ?? dnsPacket.RECURSION_DESIRED,
    questions: [{ name: spec.name, type: spec.type ?? "A", class: spec.class ?? "IN" }],
    additionals,
  });
}

/** Builds a query whose question name is the given raw labels, for names dns-packet cannot encode. */
export function encodeRawLabelQuery(labels: Buffer[], qtype = 1, id = 0x4321): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(dnsPacket.RECURSION_DESIRED, 2);
  header.writeUInt16BE(1, 4);
  const parts: Buffer[] = [header];
  for (const label of labels) parts.push(Buffer.from([label.length]), label);
  const tail = Buffer.alloc(5);
  tail.writeUInt16BE(qtype, 1);
  tail.writeUInt16BE(1, 3);
  parts.push(tail);
  return Buffer.concat(parts);
}

/** Returns the question section of a single-question message (header excluded). */
export function questionBytes(message: Buffer): Buffer {
  let offset = 12;
  while (message[offset] !== 0) offset += (message[offset] ?? 0) + 1;
  return message.subarray(12, offset + 5);
}

export function rcodeOf(message: Buffer): number {
  return message.readUInt16BE(2) & 0x0f;
}

export function hasFlag(message: Buffer, flag: number): boolean {
  return (message.readUInt16BE(2) & flag) !== 0;
}

/** Returns the data of the first answer record, or undefined when there is none. */
export function firstAnswerData(message: Buffer): unknown {
  const answer = dnsPacket.decode(message).answers?.[0];
  return answer && "data" in answer ? answer.data : undefined;
}

export function optOf(packet: DecodedPacket): (Answer & { type: "OPT" }) | undefined {
  return packet.additionals?.find((record): record is Answer & { type: "OPT" } => record.type === "OPT");
}

/** Sends one datagram and returns the first reply, or null when none arrives in time. */
export async function udpExchange(port: number, message: Buffer, timeoutMs = 1_500): Promise<Buffer | null> {
  const socket = dgram.createSocket("udp4");
  try {
    const reply = new Promise<Buffer | null>((resolve) => {
      const timer = setTimeout(() => resolve(null), timeoutMs);
      socket.once("message", (response) => {
        clearTimeout(timer);
        resolve(response);
      });
    });
    socket.send(message, port, LOOPBACK);
    return await reply;
  } finally {
    socket.close();
  }
}

/** A TCP client that collects DNS messages from the length-prefixed stream. */
export class TcpDnsClient {
  readonly messages: Buffer[] = [];
  closed = false;
  private pending = Buffer.alloc(0);

  private constructor(readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => {
      this.pending = Buffer.concat([this.pending, chunk]);
      while (this.pending.length >= 2 && this.pending.length >= 2 + this.pending.readUInt16BE(0)) {
        const length = this.pending.readUInt16BE(0);
        this.messages.push(this.pending.subarray(2, 2 + length));
        this.pending = this.pending.subarray(2 + length);
      }
    });
    socket.on("error", () => {
      // A reset by the server shows up as `closed`.
    });
    socket.on("close", () => {
      this.closed = true;
    });
  }

  static connect(port: number): Promise<TcpDnsClient> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ host: LOOPBACK, port });
      socket.once("error", reject);
      socket.once("connect", () => {
        socket.off("error", reject);
        resolve(new TcpDnsClient(socket));
      });
    });
  }

  write(bytes: Buffer): Promise<void> {
    return new Promise((resolve, reject) => this.socket.write(bytes, (err) => (err ? reject(err) : resolve())));
  }

  async waitForMessages(count: number, timeoutMs = 2_000): Promise<Buffer[]> {
    await waitFor(() => this.messages.length >= count, timeoutMs, `${count} TCP responses`);
    return this.messages;
  }

  async waitForClose(timeoutMs = 2_000): Promise<void> {
    await waitFor(() => this.closed, timeoutMs, "TCP connection close");
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export function frame(message: Buffer): Buffer {
  const prefix = Buffer.alloc(2);
  prefix.writeUInt16BE(message.length, 0);
  return Buffer.concat([prefix, message]);
}

/** Polls `condition` every 5 ms and rejects with `what` in the message when it stays false for `timeoutMs`. */
export async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

/** Runs dig against the test server with one try and a 2 s timeout, and returns its standard output. */
export function dig(port: number, args: string[], serverAddress = LOOPBACK): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("dig", [`@${serverAddress}`, "-p", String(port), "+time=2", "+tries=1", ...args], (err, stdout, stderr) => {
      if (err) reject(new Error(`dig ${args.join(" ")} failed: ${err.message}\n${stdout}${stderr}`));
      else resolve(stdout);
    });
  });
}

/** Returns the "status:" value of dig's header line, for example "NXDOMAIN". */
export function digStatus(output: string): string | undefined {
  return /status: ([A-Z]+)/.exec(output)?.[1];
}

/** Returns the flags of dig's header line, for example ["qr", "aa", "rd"]. */
export function digFlags(output: string): string[] {
  return /flags: ([a-z ]*);/.exec(output)?.[1]?.trim().split(/\s+/) ?? [];
}

export type UpstreamReply = (query: DecodedPacket, raw: Buffer, transport: "udp" | "tcp") => Buffer[];

/** A scripted upstream resolver on UDP and TCP of one loopback port. */
export class FakeUpstream {
  readonly received: { raw: Buffer; transport: "udp" | "tcp" }[] = [];
  private readonly connections = new Set<net.Socket>();

  private constructor(
    private readonly udp: dgram.Socket,
    private readonly tcp: net.Server,
    readonly port: number,
  ) {}

  static async start(reply: UpstreamReply): Promise<FakeUpstream> {
    for (let attempt = 0; attempt < 8; attempt++) {
      const udp = dgram.createSocket("udp4");
      await new Promise<void>((resolve) => udp.bind(0, LOOPBACK, () => resolve()));
      const port = udp.address().port;
      const tcp = net.createServer();
      const listening = await new Promise<boolean>((resolve) => {
        tcp.once("error", () => resolve(false));
        tcp.listen(port, LOOPBACK, () => resolve(true));
      });
      if (!listening) {
        udp.close();
        continue;
      }

      const upstream = new FakeUpstream(udp, tcp, port);
      udp.on("message", (raw, remote) => {
        upstream.received.push({ raw, transport: "udp" });
        for (const response of reply(dnsPacket.decode(raw), raw, "udp")) udp.send(response, remote.port, remote.address);
      });
      tcp.on("connection", (socket) => {
        upstream.connections.add(socket);
        socket.on("close", () => upstream.connections.delete(socket));
        let pending = Buffer.alloc(0);
        socket.on("data", (chunk: Buffer) => {
          pending = Buffer.concat([pending, chunk]);
          while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
            const raw = pending.subarray(2, 2 + pending.readUInt16BE(0));
            pending = pending.subarray(2 + raw.length);
            upstream.received.push({ raw, transport: "tcp" });
            for (const response of reply(dnsPacket.decode(raw), raw, "tcp")) socket.write(frame(response));
          }
        });
      });
      return upstream;
    }
    throw new Error("no free loopback port for the fake upstream on both UDP and TCP");
  }

  async close(): Promise<void> {
    for (const socket of this.connections) socket.destroy();
    await new Promise<void>((resolve) => this.tcp.close(() => resolve()));
    await new Promise<void>((resolve) => this.udp.close(() => resolve()));
  }
}

/** Builds the upstream's response to `query` with the given answers, echoing ID and question. */
export function upstreamResponse(query: DecodedPacket, answers: Answer[], flags = dnsPacket.RECURSION_AVAILABLE): Buffer {
  return dnsPacket.encode({
    type: "response",
    id: query.id ?? 0,
    flags: flags | ((query.flags ?? 0) & dnsPacket.RECURSION_DESIRED),
    questions: query.questions ?? [],
    answers,
  });
}
