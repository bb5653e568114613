// Validation and normalization of names, MAC addresses and keys given to the store.
import { StoreError } from "./errors.js";

/**
 * Host name label per RFC 1123 section 2.1 (letters, digits and inner hyphens,
 * a leading digit allowed, 1 to 63 characters), restricted to lower case so
 * that names stored and compared are already canonical.
 */
const LOWER_CASE_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * Maximum length of a domain name in text form without the trailing dot. RFC
 * 1035 section 2.3.4 allows 255 octets in wire form, which is 253 characters.
 */
const MAX_DOMAIN_LENGTH = 253;

/** Maximum length of a node name, and so of the first label of its FQDN. */
const MAX_LABEL_LENGTH = 63;

export function validateNodeName(name: string): string {
  if (!LOWER_CASE_LABEL.test(name)) {
    throw new StoreError(
      "invalid_name",
      `Node name "${name}" is invalid. Use 1 to 63 lower-case letters, digits or hyphens, ` +
        "with no hyphen at the start or end.",
    );
  }
  return name;
}

/**
 * Returns the overlay domain in lower case without a trailing dot. It must
 * leave room for a 63-character node name, so that every FQDN is a valid
 * domain name.
 */
export function normalizeOverlayDomain(domain: string): string {
  const lower = domain.toLowerCase().replace(/\.$/, "");
  const labelsValid = lower.split(".").every((label) => LOWER_CASE_LABEL.test(label));
  if (!labelsValid || lower.length > MAX_DOMAIN_LENGTH - MAX_LABEL_LENGTH - 1) {
    throw new StoreError(
      "invalid_config",
      `Overlay domain "${domain}" is invalid. Use dot-separated labels of letters, digits ` +
        `and inner hyphens, at most ${MAX_DOMAIN_LENGTH - MAX_LABEL_LENGTH - 1} characters in total.`,
    );
  }
  return lower;
}

// Six octets separated by colons or hyphens, or twelve hex digits with no separator.
const MAC_SEPARATED = /^[0-9a-f]{2}([:-])[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}$/;
const MAC_BARE = /^[0-9a-f]{12}$/;

/**
 * Returns a unicast MAC address in lower-case colon form ("02:00:5e:10:00:01").
 * Multicast and broadcast addresses (least significant bit of the first octet
 * set) and the all-zero address never identify a device, so they are rejected.
 */
export function normalizeMac(mac: string): string {
  const lower = mac.trim().toLowerCase();
  let hex: string | undefined;
  if (MAC_SEPARATED.test(lower)) hex = lower.replace(/[:-]/g, "");
  else if (MAC_BARE.test(lower)) hex = lower;

  const firstOctet = hex === undefined ? 0 : parseInt(hex.slice(0, 2), 16);
  if (hex === undefined || (firstOctet & 1) === 1 || /^0+$/.test(hex)) {
    throw new StoreError(
      "invalid_mac",
      `MAC address "${mac}" is invalid. Give a unicast address as six hex octets, such as "02:00:5e:10:00:01".`,
    );
  }
  return hex.match(/../g)!.join(":");
}

/** Length in bytes of an X25519 public key (RFC 7748 section 5). */
export const PUBLIC_KEY_BYTES = 32;

// Base64 of 32 bytes: 43 characters and one padding character, which the
// URL-safe alphabet (RFC 4648 section 5) may omit.
const PUBLIC_KEY_BASE64 = /^[A-Za-z0-9+/]{43}=$|^[A-Za-z0-9_-]{43}$/;

/**
 * Returns a public key as a 32-byte Buffer. Accepts raw bytes or base64 in
 * either alphabet, and returns undefined for anything else.
 */
export function decodePublicKey(key: Uint8Array | string): Buffer | undefined {
  if (typeof key === "string") {
    return PUBLIC_KEY_BASE64.test(key) ? Buffer.from(key, "base64") : undefined;
  }
  return key.length === PUBLIC_KEY_BYTES ? Buffer.from(key) : undefined;
}

/** Same as decodePublicKey, but raises StoreError "invalid_key" instead of returning undefined. */
export function requirePublicKey(key: Uint8Array | string): Buffer {
  const decoded = decodePublicKey(key);
  if (!decoded) {
    throw new StoreError(
      "invalid_key",
      `Public key is invalid. Give ${PUBLIC_KEY_BYTES} bytes, raw or in base64.`,
    );
  }
  return decoded;
}
