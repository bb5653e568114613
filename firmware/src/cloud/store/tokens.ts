// One-time provisioning tokens. A node proves it is the one the operator
// created by presenting the token's secret together with its public key.
import { createHash, randomBytes } from "node:crypto";
import type Database from "better-sqlite3";
import { logger } from "../../util/log.js";
import { StoreError } from "./errors.js";
import type { NodeRecord, NodeTable } from "./nodes.js";
import { requirePublicKey } from "./validate.js";

const log = logger("store");

/** Random bytes in a provisioning secret. */
const SECRET_BYTES = 32;

export interface IssuedToken {
  /** Base64url text of SECRET_BYTES random bytes. The store keeps only its SHA-256 hash. */
  secret: string;
  /** First millisecond since the Unix epoch at which the token is no longer accepted. */
  expiresAt: number;
}

interface TokenRow {
  node_id: number;
  expires_at: number;
  redeemed_by_key: Buffer | null;
}

interface NewToken {
  hash: Buffer;
  nodeId: number;
  createdAt: number;
  expiresAt: number;
}

// The lookup is by hash, so its timing depends on the hash and leaks nothing
// useful about the secret.
function hashSecret(secret: string): Buffer {
  return createHash("sha256").update(secret, "utf8").digest();
}

export class TokenStore {
  private readonly insertStatement: Database.Statement<[NewToken], void>;
  private readonly byHash: Database.Statement<[Buffer], TokenRow>;
  private readonly markRedeemed: Database.Statement<[number, Buffer, Buffer], void>;
  private readonly issueTransaction: (nodeId: number, ttlMs: number, now: number) => IssuedToken;
  private readonly redeemTransaction: (secret: string, key: Buffer, now: number) => NodeRecord;

  constructor(
    db: Database.Database,
    private readonly nodes: NodeTable,
  ) {
    this.insertStatement = db.prepare(
      `INSERT INTO tokens (hash, node_id, created_at, expires_at)
       VALUES (:hash, :nodeId, :createdAt, :expiresAt)`,
    );
    this.byHash = db.prepare("SELECT node_id, expires_at, redeemed_by_key FROM tokens WHERE hash = ?");
    this.markRedeemed = db.prepare("UPDATE tokens SET redeemed_at = ?, redeemed_by_key = ? WHERE hash = ?");
    const issue = db.transaction(this.issueInTransaction.bind(this));
    const redeem = db.transaction(this.redeemInTransaction.bind(this));
    // IMMEDIATE takes the write lock before the checks, so another process
    // cannot redeem the same token between the check and the update.
    this.issueTransaction = (...args) => issue.immediate(...args);
    this.redeemTransaction = (...args) => redeem.immediate(...args);
  }

  /** Creates a token for node `nodeId` that is accepted for `ttlMs` from `now` (ms since the epoch). */
  issue(nodeId: number, ttlMs: number, now: number): IssuedToken {
    if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0) {
      throw new StoreError("invalid_argument", `Token lifetime ${ttlMs} ms is invalid. Give a positive integer.`);
    }
    return this.issueTransaction(nodeId, ttlMs, now);
  }

  /**
   * Redeems the token with `secret` and binds `publicKey` to its node, all in
   * one transaction. Returns the node with its key set.
   *
   * A repeated redemption with the same key succeeds again, even after expiry,
   * so that a device that crashed after redeeming can retry. It raises
   * "token_reused" if a later token has since bound another key to the node.
   * Raises "token_invalid", "token_expired" (when `now` >= expiresAt),
   * "token_reused", "key_in_use" or "invalid_key".
   */
  redeem(secret: string, publicKey: Uint8Array | string, now: number): NodeRecord {
    const key = requirePublicKey(publicKey);
    return this.redeemTransaction(secret, key, now);
  }

  private issueInTransaction(nodeId: number, ttlMs: number, now: number): IssuedToken {
    const node = this.nodes.getById(nodeId);
    if (!node) throw new StoreError("node_not_found", `Node ${nodeId} does not exist.`);
    if (node.kind === "general") {
      throw new StoreError(
        "invalid_kind",
        `Node ${nodeId} is a general node. It has no key of its own, so it cannot redeem a token.`,
      );
    }
    const secret = randomBytes(SECRET_BYTES).toString("base64url");
    const expiresAt = now + ttlMs;
    this.insertStatement.run({ hash: hashSecret(secret), nodeId, createdAt: now, expiresAt });
    log.info({ node: nodeId, expiresAt }, "issued provisioning token");
    return { secret, expiresAt };
  }

  private redeemInTransaction(secret: string, key: Buffer, now: number): NodeRecord {
    const hash = hashSecret(secret);
    const token = this.byHash.get(hash);
    if (!token) throw new StoreError("token_invalid", "Provisioning token not found. Check the secret or issue a new token.");

    const node = this.nodes.getById(token.node_id) as NodeRecord;
    if (token.redeemed_by_key) {
      if (!token.redeemed_by_key.equals(key)) {
        throw new StoreError(
          "token_reused",
          `Provisioning token of node ${node.id} was already redeemed with a different key.`,
        );
      }
      if (!node.publicKey?.equals(key)) {
        throw new StoreError(
          "token_reused",
          `Provisioning token of node ${node.id} was redeemed with this key, but a later token replaced the key.`,
        );
      }
      return node;
    }
    if (now >= token.expires_at) {
      throw new StoreError(
        "token_expired",
        `Provisioning token of node ${node.id} expired at ${token.expires_at} ms since the epoch. Issue a new token.`,
      );
    }
    const holder = this.nodes.getByPublicKey(key);
    if (holder && holder.id !== node.id) {
      throw new StoreError("key_in_use", `Public key is already bound to node ${holder.id}. Generate a new key pair for node ${node.id}.`);
    }

    this.markRedeemed.run(now, key, hash);
    this.nodes.setPublicKey(node.id, key);
    log.info({ node: node.id, fqdn: node.fqdn }, "redeemed provisioning token");
    return { ...node, publicKey: key };
  }
}
