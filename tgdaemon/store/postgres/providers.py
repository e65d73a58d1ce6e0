"""Providers: the workers that pull tasks over the provider API, each known by a name and a token's hash.

The token itself never reaches this module: callers hash it first (see ``tgdaemon.provider.auth``), so
neither the database nor the audit trail can ever hold it.
"""

from __future__ import annotations

from typing import Any

from tgdaemon.errors import Conflict, NotFound
from tgdaemon.store.api import Provider
from tgdaemon.store.postgres.core import PostgresCore
from tgdaemon.store.views import provider_name_problem, provider_view
from tgdaemon.timeutil import iso, now


class ProviderStore(PostgresCore):
    # Bumped after every committed change, so in-memory token caches (provider.auth) drop what they hold; after
    # the commit, so a row cached from a read while the change was in flight is dropped too.
    providers_version: int = 0

    async def add_provider(self, name: str, token_hash: str) -> dict[str, Any]:
        """A new provider; ``Conflict`` if the name was ever used (a revoked name stays taken: its history stays)."""
        if problem := provider_name_problem(name):
            raise ValueError(problem)
        async with self.tx() as tx:
            found = await tx.fetchrow("SELECT revoked_at FROM providers WHERE name = $1", name)
            if found is not None:
                revoked = f" (revoked {iso(found[0])})" if found[0] is not None else ""
                raise Conflict(f"provider {name} already exists{revoked}; choose another name")
            row = await tx.fetchrow("INSERT INTO providers (name, token_hash, created_at) VALUES ($1, $2, $3)"
                                    " RETURNING *", name, token_hash, now())
            await tx.event("provider.added", f"provider {name} added", data={"provider": name})
        self.providers_version += 1
        assert row is not None
        return provider_view(row)

    async def list_providers(self) -> list[dict[str, Any]]:
        return [provider_view(r) for r in await self.read('SELECT * FROM providers ORDER BY name COLLATE "C"')]

    async def revoke_provider(self, name: str) -> tuple[bool, dict[str, Any]]:
        """Revoke; (False, provider) when it already was, so a repeated revoke is harmless."""
        async with self.tx() as tx:
            row = await tx.fetchrow("SELECT * FROM providers WHERE name = $1 FOR UPDATE", name)
            if row is None:
                raise NotFound(f"provider {name}: no such provider")
            changed = row["revoked_at"] is None
            if changed:
                row = await tx.fetchrow("UPDATE providers SET revoked_at = $1 WHERE name = $2 RETURNING *", now(), name)
                await tx.event("provider.revoked", f"provider {name} revoked", data={"provider": name})
        if changed:
            self.providers_version += 1
        assert row is not None
        return changed, provider_view(row)

    async def provider_by_token_hash(self, token_hash: str) -> Provider | None:
        row = await self.read_row("SELECT name, token_hash, revoked_at FROM providers WHERE token_hash = $1",
                                  token_hash)
        return Provider(row["name"], row["token_hash"], row["revoked_at"]) if row is not None else None

    async def provider_seen(self, name: str) -> None:
        """Record a request from ``name``; callers throttle this (it takes the write lock)."""
        async with self.tx() as tx:
            await tx.execute("UPDATE providers SET last_seen_at = $1 WHERE name = $2", now(), name)
