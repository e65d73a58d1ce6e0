-- Issue 15: the tasks view. One row per finished attempt of a setup or pulled task, counts per lane and
-- status for its header, and tasks finished per minute for the pulse. All three are written by triggers, in
-- the transaction (and the statement) of the write that ends an attempt, whatever writes it: a setup finish,
-- a recovery, a report, the reaper. A finish costs one more row (and two counter upserts), no round trip.

-- A pulled task's lane: the executor whose account's task it is (a reassignment moves a pending task's
-- along, tgdaemon/store/*/pulled.py), and when its current lease began (its attempt's start).
ALTER TABLE tasks ADD COLUMN executor TEXT;
ALTER TABLE tasks ADD COLUMN leased_at REAL;
UPDATE tasks SET executor = COALESCE(leased_by, (SELECT a.executor FROM accounts a WHERE a.id = tasks.account_id));

-- ``attempt``: the task's own counter when the attempt ended (setup: attempts; pulled: lease_count), which an
-- operator's retry starts again from 0. ``task_type``: the setup task's type, or the pulled task's action.
-- ``executor``: a pulled attempt's ('local' or a provider). ``node``: the node owning the account when it
-- ended (a pulled attempt's only for the local executor: a provider's runs elsewhere). ``outcome``:
-- done | failed (for good) | retry (failed, due again at retry_at) | interrupted (the daemon stopped, or the
-- account changed owner, while it ran) | expired (a lease that ran out without a report).
CREATE TABLE task_attempts (
    id         INTEGER PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('setup', 'pulled')),
    task_id    INTEGER NOT NULL,
    account_id INTEGER NOT NULL,
    attempt    INTEGER NOT NULL,
    task_type  TEXT NOT NULL,
    executor   TEXT,
    node       TEXT,
    started_at REAL,
    ended_at   REAL NOT NULL,
    outcome    TEXT NOT NULL,
    error_code TEXT,
    error      TEXT
);
CREATE INDEX task_attempts_task ON task_attempts (kind, task_id, id);

CREATE TRIGGER account_tasks_attempt AFTER UPDATE OF status ON account_tasks
    WHEN OLD.status = 'running' AND NEW.status != 'running' BEGIN
    INSERT INTO task_attempts (kind, task_id, account_id, attempt, task_type, node, started_at, ended_at, outcome,
                               error_code, error)
        VALUES ('setup', NEW.id, NEW.account_id, OLD.attempts, NEW.task_type,
                (SELECT a.owner FROM accounts a WHERE a.id = NEW.account_id), OLD.updated_at, NEW.updated_at,
                CASE WHEN NEW.status = 'retry' AND NEW.last_error_code = 'INTERRUPTED' THEN 'interrupted'
                     ELSE NEW.status END,
                NEW.last_error_code, NEW.last_error);
    -- A setup task is never pruned (convergence state): its history keeps the last 20 attempts.
    DELETE FROM task_attempts WHERE kind = 'setup' AND task_id = NEW.id AND id <= (
        SELECT id FROM task_attempts WHERE kind = 'setup' AND task_id = NEW.id ORDER BY id DESC LIMIT 1 OFFSET 20);
END;
CREATE TRIGGER account_tasks_attempts_delete AFTER DELETE ON account_tasks BEGIN
    DELETE FROM task_attempts WHERE kind = 'setup' AND task_id = OLD.id;
END;

CREATE TRIGGER tasks_attempt AFTER UPDATE OF status ON tasks
    WHEN OLD.status = 'leased' AND NEW.status != 'leased' BEGIN
    INSERT INTO task_attempts (kind, task_id, account_id, attempt, task_type, executor, node, started_at, ended_at,
                               outcome, error_code, error)
        SELECT 'pulled', NEW.id, NEW.account_id, OLD.lease_count, NEW.action, OLD.leased_by,
               CASE WHEN OLD.leased_by = 'local' THEN (SELECT a.owner FROM accounts a WHERE a.id = NEW.account_id) END,
               OLD.leased_at, CASE WHEN e.expired THEN OLD.lease_expires_at ELSE NEW.reported_at END,
               CASE WHEN e.expired THEN 'expired' ELSE NEW.status END,
               CASE WHEN e.expired THEN 'LEASE_EXPIRED' ELSE NEW.error_code END,
               CASE WHEN e.expired THEN 'the lease ran out without a report'
                    WHEN NEW.status = 'failed' THEN json_extract(NEW.result_json, '$.error') END
        FROM (SELECT NEW.status = 'pending' OR NEW.error_code IS 'LEASE_EXPIRED' AS expired) e;
END;
-- Retention prunes a pulled task with its history.
CREATE TRIGGER tasks_attempts_delete AFTER DELETE ON tasks BEGIN
    DELETE FROM task_attempts WHERE kind = 'pulled' AND task_id = OLD.id;
END;

-- Attempts ended per minute (its first second), by lane (setup: the task type; pulled: the executor) and
-- outcome: the pulse reads at most 60 minutes x lanes x outcomes rows, never the attempts. Minutes more than
-- two hours before the newest are dropped. ``stripe`` is PostgreSQL's; here always 0.
CREATE TABLE pulse_counts (
    minute  INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    lane    TEXT NOT NULL,
    outcome TEXT NOT NULL,
    stripe  INTEGER NOT NULL DEFAULT 0,
    n       INTEGER NOT NULL,
    PRIMARY KEY (minute, kind, lane, outcome, stripe)
) WITHOUT ROWID;
CREATE TRIGGER task_attempts_pulse AFTER INSERT ON task_attempts BEGIN
    INSERT INTO pulse_counts (minute, kind, lane, outcome, n)
        VALUES (CAST(NEW.ended_at / 60 AS INTEGER) * 60, NEW.kind,
                CASE WHEN NEW.kind = 'setup' THEN NEW.task_type ELSE COALESCE(NEW.executor, '') END, NEW.outcome, 1)
        ON CONFLICT (minute, kind, lane, outcome, stripe) DO UPDATE SET n = n + 1;
    DELETE FROM pulse_counts WHERE minute < NEW.ended_at - 7200;
END;

-- Tasks per lane and status, for the tasks view's header: setup lanes are task types (the control API maps
-- them to their queue), pulled lanes executors. Kept by triggers like row_counts (0009), O(lanes) to read.
CREATE TABLE lane_counts (
    kind   TEXT NOT NULL,
    lane   TEXT NOT NULL,
    status TEXT NOT NULL,
    stripe INTEGER NOT NULL DEFAULT 0,
    n      INTEGER NOT NULL,
    PRIMARY KEY (kind, lane, status, stripe)
) WITHOUT ROWID;
INSERT INTO lane_counts (kind, lane, status, n)
    SELECT 'setup', task_type, status, COUNT(*) FROM account_tasks GROUP BY task_type, status;
INSERT INTO lane_counts (kind, lane, status, n)
    SELECT 'pulled', COALESCE(executor, ''), status, COUNT(*) FROM tasks GROUP BY COALESCE(executor, ''), status;

CREATE TRIGGER account_tasks_lane_insert AFTER INSERT ON account_tasks BEGIN
    INSERT INTO lane_counts (kind, lane, status, n) VALUES ('setup', NEW.task_type, NEW.status, 1)
        ON CONFLICT (kind, lane, status, stripe) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER account_tasks_lane_delete AFTER DELETE ON account_tasks BEGIN
    UPDATE lane_counts SET n = n - 1 WHERE kind = 'setup' AND lane = OLD.task_type AND status = OLD.status;
END;
CREATE TRIGGER account_tasks_lane_status AFTER UPDATE OF status ON account_tasks
    WHEN OLD.status != NEW.status BEGIN
    UPDATE lane_counts SET n = n - 1 WHERE kind = 'setup' AND lane = OLD.task_type AND status = OLD.status;
    INSERT INTO lane_counts (kind, lane, status, n) VALUES ('setup', NEW.task_type, NEW.status, 1)
        ON CONFLICT (kind, lane, status, stripe) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER tasks_lane_insert AFTER INSERT ON tasks BEGIN
    INSERT INTO lane_counts (kind, lane, status, n) VALUES ('pulled', COALESCE(NEW.executor, ''), NEW.status, 1)
        ON CONFLICT (kind, lane, status, stripe) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER tasks_lane_delete AFTER DELETE ON tasks BEGIN
    UPDATE lane_counts SET n = n - 1
        WHERE kind = 'pulled' AND lane = COALESCE(OLD.executor, '') AND status = OLD.status;
END;
CREATE TRIGGER tasks_lane_update AFTER UPDATE OF status, executor ON tasks
    WHEN OLD.status != NEW.status OR OLD.executor IS NOT NEW.executor BEGIN
    UPDATE lane_counts SET n = n - 1
        WHERE kind = 'pulled' AND lane = COALESCE(OLD.executor, '') AND status = OLD.status;
    INSERT INTO lane_counts (kind, lane, status, n) VALUES ('pulled', COALESCE(NEW.executor, ''), NEW.status, 1)
        ON CONFLICT (kind, lane, status, stripe) DO UPDATE SET n = n + 1;
END;
