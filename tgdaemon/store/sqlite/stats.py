"""What status and ``/metrics`` show of the database: its size on disk and its row counts.

Both are asked for every few seconds (status, every stream snapshot, every
scrape) on a database that may hold millions of events and finished tasks, so
nothing here counts rows: the counts come from ``row_counts``, which triggers
keep exact (migrations 0009 and 0014), and from the per-quota measurement counters.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tgdaemon.store.sqlite.core import StoreCore


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


class StatsStore(StoreCore):
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
        """File and WAL sizes in bytes, and rows per table; O(1) in the size of the history."""
        counts = await self._row_counts()
        [row] = list(await self.read("SELECT COALESCE(SUM(measurements_count), 0) FROM quotas"))
        wal = Path(f"{self.path}-wal")
        return {
            "path": str(self.path),
            "file_bytes": _size(self.path),
            "wal_bytes": _size(wal),
            "rows": {
                "accounts": counts.get("accounts", 0),
                "account_tasks": sum(n for k, n in counts.items() if k.startswith("account_tasks.")),
                "quotas": counts.get("quotas", 0),
                "tasks": sum(n for k, n in counts.items() if k.startswith("tasks.")),
                "events": counts.get("events", 0),
                "measurements": row[0],
            },
        }
