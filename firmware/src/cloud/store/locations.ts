// The NMS location registry: where each node can be reached, as it reported
// and as the NMS observed it.
import type Database from "better-sqlite3";
import { MAX_ENDPOINTS } from "../../protocol/endpoint.js";
import { logger } from "../../util/log.js";
import type { UnsyncedWrites } from "./db.js";
import { type Endpoint, formatEndpoint, normalizeAddress, parseEndpoint, validatePort } from "./endpoint.js";
import { StoreError, isSqliteError } from "./errors.js";

const log = logger("store");

/**
 * Maximum number of local addresses per registration. It equals the maximum
 * that one signaling message carries, and it keeps a row small.
 */
export const MAX_LOCAL_ADDRESSES = MAX_ENDPOINTS;

export interface LocationReport {
  /** Addresses the node found on its interfaces, as "address:port" (IPv6 in brackets). */
  localAddresses: string[];
  /** Source address of the registration datagram, as the NMS received it. */
  observedAddress: string;
  observedPort: number;
}

export interface LocationRecord {
  nodeId: number;
  /** Canonical "address:port" strings. */
  localAddresses: string[];
  observedAddress: string;
  observedPort: number;
  /** Family of the observed address. IPv4-mapped IPv6 addresses count as 4. */
  family: 4 | 6;
  /** True when the observed endpoint differs from every reported one, so a NAPT sits in the path. */
  napt: boolean;
  /** Milliseconds since the Unix epoch of the latest registration or keep-alive. */
  lastSeen: number;
  /** Milliseconds since the Unix epoch of the latest registration. */
  registeredAt: number;
}

interface LocationRow {
  node_id: number;
  local_addresses: string;
  observed_address: string;
  observed_port: number;
  family: 4 | 6;
  napt: number;
  last_seen: number;
  registered_at: number;
}

export class LocationRegistry {
  private readonly upsert: Database.Statement<[LocationRow], void>;
  private readonly byNode: Database.Statement<[number], LocationRow>;
  private readonly touchStatement: Database.Statement<[number, number], void>;
  private readonly flushTransaction: Database.Transaction<(entries: [number, number][]) => void>;
  /** Keep-alive times (ms) not yet written, by node id. */
  private readonly pendingLastSeen = new Map<number, number>();

  constructor(
    db: Database.Database,
    private readonly unsynced: UnsyncedWrites,
  ) {
    this.upsert = db.prepare(
      `INSERT INTO locations (node_id, local_addresses, observed_address, observed_port, family, napt,
                              last_seen, registered_at)
       VALUES (:node_id, :local_addresses, :observed_address, :observed_port, :family, :napt,
               :last_seen, :registered_at)
       ON CONFLICT (node_id) DO UPDATE SET
         local_addresses = excluded.local_addresses, observed_address = excluded.observed_address,
         observed_port = excluded.observed_port, family = excluded.family, napt = excluded.napt,
         last_seen = MAX(last_seen, excluded.last_seen), registered_at = excluded.registered_at`,
    );
    this.byNode = db.prepare("SELECT * FROM locations WHERE node_id = ?");
    // MAX keeps a late flush from moving last_seen back behind a registration.
    this.touchStatement = db.prepare("UPDATE locations SET last_seen = MAX(last_seen, ?) WHERE node_id = ?");
    this.flushTransaction = db.transaction((entries: [number, number][]) => {
      for (const [nodeId, lastSeen] of entries) this.touchStatement.run(lastSeen, nodeId);
    });
  }

  /**
   * Writes the location of node `nodeId` at once, replacing any earlier one.
   * Raises "invalid_argument" for a malformed or oversized report and "node_not_found".
   */
  register(nodeId: number, report: LocationReport, now: number): LocationRecord {
    if (report.localAddresses.length > MAX_LOCAL_ADDRESSES) {
      throw new StoreError(
        "invalid_argument",
        `Node ${nodeId} reported ${report.localAddresses.length} local addresses, more than the maximum of ${MAX_LOCAL_ADDRESSES}.`,
      );
    }
    const local = report.localAddresses.map(parseEndpoint);
    const observed: Endpoint = {
      ...normalizeAddress(report.observedAddress),
      port: validatePort(report.observedPort, `the observed endpoint of node ${nodeId}`),
    };
    const napt = !local.some((endpoint) => endpoint.address === observed.address && endpoint.port === observed.port);

    const row: LocationRow = {
      node_id: nodeId,
      local_addresses: JSON.stringify(local.map(formatEndpoint)),
      observed_address: observed.address,
      observed_port: observed.port,
      family: observed.family,
      napt: napt ? 1 : 0,
      last_seen: now,
      registered_at: now,
    };
    try {
      this.upsert.run(row);
    } catch (err) {
      if (isSqliteError(err, "SQLITE_CONSTRAINT_FOREIGNKEY")) {
        throw new StoreError("node_not_found", `Node ${nodeId} does not exist, so its location was not stored.`);
      }
      throw err;
    }
    log.debug({ node: nodeId, endpoint: formatEndpoint(observed), napt }, "registered location");
    return this.get(nodeId) as LocationRecord;
  }

  /**
   * Records a keep-alive in memory. The next flush writes it, so a crash loses
   * the keep-alives since the last flush. A node without a stored location is
   * ignored at flush time.
   */
  touch(nodeId: number, now: number): void {
    const pending = this.pendingLastSeen.get(nodeId);
    if (pending === undefined || now > pending) this.pendingLastSeen.set(nodeId, now);
  }

  /** Writes all pending keep-alives in one transaction. */
  flush(): void {
    if (this.pendingLastSeen.size === 0) return;
    const entries = [...this.pendingLastSeen.entries()];
    this.flushTransaction.immediate(entries);
    this.pendingLastSeen.clear();
  }

  /**
   * Writes at most `max` pending keep-alives, in the order they were first
   * buffered, in one transaction without an fsync, and returns how many are
   * still pending. The caller syncs the WAL afterwards (CloudStore does so off
   * the event loop). Until then a power loss may lose these times, which is
   * acceptable for soft state: the node sends the next keep-alive within an
   * interval and registers again after a restart of the NMS.
   */
  flushSome(max: number): number {
    const entries: [number, number][] = [];
    for (const entry of this.pendingLastSeen) {
      if (entries.length >= max) break;
      entries.push(entry);
    }
    if (entries.length === 0) return 0;
    this.unsynced.run(() => this.flushTransaction.immediate(entries));
    for (const [nodeId] of entries) this.pendingLastSeen.delete(nodeId);
    return this.pendingLastSeen.size;
  }

  /** Number of keep-alive times not yet written. */
  get pendingCount(): number {
    return this.pendingLastSeen.size;
  }

  /** Returns the location of node `nodeId` with pending keep-alives applied. */
  get(nodeId: number): LocationRecord | undefined {
    const row = this.byNode.get(nodeId);
    if (!row) return undefined;
    const pending = this.pendingLastSeen.get(nodeId) ?? 0;
    return {
      nodeId: row.node_id,
      localAddresses: JSON.parse(row.local_addresses) as string[],
      observedAddress: row.observed_address,
      observedPort: row.observed_port,
      family: row.family,
      napt: row.napt === 1,
      lastSeen: Math.max(row.last_seen, pending),
      registeredAt: row.registered_at,
    };
  }
}
