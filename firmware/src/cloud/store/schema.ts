// Schema migrations. Entry i moves the database from user_version i to i + 1.
// Append new entries and never edit a released one, because deployed databases
// have already run it. Every time column is in milliseconds since the Unix epoch.
export const MIGRATIONS: readonly string[] = [
  `
  -- AUTOINCREMENT keeps ids of deleted nodes from being handed out again, so a
  -- stale id in a peer's cache or a log line never names a different node.
  CREATE TABLE nodes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,
    kind        TEXT    NOT NULL CHECK (kind IN ('node', 'adapter', 'general')),
    public_key  BLOB    UNIQUE CHECK (public_key IS NULL OR length(public_key) = 32),
    virtual_ip  INTEGER NOT NULL UNIQUE CHECK (virtual_ip BETWEEN 0 AND 4294967295),
    adapter_id  INTEGER REFERENCES nodes (id) ON DELETE CASCADE,
    mac         TEXT,
    created_at  INTEGER NOT NULL,
    CHECK ((kind = 'general') = (adapter_id IS NOT NULL AND mac IS NOT NULL)),
    CHECK (kind = 'general' OR (adapter_id IS NULL AND mac IS NULL)),
    UNIQUE (adapter_id, mac)
  );

  -- Only the SHA-256 hash of a provisioning secret is stored.
  CREATE TABLE tokens (
    hash             BLOB    PRIMARY KEY CHECK (length(hash) = 32),
    node_id          INTEGER NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    redeemed_at      INTEGER,
    redeemed_by_key  BLOB CHECK (redeemed_by_key IS NULL OR length(redeemed_by_key) = 32),
    CHECK ((redeemed_at IS NULL) = (redeemed_by_key IS NULL))
  ) WITHOUT ROWID;
  CREATE INDEX tokens_node_id ON tokens (node_id);

  -- local_addresses is a JSON array of "address:port" strings, IPv6 in brackets.
  CREATE TABLE locations (
    node_id           INTEGER PRIMARY KEY REFERENCES nodes (id) ON DELETE CASCADE,
    local_addresses   TEXT    NOT NULL,
    observed_address  TEXT    NOT NULL,
    observed_port     INTEGER NOT NULL CHECK (observed_port BETWEEN 1 AND 65535),
    family            INTEGER NOT NULL CHECK (family IN (4, 6)),
    napt              INTEGER NOT NULL CHECK (napt IN (0, 1)),
    last_seen         INTEGER NOT NULL,
    registered_at     INTEGER NOT NULL
  );
  `,
  `
  -- Routes selected by the NMS; the TRS relays only between the two ends of
  -- a route listed here. node_a < node_b, so a pair has one row.
  CREATE TABLE routes (
    route_id    INTEGER PRIMARY KEY CHECK (route_id BETWEEN 1 AND 4294967295),
    node_a      INTEGER NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    node_b      INTEGER NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    CHECK (node_a < node_b),
    UNIQUE (node_a, node_b)
  );
  `,
];
