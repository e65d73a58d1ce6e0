"""Quotas: counted, expiring monitoring of a public channel, and their inspection by a probe account."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from tgdaemon.errors import Conflict, NotFound
from tgdaemon.store.api import ProbeAccount, QuotaPause, QuotaRef, chunked
from tgdaemon.store.api import Tx as ApiTx
from tgdaemon.store.pages import prefetched
from tgdaemon.store.sqlite.core import StoreCore, own
from tgdaemon.store.views import (
    EXPORT_FORMATS,
    MEASUREMENT_FIELDS,
    measurement_rows,
    quota_expired,
    quota_view,
)
from tgdaemon.timeutil import iso, now

# The count is the counter the report keeps, not a COUNT(*): this view is read after every commit
# that touched a quota, to publish its delta.
QUOTA_VIEW = "SELECT q.*, q.measurements_count AS measurements FROM quotas q"

FIELDS_SQL = ", ".join(MEASUREMENT_FIELDS)
EXPORT_PAGE = 10_000  # rows a read: about a megabyte of the export


def _export_sql(fmt: str) -> str:
    """One row of the export as ``views.measurement_rows`` writes it, or NULL where SQL cannot write it
    exactly (a value that is not an integer, a time before 1970 or after 9999). One printf a row: a third
    cheaper than as many concatenations."""
    at = "strftime('%Y-%m-%dT%H:%M:%SZ', CAST(observed_at AS INTEGER), 'unixepoch')"  # floor: never negative
    values = MEASUREMENT_FIELDS[1:]
    if fmt == "csv":  # %s of NULL is empty
        line = f"printf('{','.join(['%s'] * len(MEASUREMENT_FIELDS))}' || char(13, 10), {at}, {', '.join(values)})"
    else:
        shape = '{"observed_at":"%s",' + ",".join(f'"{v}":%s' for v in values) + "}"
        line = f"printf('{shape}', {at}, {', '.join(f'coalesce({v}, {chr(39)}null{chr(39)})' for v in values)})"
    exact = " AND ".join(["observed_at >= 0 AND observed_at < 253402300800",
                          *(f"typeof({v}) IN ('integer', 'null')" for v in values)])
    return f"CASE WHEN {exact} THEN CAST({line} AS BLOB) END"


EXPORT_SQL = {fmt: _export_sql(fmt) for fmt in EXPORT_FORMATS}


class QuotaStore(StoreCore):
    async def add_quota(self, *, name: str, target: str, action: str, last_n_posts: int,
                        quantity: int | None, orders: int | None, interval_seconds: float,
                        expires_at: float) -> int:
        async with self.tx() as tx:
            cur = await tx.execute(
                "INSERT INTO quotas (name, target, action, last_n_posts, quantity_total, quantity_left, orders_left,"
                " interval_seconds, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (name, target, action, last_n_posts, quantity if quantity is not None else orders, quantity,
                 orders, interval_seconds, expires_at, now()))
            quota_id = int(cur.lastrowid or 0)
            await tx.event("quota.added", f"quota {name}: {action} on {target}", quota_id=quota_id,
                           data={"action": action, "target": target})
            tx.touch_quota(quota_id)
            return quota_id

    async def quotas(self) -> list[dict[str, Any]]:
        return [quota_view(r) for r in await self.read(QUOTA_VIEW + " ORDER BY q.id")]

    async def quota(self, quota_id: int) -> dict[str, Any]:
        rows = list(await self.read(QUOTA_VIEW + " WHERE q.id = ?", (quota_id,)))
        if not rows:
            raise NotFound(f"quota {quota_id}: no such quota")
        return quota_view(rows[0])

    async def quotas_by_id(self, tx: ApiTx | None, ids: Iterable[int]) -> list[dict[str, Any]]:
        """Views of these quotas; inside a transaction pass it, to read what it wrote."""
        sql, params = QUOTA_VIEW + " WHERE q.id IN (SELECT value FROM json_each(?))", (json.dumps(sorted(ids)),)
        rows = await (own(tx).fetchall(sql, params) if tx else self.read(sql, params))
        return [quota_view(r) for r in rows]

    async def set_quota_paused(self, quota_id: int, paused: bool) -> bool:
        """``Conflict`` for a quota whose time has run out, with nothing written: it will not run again."""
        done = await self.set_quotas_paused([quota_id], paused)
        if done.refused:
            raise Conflict(done.refused[0][1])
        return bool(done.changed)

    async def set_quotas_paused(self, ids: Sequence[int], paused: bool) -> QuotaPause:
        """Pause (or resume) these quotas; an expired one is refused, with why, and left as it is. NotFound
        for an id that is no quota, before anything is written."""
        found = {r[0] for r in await self.read("SELECT id FROM quotas WHERE id IN (SELECT value FROM json_each(?))",
                                               (json.dumps(list(ids)),))}
        if missing := set(ids) - found:
            raise NotFound(f"quota {min(missing)}: no such quota")
        changed: list[int] = []
        refused: list[tuple[int, str]] = []
        for chunk in chunked(sorted(set(ids))):
            async with self.tx() as tx:
                rows = await tx.fetchall("SELECT id, expires_at, paused FROM quotas WHERE id IN (SELECT value FROM"
                                         " json_each(?)) ORDER BY id", (json.dumps(list(chunk)),))
                at = now()
                refused += [(r[0], quota_expired(r[0], r[1], paused)) for r in rows if r[1] <= at]
                change = [r[0] for r in rows if r[1] > at and bool(r[2]) != paused]
                await tx.execute("UPDATE quotas SET paused = ? WHERE id IN (SELECT value FROM json_each(?))",
                                 (int(paused), json.dumps(change)))
                await tx.events_many([{"kind": "quota.paused" if paused else "quota.resumed", "quota_id": quota_id,
                                       "message": f"quota {quota_id} {'paused' if paused else 'resumed'}"}
                                      for quota_id in change])
                for quota_id in change:
                    tx.touch_quota(quota_id)
            changed += change
        return QuotaPause(changed, refused)

    async def uninspected_quotas(self) -> list[QuotaRef]:
        return [QuotaRef(r["id"], r["target"]) for r in await self.read(
            "SELECT id, target FROM quotas WHERE inspection_ok IS NULL AND expires_at > ? ORDER BY id", (now(),))]

    async def record_inspection(self, quota_id: int, *, ok: bool | None, peer_id: int | None = None,
                                title: str | None = None, error: str | None = None) -> None:
        """ok None: not decided yet (no probe account, or a wait); the error says why it waits."""
        async with self.tx() as tx:
            if ok is None:
                await tx.execute("UPDATE quotas SET last_error = ? WHERE id = ?", (error, quota_id))
            else:
                await tx.execute(
                    "UPDATE quotas SET inspection_ok = ?, inspection_at = ?, inspection_error = ?, peer_id = ?,"
                    " title = ?, last_error = ?, next_run_at = CASE WHEN ? THEN ? ELSE next_run_at END WHERE id = ?",
                    (int(ok), now(), error, peer_id, title, error, int(ok), now(), quota_id))
                await tx.event("quota.inspected", f"quota {quota_id}: " + (f"ok, {title}" if ok else f"failed: {error}"),
                               quota_id=quota_id, data={"ok": ok, "error": error})
            tx.touch_quota(quota_id)

    async def probe_accounts(self, owner: str | None = None) -> list[ProbeAccount]:
        """Probe accounts that can work now, least recently used first, each with its ownership epoch;
        ``owner``: only those this node owns (a probe reads on the node that holds its connection)."""
        return [ProbeAccount(r["id"], r["tg_user_id"], r["phone"], r["owner_epoch"]) for r in await self.read(
            "SELECT a.id, a.tg_user_id, a.phone, a.owner_epoch FROM accounts a WHERE a.is_probe = 1"
            " AND a.is_active = 1 AND a.disabled_at IS NULL AND (a.cooldown_until IS NULL OR a.cooldown_until <= :now)"
            " AND NOT EXISTS (SELECT 1 FROM account_locks l WHERE l.account_id = a.id AND l.expires_at > :now)"
            + ("" if owner is None else " AND a.owner = :owner")
            + " ORDER BY COALESCE(a.last_used_at, 0), a.id", {"now": now(), "owner": owner})]

    async def measurement_pages(self, quota_id: int, limit: int | None = None,
                                page: int = 5000) -> AsyncIterator[list[tuple[Any, ...]]]:
        """A quota's measurements oldest first, as tuples in ``MEASUREMENT_FIELDS`` order, one page per
        short read, so an export of millions never sits in memory nor holds one read open; ``limit``:
        only the latest that many (a sparkline)."""
        async for rows in self._measurement_keyset(quota_id, limit, page, FIELDS_SQL):
            yield [(iso(r[0]), *r[1:8]) for r in rows]

    async def measurement_export(self, quota_id: int, fmt: str, limit: int | None = None,
                                 page: int = EXPORT_PAGE) -> AsyncIterator[bytes]:
        """``measurement_pages`` as the export's bytes (``views.measurement_rows``), page by page: SQLite
        writes each row's line on the reader's thread; a row SQL cannot write exactly is read again and
        written by ``measurement_rows``."""
        async for rows in self._measurement_keyset(quota_id, limit, page, EXPORT_SQL[fmt]):
            if all(r[0] is not None for r in rows):
                yield (b"" if fmt == "csv" else b",").join(r[0] for r in rows)
                continue
            parts = []
            for r in rows:
                if r[0] is None:
                    [raw] = list(await self.read(f"SELECT {FIELDS_SQL} FROM measurements WHERE id = ?", (r[2],)))
                    parts.append(measurement_rows(fmt, [(iso(raw[0]), *raw[1:8])]))
                else:
                    parts.append(r[0])
            yield (b"" if fmt == "csv" else b",").join(parts)

    async def _measurement_keyset(self, quota_id: int, limit: int | None, page: int,
                                  select: str) -> AsyncIterator[list[sqlite3.Row]]:
        """Pages of ``select`` (then observed_at and id, its keyset) over a quota's measurements, oldest
        first; ``limit``: only the latest that many. The next page is read while the caller sends this one,
        so the reader's thread, which does most of an export's work, never waits for the socket."""
        start: tuple[float, int] = (float("-inf"), 0)  # keyset: after this (observed_at, id)
        if limit is not None:
            first = list(await self.read(
                "SELECT observed_at, id FROM measurements WHERE quota_id = ? ORDER BY observed_at DESC, id DESC"
                " LIMIT 1 OFFSET ?", (quota_id, limit - 1)))
            if first:
                start = (first[0][0], first[0][1] - 1)

        async def read(after: tuple[float, int], n: int) -> list[sqlite3.Row]:
            return list(await self.read(
                f"SELECT {select}, observed_at, id FROM measurements WHERE quota_id = ? AND (observed_at, id) > (?, ?)"
                " ORDER BY observed_at, id LIMIT ?", (quota_id, *after, n)))

        async for rows in prefetched(read, start, limit, page):
            yield rows

