"""Providers: the workers that pull tasks over the provider API, each known by a name and a token's hash.

The token itself never reaches this module: callers hash it first (see
``tgdaemon.provider.auth``), so neither the database nor the audit trail can
ever hold it.
"""

from __future__ import annotations

from typing import Any

from tgdaemon.errors import Conflict, NotFound
from tgdaemon.store.api import Provider
from tgdaemon.store.sqlite.core import StoreCore
from tgdaemon.store.views import provider_name_problem, provider_view
from tgdaemon.timeutil import iso, now


class ProviderStore(StoreCore):
    # Bumped after every committed change, so in-memory token caches (provider.auth) drop what they hold; after
    # the commit, so a row cached from the reader while the change was in flight is dropped too.
    providers_version: int = 0

    async def add_provider(self, name: str, token_hash: str) -> dict[str, Any]:
        """A new provider; ``Conflict`` if the name was ever used (a revoked name stays taken: its history stays)."""
        if problem := provider_name_problem(name):
            raise ValueError(problem)
        async with self.tx() as tx:
            found = list(await tx.fetchall("SELECT revoked_at FROM providers WHERE name = ?", (name,)))
            if found:
                revoked = f" (revoked {iso(found[0][0])})" if found[0][0] is not None else ""
                raise Conflict(f"provider {name} already exists{revoked}; choose another name")
            await tx.execute("INSERT INTO providers (name, token_hash, created_at) VALUES (?, ?, ?)",
                             (name, token_hash, now()))
            await tx.event("provider.added", f"provider {name} added", data={"provider": name})
            row = next(iter(await tx.fetchall("SELECT * FROM providers WHERE name = ?", (name,))))
        self.providers_version += 1
        return provider_view(row)

    async def list_providers(self) -> list[dict[str, Any]]:
        return [provider_view(r) for r in await self.read("SELECT * FROM providers ORDER BY name")]

    async def revoke_provider(self, name: str) -> tuple[bool, dict[str, Any]]:
        """Revoke; (False, provider) when it already was, so a repeated revoke is harmless."""
        async with self.tx() as tx:
            rows = list(await tx.fetchall("SELECT revoked_at FROM providers WHERE name = ?", (name,)))
            if not rows:
                raise NotFound(f"provider {name}: no such provider")
            changed = rows[0]["revoked_at"] is None
            if changed:
                await tx.execute("UPDATE providers SET revoked_at = ? WHERE name = ?", (now(), name))
                await tx.event("provider.revoked", f"provider {name} revoked", data={"provider": name})
            row = next(iter(await tx.fetchall("SELECT * FROM providers WHERE name = ?", (name,))))
        if changed:
            self.providers_version += 1
        return changed, provider_view(row)

    async def provider_by_token_hash(self, token_hash: str) -> Provider | None:
        rows = list(await self.read("SELECT name, token_hash, revoked_at FROM providers WHERE token_hash = ?",
                                    (token_hash,)))
        return Provider(rows[0]["name"], rows[0]["token_hash"], rows[0]["revoked_at"]) if rows else None

    async def provider_seen(self, name: str) -> None:
        """Record a request from ``name``; callers throttle this (it takes the write lock)."""
        async with self.tx() as tx:
            await tx.execute("UPDATE providers SET last_seen_at = ? WHERE name = ?", (now(), name))
