-- What real fleets carry per account (issue 14, design 3 and 7.3): a proxy of its own, its own app and
-- device parameters, and its health. Every new column is NULL for "not set": the account falls back to
-- [telegram] (app, device, the global proxy) and has never been checked.

-- A proxy is shown as scheme://host:port; what would let anyone else use it is kept apart (proxy_secrets)
-- and never leaves the store. ``state`` is the health checker's: unchecked until its first check.
CREATE TABLE proxies (
    id         INTEGER PRIMARY KEY,
    scheme     TEXT NOT NULL CHECK (scheme IN ('socks5', 'socks4', 'http', 'mtproxy')),
    host       TEXT NOT NULL,
    port       INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    username   TEXT NOT NULL DEFAULT '',
    label      TEXT NOT NULL DEFAULT '',
    state      TEXT NOT NULL DEFAULT 'unchecked' CHECK (state IN ('unchecked', 'ok', 'slow', 'dead')),
    latency_ms REAL,
    checked_at REAL,
    last_error TEXT,
    created_at REAL NOT NULL,
    UNIQUE (scheme, host, port, username)
);
CREATE TABLE proxy_secrets (
    proxy_id INTEGER PRIMARY KEY REFERENCES proxies (id) ON DELETE CASCADE,
    secret   TEXT NOT NULL  -- the password (SOCKS5, HTTP) or the MTProxy secret: secret
);

ALTER TABLE accounts ADD COLUMN proxy_id INTEGER REFERENCES proxies (id);
ALTER TABLE accounts ADD COLUMN api_id INTEGER;
ALTER TABLE accounts ADD COLUMN api_hash TEXT;  -- shown masked
ALTER TABLE accounts ADD COLUMN device_model TEXT;
ALTER TABLE accounts ADD COLUMN system_version TEXT;
ALTER TABLE accounts ADD COLUMN app_version TEXT;
ALTER TABLE accounts ADD COLUMN lang_code TEXT;
ALTER TABLE accounts ADD COLUMN system_lang_code TEXT;
ALTER TABLE accounts ADD COLUMN health TEXT;  -- ok | limited | frozen | dead; NULL: never checked
ALTER TABLE accounts ADD COLUMN health_checked_at REAL;
ALTER TABLE accounts ADD COLUMN health_detail TEXT;  -- JSON object: what the last check found
CREATE INDEX accounts_by_proxy ON accounts (proxy_id) WHERE proxy_id IS NOT NULL;
