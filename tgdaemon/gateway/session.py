"""A Telethon session that lives in the daemon's database, never in a ``.session`` file.

Telethon 1.39 calls session methods synchronously, so this is its
``MemorySession`` loaded from the store before the client starts, with every
change handed to callbacks that the client pool turns into store writes.
Only channels go to the persistent entity cache: they are what tasks resolve,
and resolving a username again is what earns long flood waits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from telethon import utils
from telethon.crypto import AuthKey
from telethon.sessions import MemorySession
from telethon.tl import types

from tgdaemon.store import EntityRow, SessionData


def is_channel_row(row: EntityRow) -> bool:
    return utils.resolve_id(row[0])[1] is types.PeerChannel


class StoreSession(MemorySession):
    def __init__(self, data: SessionData | None, entities: list[EntityRow],
                 on_session: Callable[[SessionData], None], on_entities: Callable[[list[EntityRow]], None]) -> None:
        super().__init__()
        if data is not None:
            super().set_dc(data.dc_id, data.server, data.port)
            self._auth_key = AuthKey(data.auth_key) if data.auth_key else None
        self._entities = set(entities)
        self._on_session = on_session
        self._on_entities = on_entities
        self._dirty = False

    def __repr__(self) -> str:
        return f"<StoreSession dc={self._dc_id} key={'set' if self._auth_key else 'none'}>"

    def set_dc(self, dc_id: int, server_address: str, port: int) -> None:
        super().set_dc(dc_id, server_address, port)
        self._dirty = True

    @property
    def auth_key(self) -> AuthKey | None:
        return self._auth_key

    @auth_key.setter
    def auth_key(self, value: AuthKey | None) -> None:
        if (value.key if value else None) != (self._auth_key.key if self._auth_key else None):
            self._dirty = True
        self._auth_key = value

    def data(self) -> SessionData:
        return SessionData(self._dc_id, self._server_address or "", self._port or 0,
                           self._auth_key.key if self._auth_key else None)

    def save(self) -> None:
        # Telethon saves a new DC with no key before it makes one there (USER_MIGRATE); keep the
        # old, working pair in the store until the new key exists.
        if self._dirty and self._auth_key is not None:
            self._dirty = False
            self._on_session(self.data())

    def process_entities(self, tlo: Any) -> None:
        rows = self._entities_to_rows(tlo)
        new = [row for row in rows if row not in self._entities]
        self._entities.update(rows)
        channels = [row for row in new if is_channel_row(row)]
        if channels:
            self._on_entities(channels)
