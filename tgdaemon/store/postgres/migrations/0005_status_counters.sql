-- What status shows, from counters kept in the writes themselves (SQLite 0014): it costs the same with 10 or
-- 10,000,000 rows of history. Triggers keep them, once per statement over its transition tables.

-- Tasks finished per second (the floor of the time): a setup task while it is done or failed, at its
-- updated_at; a pulled task once reported, at its reported_at. Several daemons report at once: each server
-- process counts in a stripe of its own (pg_backend_pid() % 16), so two transactions never wait for each
-- other's counter row; a read sums the stripes. A second more than an hour before the newest one a
-- statement counted is dropped (rows another transaction holds are left for the next one): only the last
-- minute is ever read. A decrement of a second no longer kept (a row pruned by retention) is dropped too.
CREATE TABLE finished_counts (
    second bigint NOT NULL,
    stripe integer NOT NULL DEFAULT 0,
    n      bigint NOT NULL,
    PRIMARY KEY (second, stripe)
);
INSERT INTO finished_counts (second, n)
    SELECT s, count(*) FROM (
        SELECT floor(updated_at)::bigint AS s FROM account_tasks
            WHERE status IN ('done', 'failed') AND updated_at >= extract(epoch FROM now()) - 3600
        UNION ALL
        SELECT floor(reported_at)::bigint FROM tasks WHERE reported_at >= extract(epoch FROM now()) - 3600) f
    GROUP BY s;

-- One statement's net change per second (seconds[i] changed by deltas[i]), counted in this process's stripe.
CREATE FUNCTION tgfleet_count_finished(seconds bigint[], deltas bigint[]) RETURNS void LANGUAGE sql AS $$
    WITH d AS (SELECT s, SUM(k) AS k FROM unnest(seconds, deltas) AS u(s, k) GROUP BY s HAVING SUM(k) <> 0),
         counted AS (
             INSERT INTO finished_counts (second, stripe, n)
                 SELECT d.s, pg_backend_pid() % 16, d.k FROM d
                 WHERE d.k > 0 OR EXISTS (SELECT 1 FROM finished_counts f WHERE f.second = d.s)
                 ON CONFLICT (second, stripe) DO UPDATE SET n = finished_counts.n + EXCLUDED.n)
    DELETE FROM finished_counts WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM finished_counts WHERE second < (SELECT max(s) FROM d WHERE k > 0) - 3600
        FOR UPDATE SKIP LOCKED));
$$;

CREATE FUNCTION tgfleet_count_finished_setup() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    seconds bigint[];
    deltas bigint[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(floor(updated_at)::bigint), array_agg(1) INTO seconds, deltas
            FROM new_rows WHERE status IN ('done', 'failed');
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(floor(updated_at)::bigint), array_agg(-1) INTO seconds, deltas
            FROM old_rows WHERE status IN ('done', 'failed');
    ELSE
        SELECT array_agg(s), array_agg(k) INTO seconds, deltas FROM (
            SELECT floor(updated_at)::bigint AS s, -1 AS k FROM old_rows WHERE status IN ('done', 'failed')
            UNION ALL SELECT floor(updated_at)::bigint, 1 FROM new_rows WHERE status IN ('done', 'failed')) c;
    END IF;
    IF seconds IS NOT NULL THEN
        PERFORM tgfleet_count_finished(seconds, deltas);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION tgfleet_count_finished_pulled() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    seconds bigint[];
    deltas bigint[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(floor(reported_at)::bigint), array_agg(1) INTO seconds, deltas
            FROM new_rows WHERE reported_at IS NOT NULL;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(floor(reported_at)::bigint), array_agg(-1) INTO seconds, deltas
            FROM old_rows WHERE reported_at IS NOT NULL;
    ELSE
        SELECT array_agg(s), array_agg(k) INTO seconds, deltas FROM (
            SELECT floor(reported_at)::bigint AS s, -1 AS k FROM old_rows WHERE reported_at IS NOT NULL
            UNION ALL SELECT floor(reported_at)::bigint, 1 FROM new_rows WHERE reported_at IS NOT NULL) c;
    END IF;
    IF seconds IS NOT NULL THEN
        PERFORM tgfleet_count_finished(seconds, deltas);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER account_tasks_finished_insert AFTER INSERT ON account_tasks REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tgfleet_count_finished_setup();
CREATE TRIGGER account_tasks_finished_delete AFTER DELETE ON account_tasks REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tgfleet_count_finished_setup();
CREATE TRIGGER account_tasks_finished_update AFTER UPDATE ON account_tasks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tgfleet_count_finished_setup();
CREATE TRIGGER tasks_finished_insert AFTER INSERT ON tasks REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tgfleet_count_finished_pulled();
CREATE TRIGGER tasks_finished_delete AFTER DELETE ON tasks REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tgfleet_count_finished_pulled();
CREATE TRIGGER tasks_finished_update AFTER UPDATE ON tasks REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tgfleet_count_finished_pulled();

-- Accounts and quotas in row_counts beside events and tasks (status read COUNT(*) of both; quotas stay
-- after they expire: history too). Rare writes, one update of the counter per statement.
INSERT INTO row_counts (name, n) SELECT 'accounts', count(*) FROM accounts;
INSERT INTO row_counts (name, n) SELECT 'quotas', count(*) FROM quotas;

CREATE FUNCTION tgfleet_count_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE row_counts SET n = n + (SELECT count(*) FROM new_rows) WHERE name = TG_TABLE_NAME;
    ELSE
        UPDATE row_counts SET n = n - (SELECT count(*) FROM old_rows) WHERE name = TG_TABLE_NAME;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER accounts_count_insert AFTER INSERT ON accounts REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tgfleet_count_rows();
CREATE TRIGGER accounts_count_delete AFTER DELETE ON accounts REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tgfleet_count_rows();
CREATE TRIGGER quotas_count_insert AFTER INSERT ON quotas REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tgfleet_count_rows();
CREATE TRIGGER quotas_count_delete AFTER DELETE ON quotas REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tgfleet_count_rows();
