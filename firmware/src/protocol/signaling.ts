// Signaling messages between a node and the cloud (AS, NMS, TRS). They travel
// as the plaintext of transport messages on a Noise session with the service,
// so they are authenticated, encrypted and replay-protected by the session.
//
// Plaintext dispatch of every transport message, by its first byte:
//   (empty)        keep-alive
//   0x10..0x3f     a signaling message below
//   0x45..0x4f     an IPv4 packet (version nibble 4)
//   0x60..0x6f     an IPv6 packet (version nibble 6)
//
// Each message: type u8, then its fields in order (u32 big-endian, strings and
// byte fields with a u16 length, endpoints as in endpoint.ts).
import { Reader, Writer } from "./codec.js";
import { KEY_BYTES } from "./crypto.js";
import { Endpoint, bytesToIPv4, ipv4ToBytes, readEndpoint, readEndpoints, writeEndpoint, writeEndpoints } from "./endpoint.js";
import { ProtocolError } from "./errors.js";

export const SignalType = {
  RedeemRequest: 0x10, // node -> AS: redeem a provisioning token for the handshake's static key
  HelloRequest: 0x12, // node -> AS: fetch the configuration of an already provisioned key
  Welcome: 0x11, // AS -> node: identity and service endpoints
  GeneralNodesRequest: 0x13, // adapter -> AS: one page of the general nodes registered to it
  GeneralNodes: 0x14, // AS -> adapter
  BindKeyRequest: 0x15, // adapter -> AS: the key it generated for one of its general nodes
  BindKeyAck: 0x16, // AS -> adapter
  Error: 0x1f, // any service -> node
  Register: 0x20, // node -> NMS: report local endpoints
  Registered: 0x21, // NMS -> node: observed endpoint and NAPT verdict
  Keepalive: 0x22, // node -> NMS
  KeepaliveAck: 0x23, // NMS -> node
  RouteRequest: 0x24, // node -> NMS: route to a peer by FQDN or virtual IP
  RouteResponse: 0x25, // NMS -> requesting node
  RouteInstruction: 0x26, // NMS -> the other end, pushed
  RouteInstructionAck: 0x27, // node -> NMS
  RelayData: 0x30, // node <-> TRS: a tunnel datagram relayed on a route
} as const;

export const Path = { Direct: 1, Relay: 2 } as const;
export type PathKind = (typeof Path)[keyof typeof Path];
/**
 * Initiate: send the first handshake. Await: the other end sends it.
 * Punch: both ends send at once over the direct path (each opens its NAPT
 * towards the other), and fall back to the relay the route names when no
 * handshake completes in time.
 */
export const Role = { Initiate: 1, Await: 2, Punch: 3 } as const;
export type RoleKind = (typeof Role)[keyof typeof Role];

export interface ServiceInfo {
  /** One per address family the service is reachable on, in order of preference. */
  endpoints: Endpoint[];
  staticKey: Buffer;
}

export interface RouteInfo {
  routeId: number;
  path: PathKind;
  /** Whether this end sends the first handshake initiation. */
  role: RoleKind;
  /** Why NMS chose the path, for `cyphonic status`. */
  reason: string;
  peer: {
    nodeId: number;
    fqdn: string;
    virtualIP: string;
    staticKey: Buffer;
    endpoints: Endpoint[];
  };
  relay: ServiceInfo | null;
}

/** Whom a route request is for: a name, a virtual IP, or the static key of a node that just knocked. */
export type RouteTarget = { fqdn: string } | { virtualIP: string } | { staticKey: Buffer };

/** One general node as the AS lists it to its adapter. */
export interface GeneralNodeEntry {
  nodeId: number;
  fqdn: string;
  /** Lower-case colon form, as on the wire: 6 bytes. */
  mac: string;
  virtualIP: string;
  publicKey: Buffer | null;
}

/** Entries per GeneralNodes page, so a page fits one unfragmented datagram. */
export const GENERAL_NODES_PAGE_SIZE = 8;

export type Signal =
  | { type: typeof SignalType.RedeemRequest; requestId: number; token: string }
  | { type: typeof SignalType.HelloRequest; requestId: number }
  | {
      type: typeof SignalType.Welcome;
      requestId: number;
      nodeId: number;
      fqdn: string;
      virtualIP: string;
      prefixLength: number;
      overlayDomain: string;
      nms: ServiceInfo;
      trs: ServiceInfo;
    }
  | { type: typeof SignalType.GeneralNodesRequest; requestId: number; offset: number }
  | { type: typeof SignalType.GeneralNodes; requestId: number; version: number; total: number; offset: number; entries: GeneralNodeEntry[] }
  | { type: typeof SignalType.BindKeyRequest; requestId: number; nodeId: number; publicKey: Buffer }
  | { type: typeof SignalType.BindKeyAck; requestId: number; nodeId: number }
  | { type: typeof SignalType.Error; requestId: number; code: string; message: string }
  | { type: typeof SignalType.Register; requestId: number; localEndpoints: Endpoint[] }
  | { type: typeof SignalType.Registered; requestId: number; observed: Endpoint; napt: boolean; keepaliveIntervalMs: number }
  | { type: typeof SignalType.Keepalive; seq: number }
  | { type: typeof SignalType.KeepaliveAck; seq: number; observed: Endpoint }
  | { type: typeof SignalType.RouteRequest; requestId: number; target: RouteTarget }
  | { type: typeof SignalType.RouteResponse; requestId: number; route: RouteInfo }
  | { type: typeof SignalType.RouteInstruction; instructionId: number; route: RouteInfo }
  | { type: typeof SignalType.RouteInstructionAck; instructionId: number }
  | { type: typeof SignalType.RelayData; routeId: number; datagram: Buffer };

const TARGET_FQDN = 1;
const TARGET_VIRTUAL_IP = 2;
const TARGET_STATIC_KEY = 3;

function writeService(w: Writer, s: ServiceInfo): void {
  writeEndpoints(w, s.endpoints);
  w.fixed(s.staticKey, KEY_BYTES);
}

function readService(r: Reader): ServiceInfo {
  const endpoints = readEndpoints(r);
  if (endpoints.length === 0) throw new ProtocolError("bad_field", "service without endpoints");
  return { endpoints, staticKey: r.fixed(KEY_BYTES, "service static key") };
}

function writeRoute(w: Writer, route: RouteInfo): void {
  w.u32(route.routeId).u8(route.path).u8(route.role).string(route.reason);
  w.u32(route.peer.nodeId).string(route.peer.fqdn).raw(ipv4ToBytes(route.peer.virtualIP));
  w.fixed(route.peer.staticKey, KEY_BYTES);
  writeEndpoints(w, route.peer.endpoints);
  w.u8(route.relay ? 1 : 0);
  if (route.relay) writeService(w, route.relay);
}

function readRoute(r: Reader): RouteInfo {
  const routeId = r.u32("route id");
  const path = r.u8("path");
  if (path !== Path.Direct && path !== Path.Relay) throw new ProtocolError("bad_field", `path ${path}`);
  const role = r.u8("role");
  if (role !== Role.Initiate && role !== Role.Await && role !== Role.Punch) throw new ProtocolError("bad_field", `role ${role}`);
  const reason = r.string("route reason");
  const peer = {
    nodeId: r.u32("peer node id"),
    fqdn: r.string("peer fqdn"),
    virtualIP: bytesToIPv4(r.fixed(4, "peer virtual IP")),
    staticKey: r.fixed(KEY_BYTES, "peer static key"),
    endpoints: readEndpoints(r),
  };
  const hasRelay = r.u8("relay flag");
  if (hasRelay > 1) throw new ProtocolError("bad_field", `relay flag ${hasRelay}`);
  const relay = hasRelay ? readService(r) : null;
  if (path === Path.Relay && !relay) throw new ProtocolError("bad_field", "relay path without relay service");
  if (role === Role.Punch && (!relay || path !== Path.Direct)) throw new ProtocolError("bad_field", "hole punching needs a direct path and a relay to fall back to");
  return { routeId, path, role, reason, peer, relay };
}

function readGeneralNode(r: Reader): GeneralNodeEntry {
  const nodeId = r.u32("node id");
  const fqdn = r.string("fqdn");
  const mac = bytesToMac(r.fixed(6, "MAC address"));
  const virtualIP = bytesToIPv4(r.fixed(4, "virtual IP"));
  const hasKey = r.u8("key flag");
  if (hasKey > 1) throw new ProtocolError("bad_field", `key flag ${hasKey}`);
  return { nodeId, fqdn, mac, virtualIP, publicKey: hasKey ? r.fixed(KEY_BYTES, "public key") : null };
}

function macToBytes(mac: string): Buffer {
  const b = Buffer.from(mac.replace(/:/g, ""), "hex");
  if (b.length !== 6) throw new RangeError(`invalid MAC address "${mac}"`);
  return b;
}

function bytesToMac(b: Buffer): string {
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join(":");
}

export function encodeSignal(m: Signal): Buffer {
  const w = new Writer().u8(m.type);
  switch (m.type) {
    case SignalType.RedeemRequest:
      w.u32(m.requestId).string(m.token);
      break;
    case SignalType.HelloRequest:
      w.u32(m.requestId);
      break;
    case SignalType.Welcome:
      w.u32(m.requestId).u32(m.nodeId).string(m.fqdn).raw(ipv4ToBytes(m.virtualIP)).u8(m.prefixLength);
      w.string(m.overlayDomain);
      writeService(w, m.nms);
      writeService(w, m.trs);
      break;
    case SignalType.GeneralNodesRequest:
      w.u32(m.requestId).u16(m.offset);
      break;
    case SignalType.GeneralNodes:
      if (m.entries.length > GENERAL_NODES_PAGE_SIZE) throw new RangeError(`${m.entries.length} entries exceed a page of ${GENERAL_NODES_PAGE_SIZE}`);
      w.u32(m.requestId).u32(m.version).u16(m.total).u16(m.offset).u8(m.entries.length);
      for (const e of m.entries) {
        w.u32(e.nodeId).string(e.fqdn).raw(macToBytes(e.mac)).raw(ipv4ToBytes(e.virtualIP)).u8(e.publicKey ? 1 : 0);
        if (e.publicKey) w.fixed(e.publicKey, KEY_BYTES);
      }
      break;
    case SignalType.BindKeyRequest:
      w.u32(m.requestId).u32(m.nodeId).fixed(m.publicKey, KEY_BYTES);
      break;
    case SignalType.BindKeyAck:
      w.u32(m.requestId).u32(m.nodeId);
      break;
    case SignalType.Error:
      w.u32(m.requestId).string(m.code).string(m.message);
      break;
    case SignalType.Register:
      w.u32(m.requestId);
      writeEndpoints(w, m.localEndpoints);
      break;
    case SignalType.Registered:
      w.u32(m.requestId);
      writeEndpoint(w, m.observed);
      w.u8(m.napt ? 1 : 0).u32(m.keepaliveIntervalMs);
      break;
    case SignalType.Keepalive:
      w.u32(m.seq);
      break;
    case SignalType.KeepaliveAck:
      w.u32(m.seq);
      writeEndpoint(w, m.observed);
      break;
    case SignalType.RouteRequest:
      w.u32(m.requestId);
      if ("fqdn" in m.target) w.u8(TARGET_FQDN).string(m.target.fqdn);
      else if ("virtualIP" in m.target) w.u8(TARGET_VIRTUAL_IP).raw(ipv4ToBytes(m.target.virtualIP));
      else w.u8(TARGET_STATIC_KEY).fixed(m.target.staticKey, KEY_BYTES);
      break;
    case SignalType.RouteResponse:
      w.u32(m.requestId);
      writeRoute(w, m.route);
      break;
    case SignalType.RouteInstruction:
      w.u32(m.instructionId);
      writeRoute(w, m.route);
      break;
    case SignalType.RouteInstructionAck:
      w.u32(m.instructionId);
      break;
    case SignalType.RelayData:
      w.u32(m.routeId).raw(m.datagram);
      break;
  }
  return w.finish();
}

/** Decodes one signaling message; throws ProtocolError on any malformed input, including trailing bytes. */
export function decodeSignal(buf: Buffer): Signal {
  const r = new Reader(buf);
  const type = r.u8("signal type");
  let m: Signal;
  switch (type) {
    case SignalType.RedeemRequest:
      m = { type, requestId: r.u32(), token: r.string("token") };
      break;
    case SignalType.HelloRequest:
      m = { type, requestId: r.u32() };
      break;
    case SignalType.Welcome: {
      const requestId = r.u32();
      const nodeId = r.u32();
      const fqdn = r.string("fqdn");
      const virtualIP = bytesToIPv4(r.fixed(4, "virtual IP"));
      const prefixLength = r.u8("prefix length");
      if (prefixLength < 8 || prefixLength > 30) throw new ProtocolError("bad_field", `prefix length ${prefixLength}`);
      const overlayDomain = r.string("overlay domain");
      m = { type, requestId, nodeId, fqdn, virtualIP, prefixLength, overlayDomain, nms: readService(r), trs: readService(r) };
      break;
    }
    case SignalType.GeneralNodesRequest:
      m = { type, requestId: r.u32(), offset: r.u16("offset") };
      break;
    case SignalType.GeneralNodes: {
      const requestId = r.u32();
      const version = r.u32("version");
      const total = r.u16("total");
      const offset = r.u16("offset");
      const count = r.u8("entry count");
      if (count > GENERAL_NODES_PAGE_SIZE) throw new ProtocolError("bad_field", `${count} entries exceed a page of ${GENERAL_NODES_PAGE_SIZE}`);
      const entries: GeneralNodeEntry[] = [];
      for (let i = 0; i < count; i++) entries.push(readGeneralNode(r));
      m = { type, requestId, version, total, offset, entries };
      break;
    }
    case SignalType.BindKeyRequest:
      m = { type, requestId: r.u32(), nodeId: r.u32("node id"), publicKey: r.fixed(KEY_BYTES, "public key") };
      break;
    case SignalType.BindKeyAck:
      m = { type, requestId: r.u32(), nodeId: r.u32("node id") };
      break;
    case SignalType.Error:
      m = { type, requestId: r.u32(), code: r.string("error code"), message: r.string("error message") };
      break;
    case SignalType.Register:
      m = { type, requestId: r.u32(), localEndpoints: readEndpoints(r) };
      break;
    case SignalType.Registered: {
      const requestId = r.u32();
      const observed = readEndpoint(r);
      const napt = r.u8("napt flag");
      if (napt > 1) throw new ProtocolError("bad_field", `napt flag ${napt}`);
      m = { type, requestId, observed, napt: napt === 1, keepaliveIntervalMs: r.u32("keep-alive interval") };
      break;
    }
    case SignalType.Keepalive:
      m = { type, seq: r.u32() };
      break;
    case SignalType.KeepaliveAck:
      m = { type, seq: r.u32(), observed: readEndpoint(r) };
      break;
    case SignalType.RouteRequest: {
      const requestId = r.u32();
      const kind = r.u8("route target kind");
      if (kind === TARGET_FQDN) m = { type, requestId, target: { fqdn: r.string("target fqdn") } };
      else if (kind === TARGET_VIRTUAL_IP) m = { type, requestId, target: { virtualIP: bytesToIPv4(r.fixed(4, "target IP")) } };
      else if (kind === TARGET_STATIC_KEY) m = { type, requestId, target: { staticKey: r.fixed(KEY_BYTES, "target key") } };
      else throw new ProtocolError("bad_field", `route target kind ${kind}`);
      break;
    }
    case SignalType.RouteResponse:
      m = { type, requestId: r.u32(), route: readRoute(r) };
      break;
    case SignalType.RouteInstruction:
      m = { type, instructionId: r.u32(), route: readRoute(r) };
      break;
    case SignalType.RouteInstructionAck:
      m = { type, instructionId: r.u32() };
      break;
    case SignalType.RelayData:
      m = { type, routeId: r.u32(), datagram: Buffer.from(r.rest()) };
      break;
    default:
      throw new ProtocolError("bad_type", `signal type 0x${type.toString(16)}`);
  }
  r.end(`signal 0x${type.toString(16)}`);
  return m;
}

/** True when a transport plaintext is a signaling message rather than an IP packet or keep-alive. */
export function isSignal(plaintext: Buffer): boolean {
  return plaintext.length > 0 && plaintext[0]! >= 0x10 && plaintext[0]! < 0x40;
}
