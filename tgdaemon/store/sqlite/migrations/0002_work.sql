-- The work: setup tasks, quotas and the pulled tasks made from them, the
-- providers that pull them, per-account usage, and what was measured.

CREATE TABLE account_tasks (
    id              INTEGER PRIMARY KEY,
    account_id      INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    task_type       TEXT NOT NULL,
    payload_json    TEXT NOT NULL DEFAULT '{}',
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'running', 'done', 'failed', 'retry')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    retry_at        REAL,
    last_error_code TEXT,
    last_error      TEXT,
    result_json     TEXT,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    UNIQUE (account_id, task_type)
);
CREATE INDEX account_tasks_status ON account_tasks (status, retry_at);

CREATE TABLE quotas (
    id                  INTEGER PRIMARY KEY,
    name                TEXT NOT NULL,
    target              TEXT NOT NULL,
    action              TEXT NOT NULL CHECK (action IN ('post_stats', 'channel_stats')),
    last_n_posts        INTEGER NOT NULL DEFAULT 10,
    quantity_total      INTEGER,
    quantity_left       INTEGER CHECK (quantity_left >= 0),
    orders_left         INTEGER CHECK (orders_left >= 0),
    per_call            INTEGER NOT NULL DEFAULT 1,
    interval_seconds    REAL NOT NULL,
    expires_at          REAL NOT NULL,
    next_run_at         REAL,
    paused              INTEGER NOT NULL DEFAULT 0,
    inspection_ok       INTEGER,
    inspection_at       REAL,
    inspection_error    TEXT,
    peer_id             INTEGER,
    title               TEXT,
    posts_fetched_at    REAL,
    posts_json          TEXT,
    cursor              INTEGER NOT NULL DEFAULT 0,
    last_error          TEXT,
    created_at          REAL NOT NULL
);
CREATE INDEX quotas_due ON quotas (next_run_at);

CREATE TABLE providers (
    name         TEXT PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   REAL NOT NULL,
    last_seen_at REAL,
    revoked_at   REAL
);

CREATE TABLE tasks (
    id               INTEGER PRIMARY KEY,
    subject_type     TEXT NOT NULL,
    subject_id       INTEGER NOT NULL,
    account_id       INTEGER NOT NULL REFERENCES accounts (id),
    action           TEXT NOT NULL,
    target           TEXT NOT NULL,
    post_id          INTEGER,
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'leased', 'done', 'failed')),
    lease_token      TEXT,
    leased_by        TEXT,
    lease_expires_at REAL,
    lease_count      INTEGER NOT NULL DEFAULT 0,
    result_json      TEXT,
    error_code       TEXT,
    created_at       REAL NOT NULL,
    reported_at      REAL
);
CREATE INDEX tasks_status ON tasks (status, lease_expires_at);
CREATE INDEX tasks_subject ON tasks (subject_type, subject_id, post_id, account_id);

-- Daily cap consumed on commit; pacing lives in accounts.cooldown_until.
CREATE TABLE usage (
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    day        TEXT NOT NULL,
    used       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, day)
);

CREATE TABLE measurements (
    id          INTEGER PRIMARY KEY,
    quota_id    INTEGER NOT NULL REFERENCES quotas (id) ON DELETE CASCADE,
    task_id     INTEGER,
    post_id     INTEGER,
    observed_at REAL NOT NULL,
    views       INTEGER,
    forwards    INTEGER,
    replies     INTEGER,
    reactions   INTEGER,
    subscribers INTEGER,
    data_json   TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX measurements_quota ON measurements (quota_id, observed_at);
