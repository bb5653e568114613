// The persistent state of the AS and the NMS: nodes, provisioning tokens,
// virtual addresses and locations, in one SQLite database.
import type Database from "better-sqlite3";
import { logger } from "../../util/log.js";
import { UnsyncedWrites, openDatabase } from "./db.js";
import { StoreError } from "./errors.js";
import { parseIPv4 } from "./ipv4.js";
import { type LocationRecord, LocationRegistry, type LocationReport } from "./locations.js";
import { type NodeKind, type NodeRecord, NodeTable } from "./nodes.js";
import { AddressPool, type PoolConfig } from "./pool.js";
import { type RouteRecord, RouteTable } from "./routes.js";
import { type IssuedToken, TokenStore } from "./tokens.js";
import { decodePublicKey, normalizeMac, normalizeOverlayDomain, validateNodeName } from "./validate.js";
import { WalSync } from "./wal-sync.js";

const log = logger("store");

export interface CloudStoreConfig {
  /** Domain appended to node names to form FQDNs, such as "overlay.example". */
  overlayDomain: string;
  pool: PoolConfig;
  /** Interval in ms between writes of buffered keep-alive times. Defaults to 5000. */
  keepAliveFlushMs?: number;
}

export interface GeneralNodeOptions {
  adapterId: number;
  mac: string;
}

const DEFAULT_KEEP_ALIVE_FLUSH_MS = 5_000;
/**
 * Keep-alive times written per transaction. A flush of 10,000 times in one
 * transaction held the event loop for 11 to 20 ms (scripts/bench, cloud phase,
 * 2-core VM), so a flush writes batches of this size and lets the event loop
 * run between them. A batch of 250 took 0.26 ms at the median, measured alone
 * on that VM.
 */
const KEEP_ALIVE_FLUSH_BATCH = 250;

export class CloudStore {
  readonly overlayDomain: string;
  private readonly db: Database.Database;
  private readonly nodes: NodeTable;
  private readonly pool: AddressPool;
  private readonly tokens: TokenStore;
  private readonly locations: LocationRegistry;
  private readonly routes: RouteTable;
  private readonly createNodeTransaction: Database.Transaction<
    (name: string, kind: NodeKind, general: GeneralNodeOptions | undefined, now: number) => NodeRecord
  >;
  private readonly flushTimer: NodeJS.Timeout;
  private readonly walSync: WalSync;
  private readonly unsynced: UnsyncedWrites;
  private flushing = false;
  private closed = false;

  /** Opens the database at `path`, creating it and its directory when missing. */
  constructor(path: string, config: CloudStoreConfig) {
    this.overlayDomain = normalizeOverlayDomain(config.overlayDomain);
    this.db = openDatabase(path);
    try {
      this.nodes = new NodeTable(this.db, this.overlayDomain);
      this.pool = new AddressPool(this.db, config.pool);
      this.tokens = new TokenStore(this.db, this.nodes);
      this.unsynced = new UnsyncedWrites(this.db);
      this.locations = new LocationRegistry(this.db, this.unsynced);
      this.routes = new RouteTable(this.db);
      // openDatabase has run a transaction in WAL mode, so SQLite has created the WAL file.
      this.walSync = new WalSync(this.db.memory ? null : `${this.db.name}-wal`);
    } catch (err) {
      this.db.close();
      throw err;
    }
    this.createNodeTransaction = this.db.transaction(this.createNodeInTransaction.bind(this));

    const flushMs = config.keepAliveFlushMs ?? DEFAULT_KEEP_ALIVE_FLUSH_MS;
    this.flushTimer = setInterval(() => this.startKeepAliveFlush(), flushMs);
    this.flushTimer.unref();
  }

  /**
   * Creates a node with the lowest free virtual address. A "general" node
   * needs `general` (prefer addGeneralNode), and other kinds must not have it.
   * Raises "invalid_name", "name_in_use", "pool_exhausted" and, for general
   * nodes, "invalid_mac", "mac_in_use", "node_not_found" or "not_an_adapter".
   */
  createNode(name: string, kind: NodeKind, general?: GeneralNodeOptions, now = Date.now()): NodeRecord {
    validateNodeName(name);
    if ((kind === "general") !== (general !== undefined)) {
      throw new StoreError(
        "invalid_argument",
        `Node "${name}" has kind ${kind}. Kind general requires an adapter id and a MAC address, and other kinds must not have them.`,
      );
    }
    const normalized = general && { adapterId: general.adapterId, mac: normalizeMac(general.mac) };
    return this.createNodeTransaction.immediate(name, kind, normalized, now);
  }

  /** Creates a general node, a non-CYPHONIC device with MAC `mac` behind adapter `adapterId`. */
  addGeneralNode(adapterId: number, mac: string, name: string, now = Date.now()): NodeRecord {
    return this.createNode(name, "general", { adapterId, mac }, now);
  }

  /** Returns every node in ascending id order. */
  listNodes(): NodeRecord[] {
    return this.nodes.list();
  }

  /**
   * Deletes a node with its tokens and location, which frees its virtual
   * address. Deleting an adapter also deletes its general nodes. Raises "node_not_found".
   */
  deleteNode(id: number): void {
    const node = this.nodes.getById(id);
    if (!node || !this.nodes.delete(id)) throw new StoreError("node_not_found", `Node ${id} does not exist.`);
    log.info({ node: id, fqdn: node.fqdn, virtualIP: node.virtualIP }, "deleted node");
  }

  getNodeById(id: number): NodeRecord | undefined {
    return this.nodes.getById(id);
  }

  /** Looks a node up by its 32-byte public key, raw or base64. Returns undefined for a malformed key. */
  getNodeByPublicKey(publicKey: Uint8Array | string): NodeRecord | undefined {
    const key = decodePublicKey(publicKey);
    return key && this.nodes.getByPublicKey(key);
  }

  /** Looks a node up by FQDN, ignoring case and one trailing dot. */
  getNodeByFqdn(fqdn: string): NodeRecord | undefined {
    const suffix = `.${this.overlayDomain}`;
    const lower = fqdn.toLowerCase().replace(/\.$/, "");
    if (!lower.endsWith(suffix)) return undefined;
    const name = lower.slice(0, -suffix.length);
    return name.includes(".") ? undefined : this.nodes.getByName(name);
  }

  /** Looks a node up by its virtual IPv4 address in dotted-quad form. */
  getNodeByVirtualIP(address: string): NodeRecord | undefined {
    const value = parseIPv4(address);
    return value === undefined ? undefined : this.nodes.getByVirtualIP(value);
  }

  /** Creates a one-time provisioning token for node `nodeId`, accepted for `ttlMs` ms. */
  createToken(nodeId: number, ttlMs: number, now = Date.now()): IssuedToken {
    return this.tokens.issue(nodeId, ttlMs, now);
  }

  /** See TokenStore.redeem for the rules and error codes. */
  redeemToken(secret: string, publicKey: Uint8Array | string, now = Date.now()): NodeRecord {
    return this.tokens.redeem(secret, publicKey, now);
  }

  /** Writes the location that node `nodeId` registered with the NMS. */
  registerLocation(nodeId: number, report: LocationReport, now = Date.now()): LocationRecord {
    return this.locations.register(nodeId, report, now);
  }

  /** Records a keep-alive from node `nodeId`. It is written within keepAliveFlushMs. */
  touchLocation(nodeId: number, now = Date.now()): void {
    this.locations.touch(nodeId, now);
  }

  getLocation(nodeId: number): LocationRecord | undefined {
    return this.locations.get(nodeId);
  }

  /** Returns the general nodes registered to adapter `adapterId`, in ascending id order. */
  listGeneralNodes(adapterId: number): NodeRecord[] {
    return this.nodes.list().filter((n) => n.kind === "general" && n.adapterId === adapterId);
  }

  /**
   * Binds the key an adapter generated for one of its general nodes. Only the
   * owning adapter may do so; it may replace an earlier key (after it lost its
   * key store, say). Raises "node_not_found", "not_owner" or "key_in_use".
   */
  bindGeneralNodeKey(adapterId: number, nodeId: number, publicKey: Buffer): NodeRecord {
    const node = this.nodes.getById(nodeId);
    if (!node || node.kind !== "general") throw new StoreError("node_not_found", `General node ${nodeId} does not exist.`);
    if (node.adapterId !== adapterId) throw new StoreError("not_owner", `General node ${nodeId} belongs to another adapter.`);
    const holder = this.nodes.getByPublicKey(publicKey);
    if (holder && holder.id !== nodeId) throw new StoreError("key_in_use", `Public key is already bound to node ${holder.id}.`);
    this.nodes.setPublicKey(nodeId, publicKey);
    log.info({ node: nodeId, adapter: adapterId }, "general node key bound");
    return this.nodes.getById(nodeId)!;
  }

  /**
   * Returns the route between two nodes, created with a random id on first
   * use. It resolves once the route is on disk, because nodes keep the id and
   * the TRS relays only for stored routes, so a route must not be lost after
   * it was handed out. The commit does not fsync on the event loop: WalSync
   * syncs the WAL in the thread pool and shares one fsync among the routes
   * created meanwhile. Rejects when the write or the fsync fails.
   */
  async routeFor(nodeX: number, nodeY: number, now = Date.now()): Promise<RouteRecord> {
    const { route, created } = this.unsynced.run(() => this.routes.routeFor(nodeX, nodeY, now));
    if (created) this.walSync.noteCommit();
    // A route found here may come from a commit whose fsync is still running, so this waits for that too.
    await this.walSync.durable();
    return route;
  }

  /** Returns every route with nodeId at one end, once every route created so far is on disk. */
  async routesOf(nodeId: number): Promise<RouteRecord[]> {
    await this.walSync.durable();
    return this.routes.listForNode(nodeId);
  }

  getRoute(routeId: number): RouteRecord | undefined {
    return this.routes.get(routeId);
  }

  /** Writes buffered keep-alive times now. Raises on a database error. */
  flushKeepAlives(): void {
    this.locations.flush();
  }

  /**
   * Writes buffered keep-alive times and closes the database. Closing the last
   * connection checkpoints the WAL into the database file and syncs it.
   */
  close(): void {
    clearInterval(this.flushTimer);
    this.closed = true;
    try {
      this.locations.flush();
    } finally {
      this.db.close();
      this.walSync.close();
    }
  }

  private createNodeInTransaction(
    name: string,
    kind: NodeKind,
    general: GeneralNodeOptions | undefined,
    now: number,
  ): NodeRecord {
    if (this.nodes.getByName(name)) throw new StoreError("name_in_use", `Node name "${name}" is already in use.`);
    if (general) this.checkGeneralNode(general);

    const virtualIP = this.pool.allocate();
    const id = this.nodes.insert({
      name,
      kind,
      virtualIP,
      adapterId: general?.adapterId ?? null,
      mac: general?.mac ?? null,
      createdAt: now,
    });
    const node = this.nodes.getById(id) as NodeRecord;
    log.info({ node: id, fqdn: node.fqdn, virtualIP: node.virtualIP, kind }, "created node");
    return node;
  }

  private checkGeneralNode({ adapterId, mac }: GeneralNodeOptions): void {
    const adapter = this.nodes.getById(adapterId);
    if (!adapter) throw new StoreError("node_not_found", `Adapter ${adapterId} does not exist.`);
    if (adapter.kind !== "adapter") {
      throw new StoreError("not_an_adapter", `Node ${adapterId} is of kind ${adapter.kind}, not adapter.`);
    }
    if (this.nodes.getByAdapterMac(adapterId, mac)) {
      throw new StoreError("mac_in_use", `Adapter ${adapterId} already has a general node with MAC ${mac}.`);
    }
  }

  /**
   * Writes the buffered keep-alive times in batches. Each batch is committed
   * without an fsync on the event loop and synced by WalSync in the thread
   * pool before the next batch, so datagrams are handled meanwhile and at most
   * one batch of unsynced pages waits in the WAL. Otherwise the next route's
   * fsync would also have to write up to a whole flush (about 1 MB for
   * 10,000 nodes) and the route response would wait for it. A pass writes at
   * most as many batches as were pending when it started, so keep-alives
   * that arrive meanwhile cannot stretch it, and what remains waits for the
   * next pass.
   */
  private startKeepAliveFlush(): void {
    if (this.flushing) return;
    this.flushing = true;
    let batches = Math.ceil(this.locations.pendingCount / KEEP_ALIVE_FLUSH_BATCH);
    const writeBatch = (): void => {
      if (this.closed || batches-- <= 0) {
        this.flushing = false;
        return;
      }
      try {
        if (this.locations.flushSome(KEEP_ALIVE_FLUSH_BATCH) === 0) batches = 0;
        this.walSync.noteCommit();
      } catch (err) {
        // The timer has no caller to raise to, so it logs and keeps the entries for the next pass.
        log.error({ err }, "failed to write keep-alive times, retrying at the next flush");
        this.flushing = false;
        return;
      }
      this.walSync.durable().then(writeBatch, (err: unknown) => {
        // The times are in the WAL, and the next synced commit or checkpoint writes them to disk.
        log.error({ err }, "failed to sync keep-alive times");
        this.flushing = false;
      });
    };
    writeBatch();
  }
}
