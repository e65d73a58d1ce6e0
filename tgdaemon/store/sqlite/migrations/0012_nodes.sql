-- Nodes, account ownership and the fleet's leadership (design 9). On SQLite there is exactly one node
-- (the data dir lock), but it goes through the same rows as a fleet on PostgreSQL.
-- Times are the database's clock (Store.db_now). A node's accounts are its own until its owned_until:
-- one row renews every ownership lease it holds.
CREATE TABLE nodes (
    name         TEXT PRIMARY KEY,
    incarnation  TEXT NOT NULL,               -- random per start: another incarnation cannot renew
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    version      TEXT NOT NULL,
    http         TEXT,
    max_accounts INTEGER NOT NULL DEFAULT 0,  -- 0: no cap
    started_at   REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    owned_until  REAL NOT NULL,
    stopped_at   REAL,                       -- a clean stop: its accounts were released then
    -- A new incarnation that took the name over from a dead one: the dead one's accounts (still owned
    -- under the name) stay its own until this, then the first acquisition releases them; 0: none left.
    prior_until  REAL NOT NULL DEFAULT 0
);

-- One row, name 'fleet', created by the first node to take it: a seeded row would make a freshly
-- migrated store look occupied to `tgdaemon store copy`.
CREATE TABLE leadership (
    name       TEXT PRIMARY KEY CHECK (name = 'fleet'),
    node       TEXT NOT NULL,
    epoch      INTEGER NOT NULL,              -- grows with every change of holder
    expires_at REAL NOT NULL
);

-- No foreign key to nodes: an owner whose row is gone counts as no owner.
ALTER TABLE accounts ADD COLUMN owner TEXT;
ALTER TABLE accounts ADD COLUMN owner_epoch INTEGER NOT NULL DEFAULT 0;  -- fences every write for it
ALTER TABLE accounts ADD COLUMN assigned_node TEXT;                     -- where the balancer wants it
ALTER TABLE accounts ADD COLUMN pinned_node TEXT;
CREATE INDEX accounts_owner ON accounts (owner);
CREATE INDEX accounts_assigned_node ON accounts (assigned_node);
