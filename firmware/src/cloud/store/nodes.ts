// The node registry: members of the overlay, adapters and the general nodes behind them.
import type Database from "better-sqlite3";
import { formatIPv4 } from "./ipv4.js";

/**
 * "node" runs the CYPHONIC daemon itself, "adapter" runs it on behalf of the
 * general (non-CYPHONIC) devices in its LAN, and "general" is such a device.
 */
export type NodeKind = "node" | "adapter" | "general";

export interface NodeRecord {
  id: number;
  name: string;
  fqdn: string;
  kind: NodeKind;
  /** X25519 static public key, null until the node redeems a provisioning token. */
  publicKey: Buffer | null;
  virtualIP: string;
  /** Adapter that a general node belongs to, null for other kinds. */
  adapterId: number | null;
  /** MAC address of a general node in lower-case colon form, null for other kinds. */
  mac: string | null;
  /** Milliseconds since the Unix epoch. */
  createdAt: number;
}

interface NodeRow {
  id: number;
  name: string;
  kind: NodeKind;
  public_key: Buffer | null;
  virtual_ip: number;
  adapter_id: number | null;
  mac: string | null;
  created_at: number;
}

export interface NewNode {
  name: string;
  kind: NodeKind;
  virtualIP: number;
  adapterId: number | null;
  mac: string | null;
  createdAt: number;
}

const COLUMNS = "id, name, kind, public_key, virtual_ip, adapter_id, mac, created_at";

/** Row access to the `nodes` table. Callers validate input and hold the transaction. */
export class NodeTable {
  private readonly insertStatement: Database.Statement<[NewNode], void>;
  private readonly byId: Database.Statement<[number], NodeRow>;
  private readonly byName: Database.Statement<[string], NodeRow>;
  private readonly byKey: Database.Statement<[Buffer], NodeRow>;
  private readonly byVirtualIP: Database.Statement<[number], NodeRow>;
  private readonly byAdapterMac: Database.Statement<[number, string], NodeRow>;
  private readonly all: Database.Statement<[], NodeRow>;
  private readonly setKeyStatement: Database.Statement<[Buffer, number], void>;
  private readonly deleteStatement: Database.Statement<[number], void>;

  constructor(
    db: Database.Database,
    private readonly overlayDomain: string,
  ) {
    this.insertStatement = db.prepare(
      `INSERT INTO nodes (name, kind, virtual_ip, adapter_id, mac, created_at)
       VALUES (:name, :kind, :virtualIP, :adapterId, :mac, :createdAt)`,
    );
    this.byId = db.prepare(`SELECT ${COLUMNS} FROM nodes WHERE id = ?`);
    this.byName = db.prepare(`SELECT ${COLUMNS} FROM nodes WHERE name = ?`);
    this.byKey = db.prepare(`SELECT ${COLUMNS} FROM nodes WHERE public_key = ?`);
    this.byVirtualIP = db.prepare(`SELECT ${COLUMNS} FROM nodes WHERE virtual_ip = ?`);
    this.byAdapterMac = db.prepare(`SELECT ${COLUMNS} FROM nodes WHERE adapter_id = ? AND mac = ?`);
    this.all = db.prepare(`SELECT ${COLUMNS} FROM nodes ORDER BY id`);
    this.setKeyStatement = db.prepare("UPDATE nodes SET public_key = ? WHERE id = ?");
    this.deleteStatement = db.prepare("DELETE FROM nodes WHERE id = ?");
  }

  /** Inserts a node and returns its id. */
  insert(node: NewNode): number {
    return Number(this.insertStatement.run(node).lastInsertRowid);
  }

  getById(id: number): NodeRecord | undefined {
    return this.toRecord(this.byId.get(id));
  }

  getByName(name: string): NodeRecord | undefined {
    return this.toRecord(this.byName.get(name));
  }

  getByPublicKey(key: Buffer): NodeRecord | undefined {
    return this.toRecord(this.byKey.get(key));
  }

  getByVirtualIP(address: number): NodeRecord | undefined {
    return this.toRecord(this.byVirtualIP.get(address));
  }

  getByAdapterMac(adapterId: number, mac: string): NodeRecord | undefined {
    return this.toRecord(this.byAdapterMac.get(adapterId, mac));
  }

  /** Returns every node in ascending id order. */
  list(): NodeRecord[] {
    return this.all.all().map((row) => this.toRecord(row) as NodeRecord);
  }

  setPublicKey(id: number, key: Buffer): void {
    this.setKeyStatement.run(key, id);
  }

  /**
   * Deletes a node. The foreign keys delete its tokens, its location and, for
   * an adapter, its general nodes with their rows too. Returns whether a row existed.
   */
  delete(id: number): boolean {
    return this.deleteStatement.run(id).changes > 0;
  }

  private toRecord(row: NodeRow | undefined): NodeRecord | undefined {
    if (!row) return undefined;
    return {
      id: row.id,
      name: row.name,
      fqdn: `${row.name}.${this.overlayDomain}`,
      kind: row.kind,
      publicKey: row.public_key,
      virtualIP: formatIPv4(row.virtual_ip),
      adapterId: row.adapter_id,
      mac: row.mac,
      createdAt: row.created_at,
    };
  }
}
