-- The audit trail without the stream's `changes` rows (one per commit that touched something no event
-- of it names), as SQLite's migration 0011: recent_events reads the newest audit events through this
-- index instead of stepping over thousands of `changes` rows. Those rows add nothing to it.
CREATE INDEX events_audit ON events (id) WHERE kind <> 'changes';
