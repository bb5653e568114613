// Opens the SQLite database of the cloud services and brings its schema up to date.
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { logger } from "../../util/log.js";
import { StoreError } from "./errors.js";
import { MIGRATIONS } from "./schema.js";

const log = logger("store");

/** Maximum time in ms that a statement waits for another process's write lock. */
const BUSY_TIMEOUT_MS = 5_000;

/**
 * Opens (creating when missing) the database at `path` and applies pending
 * migrations. A missing parent directory is created with mode 0700, because the
 * database contains token hashes and the node registry. An existing directory
 * keeps its mode. The path ":memory:" opens a private in-memory database.
 */
export function openDatabase(path: string): Database.Database {
  const inMemory = path === ":memory:";
  if (!inMemory) mkdirSync(dirname(path), { recursive: true, mode: 0o700 });

  const db = new Database(path, { timeout: BUSY_TIMEOUT_MS });
  try {
    configure(db, inMemory);
    migrate(db, path);
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}

/**
 * Runs writes with synchronous = NORMAL and restores FULL after each. Their
 * commits reach the WAL without an fsync, so they survive a crash of this
 * process but not a power loss until the WAL is synced (by WalSync, a later
 * FULL commit or a checkpoint). Use it for writes that are synced off the
 * event loop or that may be lost.
 */
export class UnsyncedWrites {
  private readonly normal: Database.Statement;
  private readonly full: Database.Statement;

  constructor(db: Database.Database) {
    // Prepared once: Database.pragma() compiles its statement on every call.
    this.normal = db.prepare("PRAGMA synchronous = NORMAL");
    this.full = db.prepare("PRAGMA synchronous = FULL");
  }

  run<T>(write: () => T): T {
    this.normal.run();
    try {
      return write();
    } finally {
      this.full.run();
    }
  }
}

function configure(db: Database.Database, inMemory: boolean): void {
  // WAL lets the AS and NMS read while the other writes. It needs shared
  // memory, so it fails on some network file systems, and then SQLite keeps
  // the old journal mode and returns it.
  const mode = db.pragma("journal_mode = WAL", { simple: true });
  if (!inMemory && mode !== "wal") {
    throw new StoreError(
      "invalid_config",
      `Failed to enable WAL journal mode on ${db.name} (SQLite kept "${String(mode)}"). ` +
        "Put the database on a local file system.",
    );
  }
  // FULL syncs the WAL on every commit. NORMAL would be faster but can lose
  // the last commits on power loss, and a device whose redemption succeeded
  // must find its key bound after a restart.
  db.pragma("synchronous = FULL");
  db.pragma("foreign_keys = ON");
}

function migrate(db: Database.Database, path: string): void {
  const target = MIGRATIONS.length;
  const apply = db.transaction((): number => {
    const from = Number(db.pragma("user_version", { simple: true }));
    if (from > target) {
      throw new StoreError(
        "schema_too_new",
        `Database ${path} has schema version ${from}, but this build supports at most ${target}. ` +
          "Run a newer build or restore a backup.",
      );
    }
    for (let version = from; version < target; version++) {
      db.exec(MIGRATIONS[version] as string);
    }
    db.pragma(`user_version = ${target}`);
    return from;
  });
  // IMMEDIATE takes the write lock before reading user_version, so two
  // processes opening a new database cannot both run the same migration.
  const from = apply.immediate();
  if (from < target) log.info({ path, from, to: target }, "migrated database schema");
}
