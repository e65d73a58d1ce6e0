-- When a setup task first started: a photo or story task that crashed after
-- posting but before recording the id finds its own post by date, not by a
-- second upload.
ALTER TABLE account_tasks ADD COLUMN started_at REAL;
