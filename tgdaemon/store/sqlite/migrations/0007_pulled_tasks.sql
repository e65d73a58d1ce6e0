-- Pulled tasks: the open ones (pending or leased) are read by account (one
-- open quota task per account), by quota (open tasks count against what is
-- left), and pending ones in id order by pulls. Partial indexes keep these
-- small however many finished tasks the table holds.
CREATE INDEX tasks_open_by_account ON tasks (account_id) WHERE status IN ('pending', 'leased');
CREATE INDEX tasks_open_by_subject ON tasks (subject_type, subject_id) WHERE status IN ('pending', 'leased');
CREATE INDEX tasks_pending ON tasks (id) WHERE status = 'pending';
