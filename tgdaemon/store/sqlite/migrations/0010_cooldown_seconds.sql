-- The length a cooldown was set for (pace, FLOOD_WAIT_X + jitter, PEER_FLOOD), beside
-- its end: at start-up a cooldown ending further ahead than its own length can only
-- be the wall clock stepped back while the daemon was down, and is treated as over.
-- NULL for cooldowns set before this migration (their reason bounds them instead).
ALTER TABLE accounts ADD COLUMN cooldown_seconds REAL;
