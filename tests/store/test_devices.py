"""An account's own app and device parameters (issue 14), on both drivers: set at import with the account,
changed field by field or replaced by ``set_device``, read back by ``client_params``; an unknown
account is refused with nothing written; the audit trail names the fields, never a value; and
``duplicate_of`` says what ``add_account`` would refuse, writing nothing."""

from __future__ import annotations

import json
import os

import pytest

from store import backdoor
from tgdaemon.errors import Conflict, NotFound
from tgdaemon.store import Device, NewAccount, SessionData, Store, Tx

HASH = "0123456789abcdef0123456789abcdef"
PHONE_DEVICE = Device(api_id=611335, api_hash=HASH, device_model="Pixel 7", system_version="Android 14",
                      app_version="10.9.1", lang_code="de", system_lang_code="de-DE")


def session(key: bytes | None = None) -> SessionData:
    return SessionData(2, "149.154.167.51", 443, key if key is not None else os.urandom(256))


async def add(store: Store, n: int, device: Device = Device(), **over: object) -> int:
    fields: dict[str, object] = {"phone": f"+1555222{n:04d}", "tg_user_id": 8000 + n, "label": f"dev-{n}",
                                 "is_probe": False, "device": device, **over}
    return await store.add_account(NewAccount(**fields), session(), how="imported")  # type: ignore[arg-type]


async def test_an_imported_device_is_kept_with_the_account(store: Store) -> None:
    own = await add(store, 1, PHONE_DEVICE)
    plain = await add(store, 2)
    assert (await store.client_params(own)).device == PHONE_DEVICE
    assert (await store.client_params(plain)).device == Device()
    row = await backdoor.row(store, "accounts", id=own)
    assert (row["api_id"], row["api_hash"], row["device_model"], row["system_lang_code"]) == (
        611335, HASH, "Pixel 7", "de-DE")


async def test_set_device_changes_only_the_fields_given_and_replace_resets_the_rest(store: Store) -> None:
    a, b, other = await add(store, 1, PHONE_DEVICE), await add(store, 2), await add(store, 3)

    assert await store.set_device([a, b], Device(device_model="ThinkPad", lang_code="fr"), replace=False) == 2
    assert (await store.client_params(a)).device == Device(611335, HASH, "ThinkPad", "Android 14", "10.9.1", "fr",
                                                           "de-DE")
    assert (await store.client_params(b)).device == Device(device_model="ThinkPad", lang_code="fr")
    assert (await store.client_params(other)).device == Device()  # not named: untouched

    assert await store.set_device([a], Device(app_version="5.0"), replace=True) == 1
    assert (await store.client_params(a)).device == Device(app_version="5.0")
    assert await store.set_device([a, b, b], Device(), replace=True) == 2  # a reset; an id twice counts once
    assert (await store.client_params(a)).device == Device() == (await store.client_params(b)).device


async def test_set_device_logs_the_fields_by_name_and_touches_the_accounts(store: Store) -> None:
    a, b = await add(store, 1), await add(store, 2)
    published: list[tuple[set[int], list[str]]] = []

    async def hook(tx: Tx) -> None:  # the stream's deltas come from what a transaction touched
        published.append((set(tx.accounts), [e["kind"] for e in tx.events]))

    store.on_commit = hook
    await store.set_device([a], Device(api_id=42, api_hash=HASH, device_model="X1"), replace=False)
    await store.set_device([a, b], Device(), replace=True)
    assert published == [({a}, ["account.device"]), ({a, b}, ["account.device", "account.device"])]
    events = [e for e in await store.recent_events(account_id=a) if e["kind"] == "account.device"]
    assert [e["message"] for e in events] == ["device reset to the [telegram] defaults",
                                              "device set: api_id, api_hash, device_model"]
    assert events[1]["data"] == {"fields": ["api_id", "api_hash", "device_model"], "reset": False}
    assert HASH not in json.dumps(await store.recent_events(limit=1000))
    assert HASH[:8] not in json.dumps(await store.recent_events(limit=1000))


async def test_an_api_id_may_stand_alone(store: Store) -> None:
    """A Pyrogram session file carries its api_id and no hash: on a signed-in key only the id is sent."""
    a = await add(store, 1)
    await store.set_device([a], Device(api_id=7), replace=False)
    assert (await store.client_params(a)).device == Device(api_id=7)


async def test_an_unknown_account_is_not_found_and_nothing_is_written(store: Store) -> None:
    a = await add(store, 1)
    with pytest.raises(NotFound, match=rf"account {a + 7}: no such account"):
        await store.set_device([a, a + 7], Device(device_model="Q"), replace=False)
    assert (await store.client_params(a)).device == Device()


async def test_duplicate_of_says_what_add_account_would_refuse(store: Store) -> None:
    key = os.urandom(256)
    first = await store.add_account(NewAccount("+15553330001", 9001, "first", False), session(key), how="imported")
    fresh = session()
    assert await store.duplicate_of(NewAccount(None, None, "new", False), fresh) is None
    assert await store.duplicate_of(NewAccount(None, None, "again", False), session(key)) == (
        f"that session is already account {first} (first)")
    assert await store.duplicate_of(NewAccount("+15553330001", None, "p", False), fresh) == (
        f"that phone number is already account {first} (first)")
    assert await store.duplicate_of(NewAccount(None, 9001, "u", False), fresh) == (
        f"that Telegram user is already account {first} (first)")
    with pytest.raises(Conflict, match="that session is already account"):  # the same words as the refusal
        await store.add_account(NewAccount(None, None, "again", False), session(key), how="imported")
    assert await backdoor.count(store, "accounts") == 1
