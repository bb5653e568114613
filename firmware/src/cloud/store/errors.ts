// Errors raised by the cloud store. Callers switch on `code`, which is stable
// across releases, and show `message` to operators.
import Database from "better-sqlite3";

export type StoreErrorCode =
  | "invalid_config"
  | "invalid_argument"
  | "invalid_name"
  | "invalid_mac"
  | "invalid_key"
  | "invalid_kind"
  | "name_in_use"
  | "mac_in_use"
  | "key_in_use"
  | "node_not_found"
  | "not_an_adapter"
  | "not_owner"
  | "pool_exhausted"
  | "token_invalid"
  | "token_expired"
  | "token_reused"
  | "schema_too_new";

export class StoreError extends Error {
  override readonly name = "StoreError";

  constructor(
    readonly code: StoreErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** Returns whether `err` is an SQLite error with the extended result code `sqliteCode`. */
export function isSqliteError(err: unknown, sqliteCode: string): boolean {
  return err instanceof Database.SqliteError && err.code === sqliteCode;
}
