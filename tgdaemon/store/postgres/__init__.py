"""The PostgreSQL driver (asyncpg): for fleets that outgrow one machine; a pool, jsonb, epoch-second times."""
