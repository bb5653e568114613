// IPv4 addresses as unsigned 32-bit integers, the form the store keeps them in.

const DOTTED_QUAD = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/**
 * Parses dotted-quad notation into an unsigned 32-bit integer. Returns
 * undefined for anything else, including octets with leading zeros, which some
 * parsers read as octal.
 */
export function parseIPv4(text: string): number | undefined {
  const match = DOTTED_QUAD.exec(text);
  if (!match) return undefined;
  let value = 0;
  for (const octetText of match.slice(1)) {
    if (octetText.length > 1 && octetText.startsWith("0")) return undefined;
    const octet = Number(octetText);
    if (octet > 255) return undefined;
    value = value * 256 + octet;
  }
  return value;
}

export function formatIPv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff].join(".");
}
