"""The stream snapshot's paged reads on both drivers: a list a keyset page at a time, in id order, that together
are the whole list, each row as the API's listing shows it; the accounts' pages (the listing's own JSON pages by
id) are held here to ``views.account_view`` field for field on rows chosen for the edges of its rules."""

from __future__ import annotations

import json
import time

from store import backdoor
from store.test_accounts import SETUP_TYPES
from store.world import TARGET
from tgdaemon.store import AccountEffect, Store
from tgdaemon.store.views import NAME_STRIP

NAMES = [("  Ann\u3000", "Lee\t"), ("", ""), ("\u00a0", ""), ("Зоя", "Ёлкина"), ('Q"uo\\te', "\x01ctl\n"),
         ("", "Solo"), ("\u2003Em", "\u205f")]
PHONES = [None, "", "+1234", "+123456", "+1234567", "+15550001234", "+4479111122223333"]


async def accounts_with_every_edge(store: Store) -> list[int]:
    """Accounts whose views exercise each rule: masked phones of every length, names with Unicode whitespace,
    quotes and control characters, every state, fractional times, setup progress, executor, owner and pin."""
    async with store.tx() as tx:
        await store.insert_accounts(tx, [
            {"phone": phone, "tg_user_id": 500 + i if phone else None, "label": f"edge-{i} ✈", "is_probe": int(i == 2),
             "first_name": first, "last_name": last, "profile_json": "{}"}
            for i, (phone, (first, last)) in enumerate(zip(PHONES, NAMES), start=1)])
    ids = list(range(1, len(PHONES) + 1))
    now = time.time()
    await store.dispatch_setup({task_type: {} for task_type in SETUP_TYPES})
    await backdoor.update(store, "account_tasks", {"account_id": 3, "task_type": SETUP_TYPES[0]}, status="done")
    await backdoor.update(store, "accounts", {"id": 4}, is_active=0, last_ok_at=now - 0.0001)
    await store.disable_account(5, 'a "quoted"\\reason')
    await store.assign_accounts([6], "prov-a")
    await backdoor.update(store, "accounts", {"id": 6}, owner="node-a", pinned_node="node-b")
    async with store.tx() as tx:
        await store.apply_account_effect(tx, 1, AccountEffect(cooldown_until=now + 3600.9999, error_code="FLOOD_WAIT_9",
                                                              cooldown_reason="FLOOD_WAIT"))
        await store.apply_account_effect(tx, 7, AccountEffect(cooldown_until=now - 10.5, error_code="PEER_FLOOD"))
        assert await store.take_lock(tx, 3, "t", 600)
    return ids


async def test_account_json_pages_are_the_listings_views_in_id_order(store: Store) -> None:
    ids = await accounts_with_every_edge(store)
    listed, _ = await store.list_accounts(limit=100)
    pages, cursor = [], None
    for _ in range(10):
        page, cursor = await store.list_accounts_json(sort="id", limit=3, after=cursor)
        pages.append([json.loads(text)["id"] for text in page])
        if cursor is None:
            break
    assert pages == [ids[0:3], ids[3:6], ids[6:]]
    made = [json.loads(text) for text in (await store.list_accounts_json(sort="id", limit=100))[0]]
    assert made == listed  # every field, every value, every type: what a delta of the same account carries
    assert {a["state"] for a in made} == {"cooldown", "ready", "busy", "inactive", "disabled"}
    assert [a["name"] for a in made] == [f"{first} {last}".strip() for first, last in NAMES]
    _, past_last = await store.list_accounts_json(sort="id", limit=len(ids))  # a full page names a next one
    assert past_last is not None
    assert await store.list_accounts_json(sort="id", limit=10, after=past_last) == ([], None)


def test_name_strip_is_what_str_strip_strips() -> None:
    assert set(NAME_STRIP) == {c for c in map(chr, range(0x110000)) if c.isspace()}


async def test_quotas_after_pages_through_every_quota_in_id_order(store: Store) -> None:
    ids = [await store.add_quota(name=f"q{n}", target=TARGET, action="channel_stats", last_n_posts=5, quantity=None,
                                 orders=10, interval_seconds=60, expires_at=time.time() + 3600) for n in range(5)]
    await store.set_quota_paused(ids[3], True)  # a row that changed since it was added reads as it is now
    pages, after = [], 0
    for _ in range(10):
        page = await store.quotas_after(after, 2)
        pages.append([q["id"] for q in page])
        if len(page) < 2:
            break
        after = page[-1]["id"]
    assert pages == [ids[0:2], ids[2:4], ids[4:]]
    every = await store.quotas()
    assert await store.quotas_after(0, 10) == every and every[3]["paused"]
    assert await store.quotas_after(ids[-1], 10) == []
    assert await store.quotas_after(ids[1], 1) == [every[2]]
