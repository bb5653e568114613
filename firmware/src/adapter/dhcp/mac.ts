// Ethernet addresses in the form the reservations use: six lower-case hex
// octets joined by colons.

const MAC_PATTERN = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;

/** Returns `text` in canonical form, or undefined when it is not a MAC address. */
export function normalizeMac(text: unknown): string | undefined {
  if (typeof text !== "string") return undefined;
  const lower = text.toLowerCase();
  return MAC_PATTERN.test(lower) ? lower : undefined;
}

/** Formats the first six bytes of chaddr. */
export function formatMac(chaddr: Buffer): string {
  return [...chaddr.subarray(0, 6)].map((octet) => octet.toString(16).padStart(2, "0")).join(":");
}

/** Returns whether the address can belong to one client: not all zeros and not a group (multicast or broadcast) address. */
export function isUnicastMac(chaddr: Buffer): boolean {
  const octets = chaddr.subarray(0, 6);
  return octets.length === 6 && (octets[0]! & 0x01) === 0 && octets.some((octet) => octet !== 0);
}
