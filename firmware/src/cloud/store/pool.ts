// The pool of virtual IPv4 addresses that the AS hands out to nodes.
import type Database from "better-sqlite3";
import { StoreError } from "./errors.js";
import { formatIPv4, parseIPv4 } from "./ipv4.js";

export interface PoolConfig {
  /** Pool in CIDR notation, such as "100.64.0.0/16". Host bits must be zero. */
  cidr: string;
  /** Addresses inside the pool that are never allocated, such as gateways. */
  reserved: string[];
}

/** Usable host addresses of a prefix, which excludes its network and broadcast addresses. */
interface HostRange {
  first: number;
  last: number;
}

// The lowest free address is either the first host address or one above a
// taken address, because if it is f > first, then f - 1 is in the pool and
// taken. So the minimum over those candidates is exact, and a full pool
// returns NULL after one pass over the taken addresses.
const LOWEST_FREE_SQL = `
  WITH taken (ip) AS (
    SELECT virtual_ip FROM nodes WHERE virtual_ip BETWEEN :first AND :last
    UNION
    SELECT value FROM json_each(:reserved)
  )
  SELECT MIN(candidate) AS ip
  FROM (SELECT :first AS candidate UNION ALL SELECT ip + 1 FROM taken)
  WHERE candidate BETWEEN :first AND :last
    AND candidate NOT IN (SELECT ip FROM taken)
`;

export class AddressPool {
  private readonly range: HostRange;
  private readonly reservedJson: string;
  private readonly lowestFree: Database.Statement<[{ first: number; last: number; reserved: string }], { ip: number | null }>;

  /** Validates `config` and prepares the allocation query against the `nodes` table of `db`. */
  constructor(db: Database.Database, readonly config: PoolConfig) {
    this.range = parseHostRange(config.cidr);
    this.reservedJson = JSON.stringify(config.reserved.map((text) => this.parseReserved(text)));
    this.lowestFree = db.prepare(LOWEST_FREE_SQL);
  }

  /**
   * Returns the lowest pool address that is neither reserved nor held by a
   * node. Run it in the same transaction as the insert that takes the address.
   */
  allocate(): number {
    const row = this.lowestFree.get({ ...this.range, reserved: this.reservedJson });
    if (row?.ip == null) {
      throw new StoreError(
        "pool_exhausted",
        `The virtual address pool ${this.config.cidr} has no free address. ` +
          "Delete unused nodes or configure a larger pool.",
      );
    }
    return row.ip;
  }

  private parseReserved(text: string): number {
    const value = parseIPv4(text);
    if (value === undefined) {
      throw new StoreError("invalid_config", `Reserved address "${text}" is not a dotted-quad IPv4 address.`);
    }
    if (value < this.range.first || value > this.range.last) {
      throw new StoreError(
        "invalid_config",
        `Reserved address ${text} is not a host address of the pool ${this.config.cidr}.`,
      );
    }
    return value;
  }
}

function parseHostRange(cidr: string): HostRange {
  const [addressText = "", prefixText = ""] = cidr.split("/");
  const network = parseIPv4(addressText);
  const prefixLength = /^\d{1,2}$/.test(prefixText) ? Number(prefixText) : NaN;
  // A /31 or /32 has no address left once the network and broadcast addresses
  // are excluded. RFC 3021 point-to-point /31 use does not apply to a pool.
  if (network === undefined || !(prefixLength >= 0 && prefixLength <= 30)) {
    throw new StoreError(
      "invalid_config",
      `Pool "${cidr}" is not an IPv4 prefix of length 0 to 30 in CIDR notation, such as "100.64.0.0/16".`,
    );
  }
  const size = 2 ** (32 - prefixLength);
  if (network % size !== 0) {
    throw new StoreError(
      "invalid_config",
      `Pool "${cidr}" has host bits set. Its network address is ${formatIPv4(network - (network % size))}.`,
    );
  }
  return { first: network + 1, last: network + size - 2 };
}
