// The provisioning token file: what an operator hands a new node (and what a
// user drops on the adapter's boot partition). Plain KEY=VALUE lines, '#'
// comments, so any text editor on any PC can write it:
//
//   as_endpoint=198.18.0.10:7400      the AS, ADDRESS:PORT or [IPv6]:PORT; several,
//                                     comma-separated, for an AS on IPv4 and IPv6
//   as_key=<base64, 32 bytes>         the AS static key: the node pins it
//   token=<base64url secret>          one-time, expires
import fs from "node:fs";
import { isUsablePublicKey } from "../protocol/crypto.js";
import { Endpoint, MAX_ENDPOINTS, formatEndpoint, parseEndpoint } from "../protocol/endpoint.js";

export interface TokenFile {
  /** In order of preference; the node uses the first of a family it has an address in. */
  asEndpoints: Endpoint[];
  asKey: Buffer;
  token: string;
}

export class TokenFileError extends Error {
  constructor(
    readonly file: string,
    readonly field: string | null,
    message: string,
  ) {
    super(`${file}: ${message}`);
    this.name = "TokenFileError";
  }
}

const KNOWN_FIELDS = new Set(["as_endpoint", "as_key", "token"]);

export function parseTokenFile(text: string, file = "token file"): TokenFile {
  const fields = new Map<string, string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith("#")) return;
    const eq = line.indexOf("=");
    if (eq < 1) throw new TokenFileError(file, null, `line ${i + 1} is not KEY=VALUE`);
    const key = line.slice(0, eq).trim().toLowerCase();
    if (!KNOWN_FIELDS.has(key)) throw new TokenFileError(file, key, `line ${i + 1}: unknown field "${key}" (expected as_endpoint, as_key, token)`);
    fields.set(key, line.slice(eq + 1).trim());
  });
  const need = (key: string): string => {
    const v = fields.get(key);
    if (!v) throw new TokenFileError(file, key, `missing field "${key}"`);
    return v;
  };
  let asEndpoints: Endpoint[];
  try {
    asEndpoints = need("as_endpoint").split(",").map((e) => parseEndpoint(e.trim()));
    if (asEndpoints.length > MAX_ENDPOINTS) throw new RangeError(`more than ${MAX_ENDPOINTS} endpoints`);
  } catch (err) {
    if (err instanceof TokenFileError) throw err;
    throw new TokenFileError(file, "as_endpoint", `invalid as_endpoint: ${(err as Error).message}`);
  }
  const asKey = Buffer.from(need("as_key"), "base64");
  if (asKey.length !== 32) throw new TokenFileError(file, "as_key", `invalid as_key: expected 32 bytes of base64, got ${asKey.length}`);
  if (!isUsablePublicKey(asKey)) throw new TokenFileError(file, "as_key", "invalid as_key: not a usable X25519 public key; copy it again from the token the operator issued");
  const token = need("token");
  if (!/^[A-Za-z0-9_-]{16,256}$/.test(token)) throw new TokenFileError(file, "token", "invalid token: expected 16 to 256 base64url characters");
  return { asEndpoints, asKey, token };
}

export function readTokenFile(file: string): TokenFile {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    throw new TokenFileError(file, null, `cannot read: ${(err as Error).message}`);
  }
  return parseTokenFile(text, file);
}

export function formatTokenFile(t: TokenFile): string {
  return [
    "# CYPHONIC provisioning token: one use, keep it secret.",
    `as_endpoint=${t.asEndpoints.map(formatEndpoint).join(",")}`,
    `as_key=${t.asKey.toString("base64")}`,
    `token=${t.token}`,
    "",
  ].join("\n");
}
