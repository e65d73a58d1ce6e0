"""Account health on both drivers: a check's finding recorded (fenced by the ownership epoch, an event when it
changes), carried by the listing's database-built JSON exactly as the view encodes it, filtered by, and the
accounts a node's scheduled check takes next."""

from __future__ import annotations

import json
import time

import pytest

from store import backdoor
from store.test_accounts import assert_json_pages_match_views, seed
from tgdaemon.store import AccountEffect, Store

ODD = 'q"uo\\te \x01\x1f \u2028 😀 </tag> é [bold]x[/]'


async def record(store: Store, account_id: int, health: str | None, detail: dict, at: float,
                 epoch: int | None = None) -> bool:
    async with store.tx() as tx:
        return await store.record_health(tx, account_id, health, detail, at, epoch=epoch)


async def test_a_finding_is_recorded_and_its_change_logged_once(store: Store) -> None:
    await seed(store, 3)
    at = time.time()
    head = await store.last_event_id()
    assert await record(store, 1, "ok", {"sessions": 3, "spambot": "free"}, at)
    assert await record(store, 1, "ok", {"sessions": 2}, at + 1)  # the same finding again: no event
    assert await record(store, 1, "limited", {"sessions": 2, "spambot": "limited", "spambot_text": ODD}, at + 2)
    view = await store.get_account(1)
    assert (view["health"], view["health_detail"]) == ("limited", {"sessions": 2, "spambot": "limited",
                                                                   "spambot_text": ODD})
    assert view["health_checked_at"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(at + 2)))
    events = [e for e in await store.events_after(head, 100) if e["kind"] == "account.health"]
    assert [(e["account_id"], e["data"]) for e in events] == [
        (1, {"health": "ok", "was": None}), (1, {"health": "limited", "was": "ok"})]
    assert [e["message"] for e in events] == ["health: unchecked -> ok", "health: ok -> limited"]

    # a check that could not tell keeps the finding, and says so in the detail, at its own time
    assert await record(store, 1, None, {"error": "FLOOD_WAIT (wait, 30s)"}, at + 3)
    view = await store.get_account(1)
    assert (view["health"], view["health_detail"]) == ("limited", {"error": "FLOOD_WAIT (wait, 30s)"})
    assert (await store.get_account(2))["health"] is None  # the others untouched
    assert not await record(store, 99, "ok", {}, at)  # no such account: nothing


async def test_a_finding_under_a_stale_epoch_changes_nothing(store: Store) -> None:
    await seed(store, 2)
    await backdoor.update(store, "accounts", {"id": 1}, owner="node-a", owner_epoch=4)
    assert not await record(store, 1, "frozen", {"frozen_since": "2025-01-01T00:00:00Z"}, time.time(), epoch=3)
    assert (await backdoor.row(store, "accounts", id=1))["health_checked_at"] is None
    assert await record(store, 1, "ok", {"sessions": 1}, time.time(), epoch=4)
    assert (await store.get_account(1))["health"] == "ok"


async def test_the_listing_json_carries_health_as_the_view_encodes_it_and_filters_by_it(store: Store) -> None:
    await seed(store, 12)
    at = 1_796_147_123.9999999
    findings = {1: ("ok", {"sessions": 1}), 2: ("limited", {"spambot": "limited", "limited_until": None,
                                                              "spambot_text": ODD}),
                3: ("frozen", {"frozen_since": "2025-06-01T00:00:00Z", "frozen_until": None, "appeal_url": None}),
                4: ("dead", {"error": "AUTH_KEY_UNREGISTERED (dead_account)"}), 5: ("ok", {}),
                6: ("limited", {"sessions": 7, "nested": {"a": [1, 2.5, True, None]}})}
    for account_id, (health, detail) in findings.items():
        assert await record(store, account_id, health, detail, at + account_id)
    await store.disable_account(4, "AUTH_KEY_UNREGISTERED")
    for sort in ("id", "state", "label"):
        assert await assert_json_pages_match_views(store, sort=sort, limit=5) == 12
    for health in ("ok", "limited", "frozen", "dead"):
        want = [i for i, (h, _) in findings.items() if h == health]
        assert await assert_json_pages_match_views(store, health=health, limit=1) == len(want)
        assert [a["id"] for a in (await store.list_accounts(health=health))[0]] == want
    assert [a["id"] for a in (await store.list_accounts(health="unchecked"))[0]] == list(range(7, 13))
    assert [a["id"] for a in (await store.list_accounts(health="limited", state="ready", q="acc-6"))[0]] == [6]
    made = {json.loads(raw)["id"]: json.loads(raw) for raw in (await store.list_accounts_json(limit=100))[0]}
    assert made[2]["health_detail"]["spambot_text"] == ODD
    assert made[6]["health_detail"] == {"sessions": 7, "nested": {"a": [1, 2.5, True, None]}}
    assert (made[7]["health"], made[7]["health_checked_at"], made[7]["health_detail"]) == (None, None, None)


async def test_health_due_takes_accounts_that_can_work_least_recently_checked_first(store: Store) -> None:
    await seed(store, 10, probes=False)
    at = time.time()
    for account_id, age in ((1, 50), (2, 5000), (3, 3000), (4, 9000)):
        assert await record(store, account_id, "ok", {}, at - age)
    await store.disable_account(5, "sim card gone")
    await backdoor.update(store, "accounts", {"id": 6}, is_active=0)
    async with store.tx() as tx:
        await store.apply_account_effect(tx, 7, AccountEffect(cooldown_until=at + 600, cooldown_reason="FLOOD_WAIT"))
        assert await store.take_lock(tx, 8, "setup:1", 600)

    due = await store.health_due(at - 1000, 100)

    # never checked first (by id), then the oldest check; not the disabled, the inactive, the cooled down,
    # the locked, nor one checked within the interval (1)
    assert [p.id for p in due] == [9, 10, 4, 2, 3]
    assert [p.id for p in await store.health_due(at - 1000, 2)] == [9, 10]
    assert (due[0].tg_user_id, due[0].phone) == (1009, "+15550000009")

    await backdoor.update(store, "accounts", {"id": 9}, owner="node-a", owner_epoch=3)
    await backdoor.update(store, "accounts", {"id": 2}, owner="node-a", owner_epoch=1)
    mine = await store.health_due(at - 1000, 100, owner="node-a")
    assert [(p.id, p.epoch) for p in mine] == [(9, 3), (2, 1)]
    assert await store.health_due(at - 1000, 100, owner="node-b") == []


@pytest.mark.parametrize("health", ["sick", ""])
async def test_the_filter_takes_only_known_values_above_the_store(store: Store, health: str) -> None:
    """The API refuses an unknown value (wire.HealthFilter); the store, asked anyway, simply finds nothing."""
    await seed(store, 2)
    assert await record(store, 1, "ok", {}, time.time())
    found = (await store.list_accounts(health=health or None))[0]
    assert [a["id"] for a in found] == ([] if health else [1, 2])
