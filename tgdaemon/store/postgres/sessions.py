"""Sessions and the per-account entity cache, and adding accounts that come with a session.

Auth keys enter and leave only through these methods (bytea); nothing here logs them, puts them in an
event, or renders them in a repr.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from tgdaemon.errors import Conflict, NotFound
from tgdaemon.store.api import (
    DEVICE_FIELDS,
    ClientParams,
    Device,
    EntityRow,
    NewAccount,
    SessionData,
)
from tgdaemon.store.postgres.accounts import AccountStore
from tgdaemon.store.postgres.core import Tx
from tgdaemon.store.rules import device_event
from tgdaemon.store.views import client_params
from tgdaemon.timeutil import now

ENTITY = "SELECT peer_id, access_hash, username, phone, name FROM entities"

CLIENT_PARAMS = ("SELECT a.api_id, a.api_hash, a.device_model, a.system_version, a.app_version, a.lang_code,"
                 " a.system_lang_code, p.id AS proxy_id, p.scheme, p.host, p.port, p.username, p.state, ps.secret"
                 " FROM accounts a LEFT JOIN proxies p ON p.id = a.proxy_id"
                 " LEFT JOIN proxy_secrets ps ON ps.proxy_id = p.id WHERE a.id = $1")


def _duplicate_checks(account: NewAccount, session: SessionData) -> list[tuple[str, str, Any]]:
    """What makes an account a duplicate: (what, its query, the value), for the values known."""
    checks: list[tuple[str, str, Any]] = [
        ("Telegram user", "SELECT id, label FROM accounts WHERE tg_user_id = $1", account.tg_user_id),
        ("phone number", "SELECT id, label FROM accounts WHERE phone = $1", account.phone),
        ("session", "SELECT a.id, a.label FROM sessions s JOIN accounts a ON a.id = s.account_id"
                    " WHERE s.auth_key = $1", session.auth_key),
    ]
    return [check for check in checks if check[2] is not None]


class SessionStore(AccountStore):
    async def load_session(self, account_id: int) -> SessionData | None:
        r = await self.read_row("SELECT dc_id, server, port, auth_key FROM sessions WHERE account_id = $1",
                                account_id)
        return None if r is None else SessionData(r["dc_id"], r["server"], r["port"], r["auth_key"])

    async def client_params(self, account_id: int) -> ClientParams:
        r = await self.read_row(CLIENT_PARAMS, account_id)
        return client_params(r)

    async def save_session(self, account_id: int, data: SessionData, *, epoch: int | None = None) -> bool:
        """``epoch``: written only while it is the account's ownership epoch (False, nothing written, when
        not): a former owner's client must not overwrite what the new owner's negotiated."""
        async with self.tx() as tx:
            return await self._upsert_session(tx, account_id, data, epoch)

    async def _upsert_session(self, tx: Tx, account_id: int, data: SessionData, epoch: int | None = None) -> bool:
        """Whether it was written: always, unless ``epoch`` is given and is no longer the account's (the
        account row is read FOR SHARE: no acquisition moves the epoch between the check and the write)."""
        source = ("VALUES ($1, $2, $3, $4, $5, $6)" if epoch is None else
                  ("SELECT $1::bigint, $2::integer, $3::text, $4::integer, $5::bytea, $6::float8 FROM accounts"
                   " WHERE id = $1 AND owner_epoch = $7 FOR SHARE"))
        return bool(await tx.execute(
            f"INSERT INTO sessions (account_id, dc_id, server, port, auth_key, updated_at) {source}"
            " ON CONFLICT (account_id) DO UPDATE SET dc_id = excluded.dc_id, server = excluded.server,"
            " port = excluded.port, auth_key = excluded.auth_key, updated_at = excluded.updated_at",
            account_id, data.dc_id, data.server, data.port, data.auth_key, now(),
            *(() if epoch is None else (epoch,))))

    async def load_entities(self, account_id: int) -> list[EntityRow]:
        rows = await self.read(f"{ENTITY} WHERE account_id = $1", account_id)
        return [tuple(r) for r in rows]  # type: ignore[misc]

    async def save_entities(self, account_id: int, rows: Iterable[EntityRow]) -> None:
        """In the order given (a peer twice: the later wins, as on SQLite): one pipelined round trip."""
        rows = list(rows)
        if not rows:
            return
        at = now()
        async with self.tx() as tx:
            await tx.executemany(
                "INSERT INTO entities (account_id, peer_id, access_hash, username, phone, name, updated_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (account_id, peer_id) DO UPDATE SET"
                " access_hash = excluded.access_hash, username = COALESCE(excluded.username, entities.username),"
                " phone = COALESCE(excluded.phone, entities.phone), name = COALESCE(excluded.name, entities.name),"
                " updated_at = excluded.updated_at",
                [(account_id, *row, at) for row in rows])

    async def find_entity(self, account_id: int, username: str) -> EntityRow | None:
        """Usernames match whatever their case (SQLite: COLLATE NOCASE); the index is on lower(username)."""
        row = await self.read_row(f"{ENTITY} WHERE account_id = $1 AND lower(username) = lower($2) LIMIT 1",
                                  account_id, username)
        return tuple(row) if row is not None else None  # type: ignore[return-value]

    async def add_account(self, account: NewAccount, session: SessionData, *, how: str) -> int:
        """Insert an account with its session in one transaction; a duplicate user or phone is refused."""
        async with self.tx() as tx:
            await self._refuse_duplicate(tx, account, session)
            if account.proxy_id is not None and await tx.fetchval("SELECT 1 FROM proxies WHERE id = $1 FOR SHARE",
                                                                   account.proxy_id) is None:
                raise NotFound(f"proxy {account.proxy_id}: no such proxy (removed meanwhile?)")
            at = now()
            account_id = int(await tx.fetchval(
                "INSERT INTO accounts (phone, tg_user_id, label, is_probe, first_name, last_name, profile_json,"
                f" created_at, last_ok_at, {', '.join(DEVICE_FIELDS)}, proxy_id)"
                " VALUES ($1, $2, $3, $4, $5, $6, '{}', $7, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id",
                account.phone, account.tg_user_id, account.label, int(account.is_probe), account.first_name,
                account.last_name, at, *(getattr(account.device, f) for f in DEVICE_FIELDS), account.proxy_id))
            await self._upsert_session(tx, account_id, session)
            await tx.event(f"account.{how}", f"{how}: {account.label}" + (" (probe)" if account.is_probe else ""),
                           account_id=account_id, data={"probe": account.is_probe})
            return account_id

    async def session_account(self, auth_key: bytes) -> tuple[int, str] | None:
        row = await self.read_row("SELECT a.id, a.label FROM sessions s JOIN accounts a ON a.id = s.account_id"
                                  " WHERE s.auth_key = $1 ORDER BY 1 LIMIT 1", auth_key)
        return None if row is None else (row["id"], row["label"])

    async def duplicate_of(self, account: NewAccount, session: SessionData) -> str | None:
        for what, sql, value in _duplicate_checks(account, session):
            row = await self.read_row(sql + " ORDER BY 1 LIMIT 1", value)
            if row is not None:
                return f"that {what} is already account {row['id']} ({row['label']})"
        return None

    async def _refuse_duplicate(self, tx: Tx, account: NewAccount, session: SessionData) -> None:
        """Same user, same phone, or the very same auth key (an unchecked import knows no user)."""
        for what, sql, value in _duplicate_checks(account, session):
            row = await tx.fetchrow(sql + " ORDER BY 1 LIMIT 1", value)
            if row is not None:
                raise Conflict(f"that {what} is already account {row['id']} ({row['label']})")

    async def set_device(self, account_ids: Sequence[int], device: Device, *, replace: bool) -> int:
        ids = sorted(set(account_ids))
        values = [getattr(device, f) for f in DEVICE_FIELDS]
        sets = ", ".join(f"{f} = ${n}" if replace else f"{f} = COALESCE(${n}, {f})"
                         for n, f in enumerate(DEVICE_FIELDS, 2))
        async with self.tx() as tx:
            found = {r[0] for r in await tx.fetch("SELECT id FROM accounts WHERE id = ANY($1::bigint[])", ids)}
            if missing := sorted(set(ids) - found):
                raise NotFound(f"account {missing[0]}: no such account")
            await tx.execute(f"UPDATE accounts SET {sets} WHERE id = ANY($1::bigint[])", ids, *values)
            for account_id in ids:
                tx.touch(account_id)
                message, data = device_event(device, replace)
                await tx.event("account.device", message, account_id=account_id, data=data)
            return len(ids)
