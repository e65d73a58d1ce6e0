"""Sessions and the per-account entity cache, and adding accounts that come with a session.

Auth keys enter and leave only through these methods; nothing here logs them,
puts them in an event, or renders them in a repr.
"""

from __future__ import annotations

import json
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
from tgdaemon.store.rules import device_event
from tgdaemon.store.sqlite.accounts import AccountStore
from tgdaemon.store.sqlite.core import Tx
from tgdaemon.store.views import client_params
from tgdaemon.timeutil import now

CLIENT_PARAMS = ("SELECT a.api_id, a.api_hash, a.device_model, a.system_version, a.app_version, a.lang_code,"
                 " a.system_lang_code, p.id AS proxy_id, p.scheme, p.host, p.port, p.username, p.state, ps.secret"
                 " FROM accounts a LEFT JOIN proxies p ON p.id = a.proxy_id"
                 " LEFT JOIN proxy_secrets ps ON ps.proxy_id = p.id WHERE a.id = ?")
IDS = "(SELECT value FROM json_each(?))"


def _duplicate_checks(account: NewAccount, session: SessionData) -> list[tuple[str, str, Any]]:
    """What makes an account a duplicate: (what, its query, the value), for the values known."""
    checks: list[tuple[str, str, Any]] = [
        ("Telegram user", "SELECT id, label FROM accounts WHERE tg_user_id = ?", account.tg_user_id),
        ("phone number", "SELECT id, label FROM accounts WHERE phone = ?", account.phone),
        ("session", "SELECT a.id, a.label FROM sessions s JOIN accounts a ON a.id = s.account_id"
                    " WHERE s.auth_key = ?", session.auth_key),
    ]
    return [check for check in checks if check[2] is not None]


class SessionStore(AccountStore):
    async def load_session(self, account_id: int) -> SessionData | None:
        rows = list(await self.read(
            "SELECT dc_id, server, port, auth_key FROM sessions WHERE account_id = ?", (account_id,)))
        if not rows:
            return None
        r = rows[0]
        return SessionData(r["dc_id"], r["server"], r["port"], r["auth_key"])

    async def client_params(self, account_id: int) -> ClientParams:
        rows = list(await self.read(CLIENT_PARAMS, (account_id,)))
        r = rows[0] if rows else None
        return client_params(r)

    async def save_session(self, account_id: int, data: SessionData, *, epoch: int | None = None) -> bool:
        """``epoch``: written only while it is the account's ownership epoch (False, nothing written, when
        not): a former owner's client must not overwrite what the new owner's negotiated."""
        async with self.tx() as tx:
            return await self._upsert_session(tx, account_id, data, epoch)

    async def _upsert_session(self, tx: Tx, account_id: int, data: SessionData, epoch: int | None = None) -> bool:
        """Whether it was written: always, unless ``epoch`` is given and is no longer the account's."""
        fence = "" if epoch is None else " AND EXISTS (SELECT 1 FROM accounts WHERE id = ? AND owner_epoch = ?)"
        cur = await tx.execute(  # "WHERE true": an upsert from a SELECT needs a WHERE (SQLite's parser)
            "INSERT INTO sessions (account_id, dc_id, server, port, auth_key, updated_at)"
            f" SELECT ?, ?, ?, ?, ?, ? WHERE true{fence}"
            " ON CONFLICT (account_id) DO UPDATE SET dc_id = excluded.dc_id, server = excluded.server,"
            " port = excluded.port, auth_key = excluded.auth_key, updated_at = excluded.updated_at",
            (account_id, data.dc_id, data.server, data.port, data.auth_key, now(),
             *(() if epoch is None else (account_id, epoch))),
        )
        return bool(cur.rowcount)

    async def load_entities(self, account_id: int) -> list[EntityRow]:
        rows = await self.read(
            "SELECT peer_id, access_hash, username, phone, name FROM entities WHERE account_id = ?", (account_id,))
        return [tuple(r) for r in rows]  # type: ignore[misc]

    async def save_entities(self, account_id: int, rows: Iterable[EntityRow]) -> None:
        rows = list(rows)
        if not rows:
            return
        async with self.tx() as tx:
            await tx.conn.executemany(
                "INSERT INTO entities (account_id, peer_id, access_hash, username, phone, name, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (account_id, peer_id) DO UPDATE SET"
                " access_hash = excluded.access_hash, username = COALESCE(excluded.username, entities.username),"
                " phone = COALESCE(excluded.phone, entities.phone), name = COALESCE(excluded.name, entities.name),"
                " updated_at = excluded.updated_at",
                [(account_id, *row, now()) for row in rows],
            )

    async def find_entity(self, account_id: int, username: str) -> EntityRow | None:
        rows = list(await self.read(
            "SELECT peer_id, access_hash, username, phone, name FROM entities"
            " WHERE account_id = ? AND username = ? COLLATE NOCASE", (account_id, username)))
        return tuple(rows[0]) if rows else None  # type: ignore[return-value]

    async def add_account(self, account: NewAccount, session: SessionData, *, how: str) -> int:
        """Insert an account with its session in one transaction; a duplicate user or phone is refused."""
        async with self.tx() as tx:
            await self._refuse_duplicate(tx, account, session)
            if account.proxy_id is not None and not list(await tx.fetchall("SELECT 1 FROM proxies WHERE id = ?",
                                                                            (account.proxy_id,))):
                raise NotFound(f"proxy {account.proxy_id}: no such proxy (removed meanwhile?)")
            cur = await tx.execute(
                "INSERT INTO accounts (phone, tg_user_id, label, is_probe, first_name, last_name, profile_json,"
                f" created_at, last_ok_at, {', '.join(DEVICE_FIELDS)}, proxy_id)"
                f" VALUES (?, ?, ?, ?, ?, ?, '{{}}', ?, ?, {', '.join('?' * len(DEVICE_FIELDS))}, ?)",
                (account.phone, account.tg_user_id, account.label, int(account.is_probe), account.first_name,
                 account.last_name, now(), now(), *(getattr(account.device, f) for f in DEVICE_FIELDS),
                 account.proxy_id),
            )
            account_id = int(cur.lastrowid or 0)
            await self._upsert_session(tx, account_id, session)
            await tx.event(f"account.{how}", f"{how}: {account.label}" + (" (probe)" if account.is_probe else ""),
                           account_id=account_id, data={"probe": account.is_probe})
            return account_id

    async def session_account(self, auth_key: bytes) -> tuple[int, str] | None:
        rows = list(await self.read("SELECT a.id, a.label FROM sessions s JOIN accounts a ON a.id = s.account_id"
                                    " WHERE s.auth_key = ? ORDER BY 1 LIMIT 1", (auth_key,)))
        return None if not rows else (rows[0]["id"], rows[0]["label"])

    async def duplicate_of(self, account: NewAccount, session: SessionData) -> str | None:
        for what, sql, value in _duplicate_checks(account, session):
            rows = list(await self.read(sql + " ORDER BY 1 LIMIT 1", (value,)))
            if rows:
                return f"that {what} is already account {rows[0]['id']} ({rows[0]['label']})"
        return None

    async def _refuse_duplicate(self, tx: Tx, account: NewAccount, session: SessionData) -> None:
        """Same user, same phone, or the very same auth key (an unchecked import knows no user)."""
        for what, sql, value in _duplicate_checks(account, session):
            rows = list(await tx.fetchall(sql + " ORDER BY 1 LIMIT 1", (value,)))
            if rows:
                raise Conflict(f"that {what} is already account {rows[0]['id']} ({rows[0]['label']})")

    async def set_device(self, account_ids: Sequence[int], device: Device, *, replace: bool) -> int:
        ids = sorted(set(account_ids))
        values = [getattr(device, f) for f in DEVICE_FIELDS]
        sets = ", ".join(f"{f} = ?" if replace else f"{f} = COALESCE(?, {f})" for f in DEVICE_FIELDS)
        async with self.tx() as tx:
            found = {r[0] for r in await tx.fetchall(f"SELECT id FROM accounts WHERE id IN {IDS}", (json.dumps(ids),))}
            if missing := sorted(set(ids) - found):
                raise NotFound(f"account {missing[0]}: no such account")
            await tx.execute(f"UPDATE accounts SET {sets} WHERE id IN {IDS}", (*values, json.dumps(ids)))
            for account_id in ids:
                tx.touch(account_id)
                message, data = device_event(device, replace)
                await tx.event("account.device", message, account_id=account_id, data=data)
            return len(ids)
