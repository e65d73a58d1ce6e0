"""The one account lock and what an outcome does to an account (design 3, 4 and 6), on both drivers: joined
to the caller's transaction, told to the commit hook, and the same for setup tasks and quota reports."""

from __future__ import annotations

import time
from typing import Any

from store import backdoor
from store.world import SLACK, close_to
from tgdaemon.store import AccountEffect, Store, Tx


async def seed(store: Store, n: int = 2) -> None:
    async with store.tx() as tx:
        await store.insert_accounts(tx, [{"phone": f"+1555222{i:04d}", "tg_user_id": 900 + i, "label": f"l{i}",
                                          "is_probe": 0, "profile_json": "{}"} for i in range(1, n + 1)])


async def take(store: Store, account_id: int, holder: str, seconds: float) -> bool:
    async with store.tx() as tx:
        return await store.take_lock(tx, account_id, holder, seconds)


async def release(store: Store, account_id: int, holder: str) -> None:
    async with store.tx() as tx:
        await store.release_lock(tx, account_id, holder)


async def test_a_lock_has_one_holder_until_it_is_released_or_expires(store: Store) -> None:
    await seed(store)
    assert await take(store, 1, "setup:1", 600)
    assert not await take(store, 1, "quota:2", 600)  # another holder's live lock
    assert await take(store, 1, "setup:1", 900)  # the same holder renews it
    lock = await backdoor.row(store, "account_locks", account_id=1)
    assert lock["holder"] == "setup:1" and close_to(lock["expires_at"], time.time() + 900)
    await release(store, 1, "quota:2")  # not the holder: nothing happens
    assert (await store.get_account(1))["state"] == "busy"
    await release(store, 1, "setup:1")
    assert await backdoor.maybe_row(store, "account_locks", account_id=1) is None
    assert (await store.get_account(1))["state"] == "ready"

    assert await take(store, 2, "setup:3", -1)  # expired at once: free for anyone
    assert (await store.get_account(2))["state"] == "ready"
    assert await take(store, 2, "quota:4", 600)
    assert (await backdoor.row(store, "account_locks", account_id=2))["holder"] == "quota:4"


async def test_taking_and_releasing_tell_the_commit_hook_only_when_they_change_something(store: Store) -> None:
    await seed(store)
    touched: list[set[int]] = []

    async def hook(tx: Tx) -> None:
        touched.append(set(tx.accounts))

    store.on_commit = hook
    assert await take(store, 1, "setup:1", 600)
    assert not await take(store, 1, "setup:2", 600)
    await release(store, 1, "setup:2")
    await release(store, 1, "setup:1")
    assert touched == [{1}, {1}]


async def test_a_lock_taken_in_a_transaction_that_fails_is_not_taken(store: Store) -> None:
    await seed(store)
    try:
        async with store.tx() as tx:
            assert await store.take_lock(tx, 1, "setup:1", 600)
            raise LookupError("the caller's own failure")
    except LookupError:
        pass
    assert await backdoor.rows(store, "account_locks") == []
    assert await take(store, 1, "quota:1", 600)


async def effect(store: Store, account_id: int, e: AccountEffect) -> None:
    async with store.tx() as tx:
        await store.apply_account_effect(tx, account_id, e)


async def account(store: Store, account_id: int) -> dict[str, Any]:
    return await backdoor.row(store, "accounts", id=account_id)


async def test_an_ok_outcome_records_the_success_and_clears_the_last_error(store: Store) -> None:
    await seed(store)
    await effect(store, 1, AccountEffect(error_code="RPC_CALL_FAIL"))
    assert (await account(store, 1))["last_error_code"] == "RPC_CALL_FAIL"
    await effect(store, 1, AccountEffect(ok=True, name=("Ann", "Lee")))
    row = await account(store, 1)
    assert (row["last_error_code"], row["first_name"], row["last_name"]) == (None, "Ann", "Lee")
    assert close_to(row["last_ok_at"], time.time())
    assert (await store.get_account(1))["name"] == "Ann Lee"


async def test_a_cooldown_only_ever_gets_longer_and_says_so_once(store: Store) -> None:
    await seed(store)
    at = time.time()
    await effect(store, 1, AccountEffect(cooldown_until=at + 300, cooldown_reason="FLOOD_WAIT",
                                         error_code="FLOOD_WAIT"))
    await effect(store, 1, AccountEffect(cooldown_until=at + 60, cooldown_reason="pace"))  # shorter: ignored
    row = await account(store, 1)
    assert (row["cooldown_reason"], row["last_error_code"]) == ("FLOOD_WAIT", "FLOOD_WAIT")
    assert abs(row["cooldown_until"] - (at + 300)) < 1e-3 and abs(row["cooldown_seconds"] - 300) < SLACK
    await effect(store, 1, AccountEffect(cooldown_until=at + 900, cooldown_reason="PEER_FLOOD"))
    row = await account(store, 1)
    assert row["cooldown_reason"] == "PEER_FLOOD" and abs(row["cooldown_until"] - (at + 900)) < 1e-3
    cooled = [e for e in await store.events_after(0, 10) if e["kind"] == "account.cooldown"]
    assert [(e["account_id"], e["data"]["reason"], e["data"]["seconds"]) for e in cooled] == [
        (1, "FLOOD_WAIT", 300), (1, "PEER_FLOOD", 900)]
    assert (await store.get_account(1))["state"] == "cooldown"
    assert (await store.get_account(2))["state"] == "ready"


async def test_a_dead_session_disables_the_account_once(store: Store) -> None:
    await seed(store)
    await effect(store, 2, AccountEffect(disable_reason="USER_DEACTIVATED", error_code="USER_DEACTIVATED"))
    first = await account(store, 2)
    await effect(store, 2, AccountEffect(disable_reason="SESSION_REVOKED"))
    row = await account(store, 2)
    assert (row["disabled_reason"], row["disabled_at"]) == ("USER_DEACTIVATED", first["disabled_at"])
    [disabled] = [e for e in await store.events_after(0, 10) if e["kind"] == "account.disabled"]
    assert disabled["data"] == {"reason": "USER_DEACTIVATED", "automatic": True}
    assert await store.enable_account(2)  # the operator's way back


async def test_every_effect_touches_the_account(store: Store) -> None:
    await seed(store)
    touched: list[set[int]] = []

    async def hook(tx: Tx) -> None:
        touched.append(set(tx.accounts))

    store.on_commit = hook
    await effect(store, 2, AccountEffect(error_code="RPC_CALL_FAIL"))
    async with store.tx() as tx:
        await store.mark_used(tx, 1)  # a probe's turn: no state anyone sees changes
    assert touched == [{2}]
    assert close_to((await account(store, 1))["last_used_at"], time.time())
