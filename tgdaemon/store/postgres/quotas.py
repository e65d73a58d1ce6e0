"""Quotas: counted, expiring monitoring of a public channel, and their inspection by a probe account.

The SQLite twin (tgdaemon/store/sqlite/quotas.py) states the rules; these are the same statements in
PostgreSQL's dialect: ``$n`` parameters, ``= ANY`` over an array instead of ``json_each``, RETURNING
instead of ``lastrowid``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from tgdaemon.errors import Conflict, NotFound
from tgdaemon.store.api import ProbeAccount, QuotaPause, QuotaRef, chunked
from tgdaemon.store.api import Tx as ApiTx
from tgdaemon.store.pages import prefetched
from tgdaemon.store.postgres.core import PostgresCore, Record, own, retried
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
    """One row of the export as ``views.measurement_rows`` writes it (the values are bigint: their text is
    Python's), or NULL where its time is before 1970 or after 9999."""
    at = """to_char(to_timestamp(floor(observed_at)) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""
    values = MEASUREMENT_FIELDS[1:]
    if fmt == "csv":
        line = " || ',' || ".join([at, *(f"coalesce({v}::text, '')" for v in values)]) + " || E'\\r\\n'"
    else:
        line = (f"""'{{"observed_at":"' || {at} || '"' || """
                + " || ".join(f"""',"{v}":' || coalesce({v}::text, 'null')""" for v in values) + " || '}'")
    return f"CASE WHEN observed_at >= 0 AND observed_at < 253402300800 THEN {line} END"


EXPORT_SQL = {fmt: _export_sql(fmt) for fmt in EXPORT_FORMATS}


class QuotaStore(PostgresCore):
    async def add_quota(self, *, name: str, target: str, action: str, last_n_posts: int,
                        quantity: int | None, orders: int | None, interval_seconds: float,
                        expires_at: float) -> int:
        async with self.tx() as tx:
            quota_id: int = await tx.fetchval(
                "INSERT INTO quotas (name, target, action, last_n_posts, quantity_total, quantity_left, orders_left,"
                " interval_seconds, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                " RETURNING id",
                name, target, action, last_n_posts, quantity if quantity is not None else orders, quantity,
                orders, interval_seconds, expires_at, now())
            await tx.event("quota.added", f"quota {name}: {action} on {target}", quota_id=quota_id,
                           data={"action": action, "target": target})
            tx.touch_quota(quota_id)
            return quota_id

    async def quotas(self) -> list[dict[str, Any]]:
        return [quota_view(r) for r in await self.read(QUOTA_VIEW + " ORDER BY q.id")]

    async def quota(self, quota_id: int) -> dict[str, Any]:
        row = await self.read_row(QUOTA_VIEW + " WHERE q.id = $1", quota_id)
        if row is None:
            raise NotFound(f"quota {quota_id}: no such quota")
        return quota_view(row)

    async def quotas_by_id(self, tx: ApiTx | None, ids: Iterable[int]) -> list[dict[str, Any]]:
        """Views of these quotas; inside a transaction pass it, to read what it wrote."""
        sql, ids = QUOTA_VIEW + " WHERE q.id = ANY($1::bigint[]) ORDER BY q.id", sorted(ids)
        rows = await (own(tx).fetch(sql, ids) if tx else self.read(sql, ids))
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
        found = {r[0] for r in await self.read("SELECT id FROM quotas WHERE id = ANY($1::bigint[])", list(ids))}
        if missing := set(ids) - found:
            raise NotFound(f"quota {min(missing)}: no such quota")
        changed: list[int] = []
        refused: list[tuple[int, str]] = []
        for chunk in chunked(sorted(set(ids))):
            done = await self._pause_chunk(list(chunk), paused)
            changed += done.changed
            refused += done.refused
        return QuotaPause(changed, refused)

    @retried
    async def _pause_chunk(self, chunk: list[int], paused: bool) -> QuotaPause:
        """The rows are locked (in id order) before they are looked at: an expiry is decided on what is stored."""
        async with self.tx() as tx:
            rows = await tx.fetch("SELECT id, expires_at, paused FROM quotas WHERE id = ANY($1::bigint[]) ORDER BY id"
                                  " FOR UPDATE", chunk)
            at = now()
            change = [r[0] for r in rows if r[1] > at and bool(r[2]) != paused]
            await tx.execute("UPDATE quotas SET paused = $1 WHERE id = ANY($2::bigint[])", int(paused), change)
            await tx.events_many([{"kind": "quota.paused" if paused else "quota.resumed", "quota_id": quota_id,
                                   "message": f"quota {quota_id} {'paused' if paused else 'resumed'}"}
                                  for quota_id in change])
            for quota_id in change:
                tx.touch_quota(quota_id)
        return QuotaPause(change, [(r[0], quota_expired(r[0], r[1], paused)) for r in rows if r[1] <= at])

    async def uninspected_quotas(self) -> list[QuotaRef]:
        return [QuotaRef(r["id"], r["target"]) for r in await self.read(
            "SELECT id, target FROM quotas WHERE inspection_ok IS NULL AND expires_at > $1 ORDER BY id", now())]

    async def record_inspection(self, quota_id: int, *, ok: bool | None, peer_id: int | None = None,
                                title: str | None = None, error: str | None = None) -> None:
        """ok None: not decided yet (no probe account, or a wait); the error says why it waits."""
        async with self.tx() as tx:
            if ok is None:
                await tx.execute("UPDATE quotas SET last_error = $1 WHERE id = $2", error, quota_id)
            else:
                at = now()
                await tx.execute(
                    "UPDATE quotas SET inspection_ok = $1, inspection_at = $2, inspection_error = $3, peer_id = $4,"
                    " title = $5, last_error = $3, next_run_at = CASE WHEN $6::boolean THEN $2 ELSE next_run_at END"
                    " WHERE id = $7", int(ok), at, error, peer_id, title, ok, quota_id)
                await tx.event("quota.inspected",
                               f"quota {quota_id}: " + (f"ok, {title}" if ok else f"failed: {error}"),
                               quota_id=quota_id, data={"ok": ok, "error": error})
            tx.touch_quota(quota_id)

    async def probe_accounts(self, owner: str | None = None) -> list[ProbeAccount]:
        """Probe accounts that can work now, least recently used first, each with its ownership epoch;
        ``owner``: only those this node owns (a probe reads on the node that holds its connection)."""
        return [ProbeAccount(r["id"], r["tg_user_id"], r["phone"], r["owner_epoch"]) for r in await self.read(
            "SELECT a.id, a.tg_user_id, a.phone, a.owner_epoch FROM accounts a WHERE a.is_probe = 1"
            " AND a.is_active = 1 AND a.disabled_at IS NULL AND (a.cooldown_until IS NULL OR a.cooldown_until <= $1)"
            " AND NOT EXISTS (SELECT 1 FROM account_locks l WHERE l.account_id = a.id AND l.expires_at > $1)"
            + ("" if owner is None else " AND a.owner = $2")
            + " ORDER BY COALESCE(a.last_used_at, 0), a.id", now(), *(() if owner is None else (owner,)))]

    async def measurement_pages(self, quota_id: int, limit: int | None = None,
                                page: int = 5000) -> AsyncIterator[list[tuple[Any, ...]]]:
        """A quota's measurements oldest first, as tuples in ``MEASUREMENT_FIELDS`` order, one page per
        short read, so an export of millions never sits in memory nor holds one read open; ``limit``:
        only the latest that many (a sparkline)."""
        async for rows in self._measurement_keyset(quota_id, limit, page, FIELDS_SQL):
            yield [(iso(r[0]), *r[1:8]) for r in rows]

    async def measurement_export(self, quota_id: int, fmt: str, limit: int | None = None,
                                 page: int = EXPORT_PAGE) -> AsyncIterator[bytes]:
        """``measurement_pages`` as the export's bytes (``views.measurement_rows``), page by page, each row
        written by the server; a row whose time SQL cannot write exactly (before 1970, after 9999) is
        written by ``measurement_rows``."""
        async for rows in self._measurement_keyset(quota_id, limit, page, EXPORT_SQL[fmt]):
            if all(r[0] is not None for r in rows):
                yield ("" if fmt == "csv" else ",").join([r[0] for r in rows]).encode()
                continue
            parts = []
            for r in rows:
                if r[0] is None:
                    raw = await self.read_row(f"SELECT {FIELDS_SQL} FROM measurements WHERE id = $1", r[2])
                    assert raw is not None
                    parts.append(measurement_rows(fmt, [(iso(raw[0]), *raw[1:8])]))
                else:
                    parts.append(r[0].encode())
            yield (b"" if fmt == "csv" else b",").join(parts)

    async def _measurement_keyset(self, quota_id: int, limit: int | None, page: int,
                                  select: str) -> AsyncIterator[list[Record]]:
        """Pages of ``select`` (then observed_at and id, its keyset) over a quota's measurements, oldest
        first; ``limit``: only the latest that many. The next page is read while the caller sends this one."""
        if limit is not None and limit <= 0:  # nothing, as on SQLite (where OFFSET -1 is no error)
            return
        start: tuple[float, int] = (float("-inf"), 0)  # keyset: after this (observed_at, id)
        if limit is not None:
            first = await self.read_row(
                "SELECT observed_at, id FROM measurements WHERE quota_id = $1 ORDER BY observed_at DESC, id DESC"
                " LIMIT 1 OFFSET $2", quota_id, limit - 1)
            if first is not None:
                start = (first[0], first[1] - 1)

        async def read(after: tuple[float, int], n: int) -> list[Record]:
            return await self.read(
                f"SELECT {select}, observed_at, id FROM measurements WHERE quota_id = $1"
                " AND (observed_at, id) > ($2, $3) ORDER BY observed_at, id LIMIT $4", quota_id, *after, n)

        async for rows in prefetched(read, start, limit, page):
            yield rows
