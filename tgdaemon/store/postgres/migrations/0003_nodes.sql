-- Nodes, account ownership and the fleet's leadership (design 9), as SQLite's migration 0012.
-- Times are the database's clock (extract(epoch from clock_timestamp())), so hosts with skewed clocks
-- agree. A node's accounts are its own until its owned_until: one row renews every lease it holds.
CREATE TABLE nodes (
    name         text PRIMARY KEY,
    incarnation  text NOT NULL,               -- random per start: another incarnation cannot renew
    host         text NOT NULL,
    pid          integer NOT NULL,
    version      text NOT NULL,
    http         text,
    max_accounts integer NOT NULL DEFAULT 0,  -- 0: no cap
    started_at   double precision NOT NULL,
    heartbeat_at double precision NOT NULL,
    owned_until  double precision NOT NULL,
    stopped_at   double precision,                       -- a clean stop: its accounts were released then
    -- A new incarnation that took the name over from a dead one: the dead one's accounts (still owned
    -- under the name) stay its own until this, then the first acquisition releases them; 0: none left.
    prior_until  double precision NOT NULL DEFAULT 0
);

-- One row, name 'fleet', created by the first node to take it: a seeded row would make a freshly
-- migrated store look occupied to `tgdaemon store copy`.
CREATE TABLE leadership (
    name       text PRIMARY KEY CHECK (name = 'fleet'),
    node       text NOT NULL,
    epoch      bigint NOT NULL,               -- grows with every change of holder
    expires_at double precision NOT NULL
);

-- No foreign key to nodes: an owner whose row is gone counts as no owner.
ALTER TABLE accounts
    ADD COLUMN owner text,
    ADD COLUMN owner_epoch bigint NOT NULL DEFAULT 0,  -- fences every write for it
    ADD COLUMN assigned_node text,                     -- where the balancer wants it
    ADD COLUMN pinned_node text;
CREATE INDEX accounts_owner ON accounts (owner);
CREATE INDEX accounts_assigned_node ON accounts (assigned_node);
