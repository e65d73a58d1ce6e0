"""Providers on both drivers: a name is taken for good, a token is only ever known by its hash, revoking is
harmless to repeat, and every change moves ``providers_version`` (what token caches go by)."""

from __future__ import annotations

import re
import time

import pytest

from store import backdoor
from store.world import close_to
from tgdaemon.errors import Conflict, NotFound
from tgdaemon.store import Provider, Store

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


async def test_add_list_and_look_up_by_token_hash(store: Store) -> None:
    version = store.providers_version
    shown = await store.add_provider("zeta", "hash-z")
    assert set(shown) == {"name", "created_at", "last_seen_at", "revoked_at"}  # never the hash
    assert shown["name"] == "zeta" and ISO.fullmatch(shown["created_at"])
    assert (shown["last_seen_at"], shown["revoked_at"]) == (None, None)
    await store.add_provider("acme", "hash-a")
    assert store.providers_version == version + 2
    assert [p["name"] for p in await store.list_providers()] == ["acme", "zeta"]
    assert await store.provider_by_token_hash("hash-a") == Provider("acme", "hash-a", None)
    assert await store.provider_by_token_hash("hash-unknown") is None
    added = [e for e in await store.events_after(0, 10) if e["kind"] == "provider.added"]
    assert [e["data"] for e in added] == [{"provider": "zeta"}, {"provider": "acme"}]
    assert not any("hash-" in e["message"] or "hash-" in str(e["data"]) for e in await store.events_after(0, 10))


async def test_a_name_is_taken_for_good_and_must_be_a_valid_one(store: Store) -> None:
    await store.add_provider("acme", "hash-1")
    with pytest.raises(Conflict, match="^provider acme already exists; choose another name$"):
        await store.add_provider("acme", "hash-2")
    await store.revoke_provider("acme")
    with pytest.raises(Conflict, match=r"^provider acme already exists \(revoked \d{4}-.*Z\); choose another name$"):
        await store.add_provider("acme", "hash-3")
    for bad in ("local", "Acme", "a", "9lives", "with space"):
        with pytest.raises(ValueError, match="provider name"):
            await store.add_provider(bad, f"hash-{bad}")
    assert [p["name"] for p in await store.list_providers()] == ["acme"]
    assert await backdoor.count(store, "providers") == 1


async def test_revoking_twice_is_harmless_and_the_revoked_token_is_known_as_revoked(store: Store) -> None:
    await store.add_provider("acme", "hash-a")
    version = store.providers_version
    changed, shown = await store.revoke_provider("acme")
    assert changed is True and ISO.fullmatch(shown["revoked_at"])
    again, shown_again = await store.revoke_provider("acme")
    assert again is False and shown_again == shown
    assert store.providers_version == version + 1  # the repeat changed nothing
    found = await store.provider_by_token_hash("hash-a")
    assert found is not None and found.name == "acme" and close_to(found.revoked_at, time.time())
    assert [e["kind"] for e in await store.events_after(0, 10)] == ["provider.added", "provider.revoked"]
    with pytest.raises(NotFound, match="provider nobody"):
        await store.revoke_provider("nobody")


async def test_provider_seen_records_the_last_request(store: Store) -> None:
    await store.add_provider("acme", "hash-a")
    await store.provider_seen("acme")
    [shown] = await store.list_providers()
    assert ISO.fullmatch(shown["last_seen_at"])
    assert close_to((await backdoor.row(store, "providers", name="acme"))["last_seen_at"], time.time())
    await store.provider_seen("nobody")  # a provider revoked and gone meanwhile: nothing to record
    assert await backdoor.count(store, "providers") == 1

