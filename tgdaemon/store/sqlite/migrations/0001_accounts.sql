-- Accounts, their sessions, the per-account lock and the audit trail.
-- Times are Unix seconds (REAL, UTC); the APIs render them as ISO 8601.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE accounts (
    id              INTEGER PRIMARY KEY,
    phone           TEXT UNIQUE,               -- E.164; NULL until known (import with --no-check)
    tg_user_id      INTEGER UNIQUE,
    label           TEXT NOT NULL DEFAULT '',
    is_active       INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    is_probe        INTEGER NOT NULL DEFAULT 0 CHECK (is_probe IN (0, 1)),
    disabled_at     REAL,
    disabled_reason TEXT,
    cooldown_until  REAL,
    cooldown_reason TEXT,
    executor        TEXT NOT NULL DEFAULT 'local',
    profile_json    TEXT NOT NULL DEFAULT '{}',
    last_error_code TEXT,
    last_used_at    REAL,
    created_at      REAL NOT NULL,
    last_ok_at      REAL
);
CREATE INDEX accounts_label ON accounts (label, id);

CREATE TABLE sessions (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    dc_id      INTEGER NOT NULL,
    server     TEXT NOT NULL,
    port       INTEGER NOT NULL,
    auth_key   BLOB,                           -- secret: never leaves the store
    updated_at REAL NOT NULL
);

-- Access hashes are per account: resolving a username on every task earns flood waits.
CREATE TABLE entities (
    account_id  INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    peer_id     INTEGER NOT NULL,
    access_hash INTEGER NOT NULL,
    username    TEXT,
    phone       TEXT,
    name        TEXT,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (account_id, peer_id)
);
CREATE INDEX entities_username ON entities (account_id, username);

-- One lock per account, shared by setup work and pulled tasks; an expired lock is free.
CREATE TABLE account_locks (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    holder     TEXT NOT NULL,
    expires_at REAL NOT NULL
);

CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         REAL NOT NULL,
    kind       TEXT NOT NULL,
    account_id INTEGER,
    task_id    INTEGER,
    quota_id   INTEGER,
    message    TEXT NOT NULL,
    data_json  TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_account ON events (account_id, id);
