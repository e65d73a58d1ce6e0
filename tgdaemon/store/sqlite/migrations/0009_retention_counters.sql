-- History is pruned ([retention]), and what status, /metrics and every quota
-- delta show is read from counters instead of COUNT(*) over millions of rows.

-- A quota's measurements: kept here by the report that stores them (the quota
-- view used to count them on every commit that touched a quota).
ALTER TABLE quotas ADD COLUMN measurements_count INTEGER NOT NULL DEFAULT 0;
UPDATE quotas SET measurements_count = (SELECT COUNT(*) FROM measurements m WHERE m.quota_id = quotas.id);

-- Rows per table (and per status for the two task tables), kept exact by the
-- triggers below whatever writes or deletes: status answers in O(1) with
-- millions of events and finished tasks.
CREATE TABLE row_counts (
    name TEXT PRIMARY KEY,
    n    INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO row_counts (name, n) SELECT 'events', COUNT(*) FROM events;
INSERT INTO row_counts (name, n)
    SELECT 'tasks.' || s.column1, (SELECT COUNT(*) FROM tasks t WHERE t.status = s.column1)
    FROM (VALUES ('pending'), ('leased'), ('done'), ('failed')) s;
INSERT INTO row_counts (name, n)
    SELECT 'account_tasks.' || s.column1, (SELECT COUNT(*) FROM account_tasks t WHERE t.status = s.column1)
    FROM (VALUES ('pending'), ('running'), ('done'), ('failed'), ('retry')) s;

CREATE TRIGGER events_count_insert AFTER INSERT ON events BEGIN
    UPDATE row_counts SET n = n + 1 WHERE name = 'events';
END;
CREATE TRIGGER events_count_delete AFTER DELETE ON events BEGIN
    UPDATE row_counts SET n = n - 1 WHERE name = 'events';
END;

CREATE TRIGGER tasks_count_insert AFTER INSERT ON tasks BEGIN
    UPDATE row_counts SET n = n + 1 WHERE name = 'tasks.' || NEW.status;
END;
CREATE TRIGGER tasks_count_delete AFTER DELETE ON tasks BEGIN
    UPDATE row_counts SET n = n - 1 WHERE name = 'tasks.' || OLD.status;
END;
CREATE TRIGGER tasks_count_status AFTER UPDATE OF status ON tasks WHEN OLD.status != NEW.status BEGIN
    UPDATE row_counts SET n = n - 1 WHERE name = 'tasks.' || OLD.status;
    UPDATE row_counts SET n = n + 1 WHERE name = 'tasks.' || NEW.status;
END;

CREATE TRIGGER account_tasks_count_insert AFTER INSERT ON account_tasks BEGIN
    UPDATE row_counts SET n = n + 1 WHERE name = 'account_tasks.' || NEW.status;
END;
CREATE TRIGGER account_tasks_count_delete AFTER DELETE ON account_tasks BEGIN
    UPDATE row_counts SET n = n - 1 WHERE name = 'account_tasks.' || OLD.status;
END;
CREATE TRIGGER account_tasks_count_status AFTER UPDATE OF status ON account_tasks
    WHEN OLD.status != NEW.status BEGIN
    UPDATE row_counts SET n = n - 1 WHERE name = 'account_tasks.' || OLD.status;
    UPDATE row_counts SET n = n + 1 WHERE name = 'account_tasks.' || NEW.status;
END;

-- Pruning finds the usage rows of old days without reading every row; only
-- the first report of an account's day writes to it (the day never changes).
CREATE INDEX usage_day ON usage (day);
