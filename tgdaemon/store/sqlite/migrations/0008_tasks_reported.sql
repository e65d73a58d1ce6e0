-- Tasks per minute (the dashboard's header, every few seconds) counts recently
-- reported tasks; without this it read the whole tasks table each time.
CREATE INDEX tasks_reported ON tasks (reported_at) WHERE reported_at IS NOT NULL;
