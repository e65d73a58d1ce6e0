"""Sessions, entity caches and accounts that come with a session, on both drivers: the auth key comes back
byte for byte, the cache keeps what a later partial row does not say, a username is found whatever its
case, and an account is refused, with nothing written, when its user, phone or key is already there."""

from __future__ import annotations

import os

import pytest

from store import backdoor
from tgdaemon.errors import Conflict
from tgdaemon.store import NewAccount, SessionData, Store


def new(n: int, **over: object) -> NewAccount:
    fields: dict[str, object] = {"phone": f"+1555111{n:04d}", "tg_user_id": 7000 + n, "label": f"acc-{n}",
                                 "is_probe": False, "first_name": "Ann", "last_name": "Lee", **over}
    return NewAccount(**fields)  # type: ignore[arg-type]


def session(key: bytes | None = None, dc_id: int = 2) -> SessionData:
    return SessionData(dc_id, f"149.154.167.{40 + dc_id}", 443, key if key is not None else os.urandom(256))


async def test_a_session_round_trips_and_is_replaced(store: Store) -> None:
    first = session()
    account_id = await store.add_account(new(1), first, how="imported")
    assert await store.load_session(account_id) == first
    assert await store.load_session(account_id + 1) is None
    moved = session(dc_id=4)
    await store.save_session(account_id, moved)
    assert await store.load_session(account_id) == moved
    assert (await store.load_session(account_id)).auth_key == moved.auth_key  # type: ignore[union-attr]
    without_key = SessionData(5, "91.108.56.1", 443)
    await store.save_session(account_id, without_key)
    assert await store.load_session(account_id) == without_key
    assert first.auth_key is not None and first.auth_key.hex() not in repr(await store.load_session(account_id))


async def test_add_account_writes_the_account_its_session_and_an_event(store: Store) -> None:
    touched: list[set[int]] = []

    async def hook(tx: object) -> None:
        touched.append(set(tx.accounts))  # type: ignore[attr-defined]

    store.on_commit = hook
    first = await store.add_account(new(1), session(), how="imported")
    probe = await store.add_account(new(2, is_probe=True, label="watcher"), session(), how="login")
    assert (first, probe) == (1, 2)
    account = await store.get_account(probe)
    assert (account["label"], account["name"], account["is_probe"], account["state"]) == (
        "watcher", "Ann Lee", True, "ready")
    assert account["last_ok_at"] is not None
    assert await store.account_ref(first) == (7001, "+15551110001")
    events = await store.events_after(0, 10)
    assert [(e["kind"], e["account_id"], e["data"]) for e in events] == [
        ("account.imported", 1, {"probe": False}), ("account.login", 2, {"probe": True})]
    assert events[1]["message"] == "login: watcher (probe)"
    assert touched == [{1}, {2}]


@pytest.mark.parametrize("same", ["Telegram user", "phone number", "session"])
async def test_a_duplicate_account_is_refused_and_nothing_is_written(store: Store, same: str) -> None:
    key = os.urandom(256)
    await store.add_account(new(1), session(key), how="imported")
    other = {"Telegram user": new(2, tg_user_id=7001), "phone number": new(2, phone="+15551110001"),
             "session": new(2, tg_user_id=None, phone=None)}[same]
    with pytest.raises(Conflict, match=rf"^that {same} is already account 1 \(acc-1\)$"):
        await store.add_account(other, session(key if same == "session" else None), how="imported")
    assert await store.count_accounts() == 1
    assert await backdoor.count(store, "sessions") == 1
    assert len(await store.events_after(0, 10)) == 1


async def test_an_account_without_user_or_phone_is_not_a_duplicate_of_another_such(store: Store) -> None:
    await store.add_account(new(1, tg_user_id=None, phone=None), session(), how="imported")
    await store.add_account(new(2, tg_user_id=None, phone=None), session(), how="imported")
    assert await store.count_accounts() == 2


async def test_the_entity_cache_is_per_account_and_keeps_what_a_later_row_leaves_out(store: Store) -> None:
    a = await store.add_account(new(1), session(), how="imported")
    b = await store.add_account(new(2), session(), how="imported")
    assert await store.load_entities(a) == []
    await store.save_entities(a, [(-1001, 11, "News", None, "The News"), (5, 12, None, "+15550001", "Bob")])
    await store.save_entities(b, [(-1001, 99, "news", None, "News for b")])
    await store.save_entities(a, [])  # nothing to write: no transaction at all
    await store.save_entities(a, [(-1001, 13, None, None, None)])  # a new access hash, nothing else known
    assert sorted(await store.load_entities(a)) == [(-1001, 13, "News", None, "The News"),
                                                    (5, 12, None, "+15550001", "Bob")]
    assert await store.load_entities(b) == [(-1001, 99, "news", None, "News for b")]
    assert await store.find_entity(a, "news") == (-1001, 13, "News", None, "The News")  # any case
    assert await store.find_entity(a, "NEWS") == (-1001, 13, "News", None, "The News")
    assert await store.find_entity(b, "News") == (-1001, 99, "news", None, "News for b")
    assert await store.find_entity(a, "nobody") is None
    assert await store.find_entity(a + b, "news") is None


async def test_entity_ids_and_hashes_use_the_whole_64_bits(store: Store) -> None:
    a = await store.add_account(new(1), session(), how="imported")
    big = (-1_000_000_000_000 - 2**40, -(2**63), "edge", None, None)
    await store.save_entities(a, [big, (2**62, 2**63 - 1, None, None, None)])
    assert sorted(await store.load_entities(a)) == sorted([big, (2**62, 2**63 - 1, None, None, None)])


async def test_the_account_a_session_key_belongs_to_is_found_by_the_key(store: Store) -> None:
    key, other = os.urandom(256), os.urandom(256)
    await store.add_account(new(1), session(key), how="imported")
    assert await store.session_account(key) == (1, "acc-1")
    assert await store.session_account(other) is None
