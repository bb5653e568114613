// Leases handed out and addresses declined, kept in memory and saved as JSON
// with an atomic replace (write, fsync, rename, fsync the directory), so a
// restart or a power cut leaves the previous or the new table, never a mix.
import fs from "node:fs";
import net from "node:net";
import { z } from "zod";
import { writeFileAtomic } from "../../util/files.js";
import { normalizeMac } from "./mac.js";

export interface LeaseRecord {
  mac: string;
  address: string;
  /** Milliseconds since the Unix epoch. */
  expiresMs: number;
}

export interface DeclineRecord {
  mac: string;
  address: string;
  /** End of the hold, in milliseconds since the Unix epoch. */
  untilMs: number;
}

const FILE_VERSION = 1;

const macSchema = z.string().refine((text) => normalizeMac(text) === text, "expected a lower-case MAC address");
const addressSchema = z.string().refine((text) => net.isIPv4(text), "expected an IPv4 address");
const timeSchema = z.number().int().nonnegative();

const fileSchema = z.object({
  version: z.literal(FILE_VERSION),
  leases: z.array(z.object({ mac: macSchema, address: addressSchema, expiresMs: timeSchema })),
  declined: z.array(z.object({ mac: macSchema, address: addressSchema, untilMs: timeSchema })),
});

export interface LoadedLeaseTable {
  table: LeaseTable;
  /** Set when the file existed but was invalid: it was renamed to `movedTo` and the table starts empty. */
  invalid?: { error: Error; movedTo: string };
}

/**
 * Loads the table from `file`. A missing file gives an empty table. An invalid
 * file is renamed to "<file>.invalid", so the next save cannot overwrite what
 * an operator may want to inspect. Throws when the file cannot be read.
 */
export function loadLeaseTable(file: string): LoadedLeaseTable {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { table: new LeaseTable(file) };
    throw err;
  }
  const table = new LeaseTable(file);
  try {
    const doc = fileSchema.parse(JSON.parse(text));
    for (const lease of doc.leases) table.bind(lease.mac, lease.address, lease.expiresMs);
    for (const decline of doc.declined) table.decline(decline.mac, decline.address, decline.untilMs);
    return { table };
  } catch (err) {
    const movedTo = `${file}.invalid`;
    fs.renameSync(file, movedTo);
    return { table: new LeaseTable(file), invalid: { error: err as Error, movedTo } };
  }
}

export class LeaseTable {
  private readonly leasesByMac = new Map<string, LeaseRecord>();
  private readonly declinedByAddress = new Map<string, DeclineRecord>();

  constructor(readonly file: string) {}

  /** Returns the lease of `mac` when it has not expired at `nowMs`. */
  get(mac: string, nowMs: number): LeaseRecord | undefined {
    const lease = this.leasesByMac.get(mac);
    return lease && lease.expiresMs > nowMs ? lease : undefined;
  }

  /**
   * Stores a lease, replacing the client's earlier one. Returns the earlier
   * lease and the leases this one ended: the client's lease of another address
   * and other clients' leases of this address, because one address belongs to
   * one client.
   */
  bind(mac: string, address: string, expiresMs: number): { previous: LeaseRecord | undefined; ended: LeaseRecord[] } {
    const previous = this.leasesByMac.get(mac);
    const ended: LeaseRecord[] = [];
    if (previous && previous.address !== address) ended.push(previous);
    for (const [otherMac, other] of this.leasesByMac) {
      if (other.address === address && otherMac !== mac) {
        this.leasesByMac.delete(otherMac);
        ended.push(other);
      }
    }
    this.leasesByMac.set(mac, { mac, address, expiresMs });
    this.declinedByAddress.delete(address);
    return { previous, ended };
  }

  /** Removes the lease of `mac` and returns it. */
  release(mac: string): LeaseRecord | undefined {
    const lease = this.leasesByMac.get(mac);
    this.leasesByMac.delete(mac);
    return lease;
  }

  /** Withholds `address` until `untilMs` and ends the lease of `mac` on it. */
  decline(mac: string, address: string, untilMs: number): void {
    if (this.leasesByMac.get(mac)?.address === address) this.leasesByMac.delete(mac);
    this.declinedByAddress.set(address, { mac, address, untilMs });
  }

  isDeclined(address: string, nowMs: number): boolean {
    const hold = this.declinedByAddress.get(address);
    return hold !== undefined && hold.untilMs > nowMs;
  }

  /** Removes leases and holds that ended at or before `nowMs` and returns the removed leases. */
  expire(nowMs: number): LeaseRecord[] {
    const expired: LeaseRecord[] = [];
    for (const [mac, lease] of this.leasesByMac) {
      if (lease.expiresMs <= nowMs) {
        this.leasesByMac.delete(mac);
        expired.push(lease);
      }
    }
    for (const [address, hold] of this.declinedByAddress) {
      if (hold.untilMs <= nowMs) this.declinedByAddress.delete(address);
    }
    return expired;
  }

  /** Returns the earliest end of a lease or hold, or undefined for an empty table. */
  nextDeadlineMs(): number | undefined {
    let next: number | undefined;
    for (const lease of this.leasesByMac.values()) next = next === undefined ? lease.expiresMs : Math.min(next, lease.expiresMs);
    for (const hold of this.declinedByAddress.values()) next = next === undefined ? hold.untilMs : Math.min(next, hold.untilMs);
    return next;
  }

  /** Returns the leases that have not expired at `nowMs`, sorted by MAC. */
  list(nowMs: number): LeaseRecord[] {
    return [...this.leasesByMac.values()]
      .filter((lease) => lease.expiresMs > nowMs)
      .sort((a, b) => a.mac.localeCompare(b.mac))
      .map((lease) => ({ ...lease }));
  }

  /** Writes the table to its file atomically. Throws when the write fails; the table in memory stays as it is. */
  save(): void {
    const doc = {
      version: FILE_VERSION,
      leases: [...this.leasesByMac.values()],
      declined: [...this.declinedByAddress.values()],
    };
    writeFileAtomic(this.file, JSON.stringify(doc, null, 2) + "\n", 0o600);
  }
}
