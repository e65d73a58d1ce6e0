-- What status shows, from counters kept in the writes themselves: it costs the same with 10 or 10,000,000
-- rows of history (issue 13). Triggers keep them, in the transaction of the write, whatever writes.

-- Tasks finished per second (the floor of the time): a setup task while it is done or failed, at its
-- updated_at; a pulled task once reported, at its reported_at. "Tasks per minute" sums the last 60 of
-- them instead of counting every finished setup task (a scan of the fleet's) and the last minute's reports.
-- A second more than an hour before the newest one counted is dropped: only the last minute is ever read.
-- ``stripe`` is PostgreSQL's (several writers each count in a row of their own); here it is always 0.
CREATE TABLE finished_counts (
    second INTEGER NOT NULL,
    stripe INTEGER NOT NULL DEFAULT 0,
    n      INTEGER NOT NULL,
    PRIMARY KEY (second, stripe)
) WITHOUT ROWID;
INSERT INTO finished_counts (second, n)
    SELECT s, COUNT(*) FROM (
        SELECT CAST(updated_at AS INTEGER) - (updated_at < CAST(updated_at AS INTEGER)) AS s FROM account_tasks
            WHERE status IN ('done', 'failed') AND updated_at >= CAST(strftime('%s', 'now') AS INTEGER) - 3600
        UNION ALL
        SELECT CAST(reported_at AS INTEGER) - (reported_at < CAST(reported_at AS INTEGER)) FROM tasks
            WHERE reported_at >= CAST(strftime('%s', 'now') AS INTEGER) - 3600)
    GROUP BY s;

CREATE TRIGGER account_tasks_finished_insert AFTER INSERT ON account_tasks
    WHEN NEW.status IN ('done', 'failed') BEGIN
    INSERT INTO finished_counts (second, n)
        VALUES (CAST(NEW.updated_at AS INTEGER) - (NEW.updated_at < CAST(NEW.updated_at AS INTEGER)), 1)
        ON CONFLICT (second, stripe) DO UPDATE SET n = n + 1;
    DELETE FROM finished_counts WHERE second < NEW.updated_at - 3601;
END;
CREATE TRIGGER account_tasks_finished_delete AFTER DELETE ON account_tasks
    WHEN OLD.status IN ('done', 'failed') BEGIN
    UPDATE finished_counts SET n = n - 1
        WHERE second = CAST(OLD.updated_at AS INTEGER) - (OLD.updated_at < CAST(OLD.updated_at AS INTEGER));
END;
CREATE TRIGGER account_tasks_finished_update AFTER UPDATE OF status, updated_at ON account_tasks
    WHEN OLD.status IN ('done', 'failed') OR NEW.status IN ('done', 'failed') BEGIN
    UPDATE finished_counts SET n = n - 1
        WHERE OLD.status IN ('done', 'failed')
          AND second = CAST(OLD.updated_at AS INTEGER) - (OLD.updated_at < CAST(OLD.updated_at AS INTEGER));
    INSERT INTO finished_counts (second, n)
        SELECT CAST(NEW.updated_at AS INTEGER) - (NEW.updated_at < CAST(NEW.updated_at AS INTEGER)), 1
        WHERE NEW.status IN ('done', 'failed')
        ON CONFLICT (second, stripe) DO UPDATE SET n = n + 1;
    DELETE FROM finished_counts WHERE NEW.status IN ('done', 'failed') AND second < NEW.updated_at - 3601;
END;

CREATE TRIGGER tasks_finished_insert AFTER INSERT ON tasks WHEN NEW.reported_at IS NOT NULL BEGIN
    INSERT INTO finished_counts (second, n)
        VALUES (CAST(NEW.reported_at AS INTEGER) - (NEW.reported_at < CAST(NEW.reported_at AS INTEGER)), 1)
        ON CONFLICT (second, stripe) DO UPDATE SET n = n + 1;
    DELETE FROM finished_counts WHERE second < NEW.reported_at - 3601;
END;
CREATE TRIGGER tasks_finished_delete AFTER DELETE ON tasks WHEN OLD.reported_at IS NOT NULL BEGIN
    UPDATE finished_counts SET n = n - 1
        WHERE second = CAST(OLD.reported_at AS INTEGER) - (OLD.reported_at < CAST(OLD.reported_at AS INTEGER));
END;
CREATE TRIGGER tasks_finished_update AFTER UPDATE OF reported_at ON tasks
    WHEN OLD.reported_at IS NOT NEW.reported_at BEGIN
    UPDATE finished_counts SET n = n - 1
        WHERE OLD.reported_at IS NOT NULL
          AND second = CAST(OLD.reported_at AS INTEGER) - (OLD.reported_at < CAST(OLD.reported_at AS INTEGER));
    INSERT INTO finished_counts (second, n)
        SELECT CAST(NEW.reported_at AS INTEGER) - (NEW.reported_at < CAST(NEW.reported_at AS INTEGER)), 1
        WHERE NEW.reported_at IS NOT NULL
        ON CONFLICT (second, stripe) DO UPDATE SET n = n + 1;
    DELETE FROM finished_counts WHERE NEW.reported_at IS NOT NULL AND second < NEW.reported_at - 3601;
END;

-- Accounts and quotas in row_counts beside events and tasks: status read COUNT(*) of both (and quotas stay
-- after they expire: history too).
INSERT INTO row_counts (name, n) SELECT 'accounts', COUNT(*) FROM accounts;
INSERT INTO row_counts (name, n) SELECT 'quotas', COUNT(*) FROM quotas;

CREATE TRIGGER accounts_count_insert AFTER INSERT ON accounts BEGIN
    UPDATE row_counts SET n = n + 1 WHERE name = 'accounts';
END;
CREATE TRIGGER accounts_count_delete AFTER DELETE ON accounts BEGIN
    UPDATE row_counts SET n = n - 1 WHERE name = 'accounts';
END;
CREATE TRIGGER quotas_count_insert AFTER INSERT ON quotas BEGIN
    UPDATE row_counts SET n = n + 1 WHERE name = 'quotas';
END;
CREATE TRIGGER quotas_count_delete AFTER DELETE ON quotas BEGIN
    UPDATE row_counts SET n = n - 1 WHERE name = 'quotas';
END;
