"""The provider API's cache of known tokens (tgdaemon/provider/auth.py) over a real store of each driver: a
token is checked from memory between reads, and a revoke still holds, at once through this store and within
``CACHE_SECONDS`` through another one on the same database (another node of the fleet, whose changes this
store's ``providers_version`` does not count). The clock the cache keeps time by is the test's own."""

from __future__ import annotations

from store.conftest import Database
from tgdaemon.provider.auth import CACHE_SECONDS, ProviderAuth, hash_token, new_token
from tgdaemon.store import Store


class Clock:
    def __init__(self) -> None:
        self.at = 1000.0

    def __call__(self) -> float:
        return self.at


async def test_a_known_token_is_checked_from_memory_until_its_time_is_up(store: Store) -> None:
    clock = Clock()
    auth = ProviderAuth(clock)
    token = new_token()
    await store.add_provider("acme", hash_token(token))
    assert auth.cached(store, hash_token(token)) is None  # never read yet
    found = await auth.lookup(store, hash_token(token))
    assert found is not None and found.name == "acme" and found.revoked_at is None
    assert auth.cached(store, hash_token(token)) == found
    clock.at += CACHE_SECONDS
    assert auth.cached(store, hash_token(token)) is None  # read again from now on


async def test_an_unknown_token_is_never_cached(store: Store) -> None:
    auth = ProviderAuth(Clock())
    unknown = hash_token(new_token())
    assert await auth.lookup(store, unknown) is None
    assert auth.cached(store, unknown) is None
    assert await auth.lookup(store, unknown) is None


async def test_a_revoke_through_this_store_holds_at_once(store: Store) -> None:
    auth = ProviderAuth(Clock())
    token = hash_token(new_token())
    await store.add_provider("acme", token)
    assert auth.cached(store, token) is None and await auth.lookup(store, token) is not None
    assert auth.cached(store, token) is not None
    await store.revoke_provider("acme")
    assert auth.cached(store, token) is None  # the clock has not moved: the version did
    found = await auth.lookup(store, token)
    assert found is not None and found.revoked_at is not None


async def test_a_revoke_through_another_node_holds_here_within_the_cache_time(store: Store,
                                                                              database: Database) -> None:
    clock = Clock()
    auth = ProviderAuth(clock)
    token = hash_token(new_token())
    await store.add_provider("acme", token)
    assert await auth.lookup(store, token) is not None
    async with database.opened() as other:
        await other.revoke_provider("acme")
    clock.at += CACHE_SECONDS / 2
    assert auth.cached(store, token) is not None  # this store was not told: the cache still vouches for it
    clock.at += CACHE_SECONDS / 2
    assert auth.cached(store, token) is None
    found = await auth.lookup(store, token)
    assert found is not None and found.revoked_at is not None
