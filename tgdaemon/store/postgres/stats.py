"""What status and ``/metrics`` show of the database: its size and its row counts.

Asked for every few seconds on a database that may hold millions of events and finished tasks, so
nothing here counts those rows: the counts come from ``row_counts``, which triggers keep exact, and
from the per-quota measurement counters; the size is ``pg_database_size``.
"""

from __future__ import annotations

from typing import Any

from tgdaemon.store.postgres.core import PostgresCore


class StatsStore(PostgresCore):
    async def _row_counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in await self.read("SELECT name, n FROM row_counts")}

    async def task_counts(self) -> dict[str, dict[str, int]]:
        """Setup and pulled tasks by status (statuses with none left out)."""
        counts = await self._row_counts()
        out: dict[str, dict[str, int]] = {"setup": {}, "pulled": {}}
        for name, n in counts.items():
            table, _, status = name.partition(".")
            kind = {"account_tasks": "setup", "tasks": "pulled"}.get(table)
            if kind and n:
                out[kind][status] = n
        return out

    async def database_stats(self) -> dict[str, Any]:
        """The SQLite store's keys: ``file_bytes`` is the database's size on the server; ``wal_bytes`` 0 (the
        server's WAL is shared by all its databases); ``path`` None and ``url`` the store's, without password."""
        counts = await self._row_counts()
        row = await self.read_row(
            "SELECT pg_database_size(current_database()), (SELECT COALESCE(SUM(measurements_count), 0) FROM quotas)")
        assert row is not None
        return {
            "path": None,
            "url": self.url,
            "file_bytes": row[0],
            "wal_bytes": 0,
            "rows": {
                "accounts": counts.get("accounts", 0),
                "account_tasks": sum(n for k, n in counts.items() if k.startswith("account_tasks.")),
                "quotas": counts.get("quotas", 0),
                "tasks": sum(n for k, n in counts.items() if k.startswith("tasks.")),
                "events": counts.get("events", 0),
                "measurements": int(row[1]),
            },
        }
