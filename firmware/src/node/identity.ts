// A node's persistent identity, in its state directory (mode 0600):
//   private.key    the X25519 static private key, generated on the device
//   identity.json  what the AS assigned: node id, FQDN, virtual IP, and the
//                  endpoints and keys of AS, NMS and TRS
// The key is written before the token is redeemed, so a crash between the two
// retries with the same key, which the AS accepts again.
import fs from "node:fs";
import path from "node:path";
import { z } from "zod";
import { KeyPair, generateKeyPair } from "../protocol/crypto.js";
import { formatEndpoint, parseEndpoint } from "../protocol/endpoint.js";
import { keyPairFromPrivate } from "../protocol/noise.js";
import { ServiceInfo } from "../protocol/signaling.js";
import { writeFileAtomic } from "../util/files.js";

export interface NodeIdentity {
  nodeId: number;
  fqdn: string;
  virtualIP: string;
  prefixLength: number;
  overlayDomain: string;
  as: ServiceInfo;
  nms: ServiceInfo;
  trs: ServiceInfo;
}

const serviceSchema = z.object({ endpoints: z.array(z.string()).min(1), key: z.string() });
const identitySchema = z.object({
  nodeId: z.number().int().positive(),
  fqdn: z.string().min(1),
  virtualIP: z.ipv4(),
  prefixLength: z.number().int().min(8).max(30),
  overlayDomain: z.string().min(1),
  as: serviceSchema,
  nms: serviceSchema,
  trs: serviceSchema,
});

export function loadOrCreateKey(stateDir: string): KeyPair {
  const file = path.join(stateDir, "private.key");
  if (fs.existsSync(file)) {
    const key = Buffer.from(fs.readFileSync(file, "utf8").trim(), "base64");
    if (key.length !== 32) throw new Error(`invalid key file ${file}: expected 32 bytes of base64; delete it only to re-provision this node`);
    return keyPairFromPrivate(key);
  }
  const keys = generateKeyPair();
  writeFileAtomic(file, keys.privateKey.toString("base64") + "\n", 0o600);
  return keys;
}

export function loadIdentity(stateDir: string): NodeIdentity | null {
  const file = path.join(stateDir, "identity.json");
  if (!fs.existsSync(file)) return null;
  const parsed = identitySchema.safeParse(JSON.parse(fs.readFileSync(file, "utf8")));
  if (!parsed.success) throw new Error(`invalid identity file ${file}: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  const d = parsed.data;
  const service = (s: { endpoints: string[]; key: string }): ServiceInfo => ({ endpoints: s.endpoints.map(parseEndpoint), staticKey: Buffer.from(s.key, "base64") });
  return { ...d, as: service(d.as), nms: service(d.nms), trs: service(d.trs) };
}

export function saveIdentity(stateDir: string, id: NodeIdentity): void {
  const service = (s: ServiceInfo) => ({ endpoints: s.endpoints.map(formatEndpoint), key: s.staticKey.toString("base64") });
  const doc = { ...id, as: service(id.as), nms: service(id.nms), trs: service(id.trs) };
  writeFileAtomic(path.join(stateDir, "identity.json"), JSON.stringify(doc, null, 2) + "\n", 0o600);
}
