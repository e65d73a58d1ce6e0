-- The account's name as Telegram has it, filled in at login and import (get_me)
-- and kept current by the update_name setup task.
ALTER TABLE accounts ADD COLUMN first_name TEXT NOT NULL DEFAULT '';
ALTER TABLE accounts ADD COLUMN last_name TEXT NOT NULL DEFAULT '';
