// Static X25519 keys of the cloud services, one file per service in the state
// directory (mode 0600). Created on first start and kept, because nodes pin
// them: a new AS key invalidates every issued token, a new NMS or TRS key
// every provisioned node until it fetches its configuration again.
import fs from "node:fs";
import path from "node:path";
import { KeyPair, generateKeyPair } from "../protocol/crypto.js";
import { keyPairFromPrivate } from "../protocol/noise.js";
import { writeFileAtomic } from "../util/files.js";

export type ServiceName = "as" | "nms" | "trs";

export function loadOrCreateServiceKey(stateDir: string, service: ServiceName): KeyPair {
  const file = path.join(stateDir, `${service}.key`);
  if (fs.existsSync(file)) {
    const text = fs.readFileSync(file, "utf8").trim();
    const privateKey = Buffer.from(text, "base64");
    if (privateKey.length !== 32) throw new Error(`invalid key file ${file}: expected 32 bytes of base64, found ${privateKey.length}`);
    return keyPairFromPrivate(privateKey);
  }
  const keys = generateKeyPair();
  writeFileAtomic(file, keys.privateKey.toString("base64") + "\n", 0o600);
  return keys;
}

export function readServicePublicKey(stateDir: string, service: ServiceName): Buffer {
  return loadOrCreateServiceKey(stateDir, service).publicKey;
}
