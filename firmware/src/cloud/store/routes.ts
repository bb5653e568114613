// Persistent route ids, so an NMS and a TRS in separate processes agree on
// which two nodes a route joins, and a restarted cloud keeps the ids that
// nodes already use.
import { randomInt } from "node:crypto";
import type Database from "better-sqlite3";

export interface RouteRecord {
  routeId: number;
  nodeA: number;
  nodeB: number;
  createdAt: number;
}

interface RouteRow {
  route_id: number;
  node_a: number;
  node_b: number;
  created_at: number;
}

const toRecord = (r: RouteRow): RouteRecord => ({ routeId: r.route_id, nodeA: r.node_a, nodeB: r.node_b, createdAt: r.created_at });

export class RouteTable {
  private readonly byId: Database.Statement<[number], RouteRow>;
  private readonly byPair: Database.Statement<[number, number], RouteRow>;
  private readonly insert: Database.Statement<[number, number, number, number], void>;
  private readonly byNode: Database.Statement<[number, number], RouteRow>;
  private readonly create: Database.Transaction<(a: number, b: number, now: number) => { route: RouteRecord; created: boolean }>;

  constructor(db: Database.Database) {
    this.byId = db.prepare("SELECT * FROM routes WHERE route_id = ?");
    this.byPair = db.prepare("SELECT * FROM routes WHERE node_a = ? AND node_b = ?");
    this.byNode = db.prepare("SELECT * FROM routes WHERE node_a = ? OR node_b = ? ORDER BY route_id");
    this.insert = db.prepare("INSERT OR IGNORE INTO routes (route_id, node_a, node_b, created_at) VALUES (?, ?, ?, ?)");
    this.create = db.transaction((a: number, b: number, now: number) => {
      const existing = this.byPair.get(a, b);
      if (existing) return { route: toRecord(existing), created: false };
      for (;;) {
        // Random ids: a node cannot guess the route of another pair.
        const id = randomInt(1, 2 ** 32);
        if (this.byId.get(id)) continue;
        this.insert.run(id, a, b, now);
        return { route: toRecord(this.byId.get(id)!), created: true };
      }
    });
  }

  /**
   * Returns the pair's route, creating it on first use, and whether this call
   * created it. The order of the two ids does not matter.
   */
  routeFor(nodeX: number, nodeY: number, now = Date.now()): { route: RouteRecord; created: boolean } {
    return this.create.immediate(Math.min(nodeX, nodeY), Math.max(nodeX, nodeY), now);
  }

  /** Lists every route with nodeId at one end. */
  listForNode(nodeId: number): RouteRecord[] {
    return this.byNode.all(nodeId, nodeId).map(toRecord);
  }

  get(routeId: number): RouteRecord | undefined {
    const row = this.byId.get(routeId);
    return row && toRecord(row);
  }
}
