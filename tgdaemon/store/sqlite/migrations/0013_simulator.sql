-- The simulator's own world (tgdaemon/gateway/simulator.py), where every daemon on the store sees it.
-- The simulated accounts and channels are fixed by the seed, the same in every process; what an owner
-- changes on an account (names, privacy, the 2FA flag, photos, stories, its id counter) and the
-- account's MTProto connections are what the processes share. Nothing but the simulator reads them.

-- An account's profile as the simulator last wrote it (JSON); no row, or NULL: the seeded profile. A
-- row is made (NULL) by the first open of the account: opening locks it (PostgreSQL), one at a time.
CREATE TABLE sim_profiles (
    tg_user_id   INTEGER PRIMARY KEY,
    profile_json TEXT
);

-- Every connection made, and every open refused as a duplicate (opened and closed at once): the
-- record tests check for overlaps. Times are the database's clock; closed_at NULL: open. Closed
-- records go a day after they closed, when their account opens again.
CREATE TABLE sim_connections (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tg_user_id   INTEGER NOT NULL,
    node         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    opened_at    REAL NOT NULL,
    last_seen_at REAL NOT NULL,                -- its last ping: the server closes it server_timeout after
    closed_at    REAL,
    closed_why   TEXT                          -- closed, forgotten, idle, timeout, gone, duplicate, ...
);
CREATE INDEX sim_connections_account ON sim_connections (tg_user_id, id);
