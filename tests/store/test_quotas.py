"""Quotas on both drivers: adding and showing them, pausing, inspection by a probe account (with the real
``Inspector`` and ``Probes``), which probes can work, snapshots and postponing, and the measurement export
a page at a time."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from telethon import errors

from store import backdoor
from store.world import SLACK, TARGET, close_to
from tgdaemon import config
from tgdaemon.errors import Conflict, NotFound
from tgdaemon.gateway.simulator import Simulator
from tgdaemon.quotas.inspector import NO_PROBE, Inspector
from tgdaemon.quotas.probe import Probes
from tgdaemon.store import AccountEffect, Store, Tx
from tgdaemon.store.views import EXPORT_FORMATS, measurement_rows

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


async def add(store: Store, name: str = "q", *, action: str = "channel_stats", quantity: int | None = None,
              orders: int | None = 10, expires_in: float = 3600) -> int:
    return await store.add_quota(name=name, target=TARGET, action=action, last_n_posts=5, quantity=quantity,
                                 orders=orders, interval_seconds=60, expires_at=time.time() + expires_in)


async def test_a_new_quota_is_shown_uninspected_with_its_counters(store: Store) -> None:
    touched: list[tuple[set[int], list[str]]] = []

    async def hook(tx: Tx) -> None:
        touched.append((set(tx.quotas), [e["kind"] for e in tx.events]))

    store.on_commit = hook
    qid = await add(store, "news", action="post_stats", quantity=100, orders=None)
    q = await store.quota(qid)
    assert {k: q[k] for k in ("id", "name", "action", "target", "last_n_posts", "quantity_total", "quantity_left",
                              "orders_left", "per_call", "interval_seconds", "paused", "inspection_ok",
                              "measurements", "next_run_at", "last_error")} == {
        "id": qid, "name": "news", "action": "post_stats", "target": TARGET, "last_n_posts": 5,
        "quantity_total": 100, "quantity_left": 100, "orders_left": None, "per_call": 1, "interval_seconds": 60,
        "paused": False, "inspection_ok": None, "measurements": 0, "next_run_at": None, "last_error": None}
    assert ISO.fullmatch(q["expires_at"]) and ISO.fullmatch(q["created_at"])
    orders = await add(store, "subs", orders=7)
    assert ((await store.quota(orders))["quantity_total"], (await store.quota(orders))["orders_left"]) == (7, 7)
    assert [x["id"] for x in await store.quotas()] == [qid, orders]
    assert touched == [({qid}, ["quota.added"]), ({orders}, ["quota.added"])]
    with pytest.raises(NotFound, match="quota 99"):
        await store.quota(99)


async def test_quotas_by_id_reads_inside_the_transaction(store: Store) -> None:
    a, b, c = [await add(store, n) for n in "abc"]
    async with store.tx() as tx:
        assert [q["id"] for q in await store.quotas_by_id(tx, {c, a, 99})] == [a, c]
        assert await store.quotas_by_id(tx, set()) == []
    assert b


async def test_pausing_and_resuming_say_whether_they_changed_anything(store: Store) -> None:
    qid = await add(store)
    assert await store.set_quota_paused(qid, True) is True
    assert await store.set_quota_paused(qid, True) is False
    assert (await store.quota(qid))["paused"] is True
    assert await store.set_quota_paused(qid, False) is True
    assert await store.set_quota_paused(qid, False) is False
    assert [e["kind"] for e in await store.events_after(0, 10)] == ["quota.added", "quota.paused", "quota.resumed"]
    with pytest.raises(NotFound):
        await store.set_quota_paused(99, True)


async def test_the_state_is_active_paused_expired_or_done_as_of_now(store: Store) -> None:
    active, paused, expired, done, both = [await add(store, n) for n in ("a", "p", "x", "d", "dx")]
    await store.set_quota_paused(paused, True)
    await backdoor.update(store, "quotas", {"id": expired}, expires_at=time.time() - 1, paused=1)
    await backdoor.update(store, "quotas", {"id": done}, orders_left=0)
    await backdoor.update(store, "quotas", {"id": both}, orders_left=0, expires_at=time.time() - 1)
    states = {q["id"]: q["state"] for q in await store.quotas()}
    assert states == {active: "active", paused: "paused", expired: "expired", done: "done", both: "done"}
    async with store.tx() as tx:
        assert [q["state"] for q in await store.quotas_by_id(tx, {expired})] == ["expired"]
    assert [q["state"] for q in await store.quotas_after(0, 10)] == ["active", "paused", "expired", "done", "done"]
    assert (await store.quota(expired))["state"] == "expired"


async def test_an_expired_quota_is_neither_paused_nor_resumed_and_nothing_is_written(store: Store) -> None:
    running, stopped = await add(store, "r"), await add(store, "s")
    await store.set_quota_paused(stopped, True)
    gone = time.time() - 60
    for qid in (running, stopped):
        await backdoor.update(store, "quotas", {"id": qid}, expires_at=gone)
    before = await store.events_after(0, 20)
    when = re.escape(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(gone)))
    with pytest.raises(Conflict, match=f"^quota {running} expired at {when}: there is nothing to pause$"):
        await store.set_quota_paused(running, True)
    with pytest.raises(Conflict, match=f"^quota {stopped} expired at {when}: there is nothing to resume$"):
        await store.set_quota_paused(stopped, False)
    assert [(await store.quota(q))["paused"] for q in (running, stopped)] == [False, True]
    assert await store.events_after(0, 20) == before


async def test_inspection_decides_once_and_a_wait_only_says_why(store: Store) -> None:
    waiting, ok, bad, expired = [await add(store, n) for n in ("w", "ok", "bad", "old")]
    await backdoor.update(store, "quotas", {"id": expired}, expires_at=time.time() - 1)
    assert [r.id for r in await store.uninspected_quotas()] == [waiting, ok, bad]
    assert {r.target for r in await store.uninspected_quotas()} == {TARGET}
    await store.record_inspection(waiting, ok=None, error="no probe account is ready")
    await store.record_inspection(ok, ok=True, peer_id=-1001234, title="News")
    await store.record_inspection(bad, ok=False, error="CHANNEL_PRIVATE")
    assert [r.id for r in await store.uninspected_quotas()] == [waiting]
    w, o, b = [await store.quota(q) for q in (waiting, ok, bad)]
    assert (w["inspection_ok"], w["last_error"], w["inspected_at"]) == (None, "no probe account is ready", None)
    assert (o["inspection_ok"], o["peer_id"], o["title"], o["last_error"]) == (True, -1001234, "News", None)
    assert o["next_run_at"] is not None and ISO.fullmatch(o["inspected_at"])  # due at once
    assert (b["inspection_ok"], b["inspection_error"], b["last_error"], b["next_run_at"]) == (
        False, "CHANNEL_PRIVATE", "CHANNEL_PRIVATE", None)
    inspected = [e for e in await store.events_after(0, 20) if e["kind"] == "quota.inspected"]
    assert [(e["quota_id"], e["data"]) for e in inspected] == [
        (ok, {"ok": True, "error": None}), (bad, {"ok": False, "error": "CHANNEL_PRIVATE"})]


async def test_record_posts_and_postpone(store: Store) -> None:
    qid = await add(store, action="post_stats", quantity=5, orders=None)
    await backdoor.update(store, "quotas", {"id": qid}, cursor=2)
    await store.record_posts(qid, [30, 20, 10])
    row = await backdoor.row(store, "quotas", id=qid)
    assert (row["cursor"], close_to(row["posts_fetched_at"], time.time())) == (0, True)
    assert json.loads(row["posts_json"]) == [30, 20, 10]
    await store.postpone_quota(qid, "FLOOD_WAIT_30 on the probe", 900)
    row = await backdoor.row(store, "quotas", id=qid)
    assert row["last_error"] == "FLOOD_WAIT_30 on the probe" and close_to(row["next_run_at"], time.time() + 900)


async def seed_probes(store: Store, n: int) -> None:
    async with store.tx() as tx:
        await store.insert_accounts(tx, [{"phone": f"+1555333{i:04d}", "tg_user_id": 300 + i, "label": f"p{i}",
                                          "is_probe": int(i != n), "profile_json": "{}"} for i in range(1, n + 1)])


async def test_probe_accounts_are_the_probes_that_can_work_least_recently_used_first(store: Store) -> None:
    await seed_probes(store, 6)  # 1..5 probes, 6 a worker
    await store.disable_account(2, "gone")
    await backdoor.update(store, "accounts", {"id": 3}, is_active=0)
    async with store.tx() as tx:
        await store.apply_account_effect(tx, 4, AccountEffect(cooldown_until=time.time() + 600,
                                                              cooldown_reason="FLOOD_WAIT"))
    assert [(p.id, p.tg_user_id, p.phone) for p in await store.probe_accounts()] == [
        (1, 301, "+15553330001"), (5, 305, "+15553330005")]
    async with store.tx() as tx:
        await store.mark_used(tx, 1)
    assert [p.id for p in await store.probe_accounts()] == [5, 1]
    async with store.tx() as tx:
        assert await store.take_lock(tx, 5, "probe:1", 60)
    assert [p.id for p in await store.probe_accounts()] == [1]


async def test_measurements_come_a_page_at_a_time_oldest_first_or_only_the_latest(store: Store) -> None:
    qid, other = await add(store, "a"), await add(store, "b")
    base = time.time() - 1000
    rows = [{"quota_id": qid, "task_id": i, "post_id": 100 + i, "observed_at": base + i // 2, "views": i,
             "subscribers": None} for i in range(7)]  # two at each time: the id breaks the tie
    await backdoor.insert_many(store, "measurements", rows)
    await backdoor.insert(store, "measurements", quota_id=other, observed_at=base, views=99)

    async def pages(**kw: Any) -> list[list[tuple[Any, ...]]]:
        return [page async for page in store.measurement_pages(qid, **kw)]

    every = await pages(page=3)
    assert [len(p) for p in every] == [3, 3, 1]
    flat = [r for p in every for r in p]
    assert [r[2] for r in flat] == list(range(7))  # views: the insert order, oldest first
    assert flat[0][1] == 100 and flat[0][7] == 0 and ISO.fullmatch(flat[0][0])  # post_id, task_id, observed_at
    assert [r[2] for p in await pages(limit=3, page=2) for r in p] == [4, 5, 6]
    assert [r[2] for p in await pages(limit=100) for r in p] == list(range(7))
    assert await pages(limit=0) == []
    assert [r[2] for p in [pg async for pg in store.measurement_pages(other)] for r in p] == [99]


async def test_the_export_is_the_rows_as_the_python_formats_write_them_in_every_page_and_limit(store: Store) -> None:
    """The database writes the export's CSV and JSON itself: byte for byte what ``measurement_rows`` makes
    of ``measurement_pages``, whatever the values (nulls, 64-bit ints, a time on a second's edge, before
    1970 or after 9999, and on SQLite a value that is not an integer), the page size or the limit."""
    qid = await add(store, "a")
    other = await add(store, "b")
    big = 2**63 - 1
    rows: list[dict[str, Any]] = [
        {"observed_at": 1_700_000_000.0, "post_id": 7, "views": 120, "forwards": 3, "replies": 4, "reactions": 9},
        {"observed_at": 1_700_000_000.999999, "post_id": None, "views": big, "subscribers": -big, "task_id": 5},
        {"observed_at": 1_700_000_001.0, "post_id": 8},  # every value null but the post
        {"observed_at": 0.25, "views": 1},
        {"observed_at": -86_400.5, "views": 2},  # before 1970: formatted by Python
        {"observed_at": 253_402_300_799.5, "views": 3},  # the last second of 9999
    ]
    if store.kind == "sqlite":  # INTEGER affinity keeps what is not an integer as it came
        rows += [{"observed_at": 1_700_000_002.0, "views": 5.5}, {"observed_at": 1_700_000_003.0, "replies": 1e20}]
    rows += [{"observed_at": 1_700_000_100.0 + i // 3, "post_id": i, "views": i * 10} for i in range(40)]
    await backdoor.insert_many(store, "measurements", [{"quota_id": qid, **r} for r in rows])
    await backdoor.insert(store, "measurements", quota_id=other, observed_at=1_700_000_000.0, views=99)

    async def exported(fmt: str, **kw: Any) -> bytes:
        return (b"" if fmt == "csv" else b",").join([c async for c in store.measurement_export(qid, fmt, **kw)])

    async def expected(fmt: str, **kw: Any) -> bytes:
        return measurement_rows(fmt, [r async for page in store.measurement_pages(qid, **kw) for r in page])

    for fmt in EXPORT_FORMATS:
        whole = await expected(fmt)
        assert whole and await exported(fmt) == whole
        assert await exported(fmt, page=4) == whole
        for limit in (1, 3, 17, 10_000):
            assert await exported(fmt, limit=limit, page=5) == await expected(fmt, limit=limit)
        assert await exported(fmt, limit=0) == b""
    lines = (await exported("csv")).decode().split("\r\n")
    assert lines[0] == "1969-12-30T23:59:59Z,,2,,,,," and lines[-1] == ""  # the floor of -86,400.5
    assert "2023-11-14T22:13:20Z,,9223372036854775807,,,,-9223372036854775807,5" in lines
    assert [m["views"] for m in json.loads(b"[" + await exported("json", limit=2) + b"]")] == [390, 3]


# --- the inspector on the store --------------------------------------------------------------------------------------

async def test_no_probe_ready_means_the_quota_waits_and_says_so(store: Store) -> None:
    cfg = config.load(None, env={}, overrides={"simulator": {"accounts": 4, "latency_min_ms": 0,
                                                             "latency_max_ms": 0}})
    sim = Simulator(cfg.simulator)
    async with store.tx() as tx:
        await store.insert_accounts(tx, ({"phone": a.phone, "tg_user_id": a.tg_user_id, "label": a.label,
                                          "is_probe": 0, "profile_json": "{}"} for a in sim.seeds()))
    qid = await store.add_quota(name="q", target="@tgfleet_news", action="channel_stats", last_n_posts=5,
                                quantity=None, orders=2, interval_seconds=60, expires_at=time.time() + 3600)
    inspector = Inspector(store, sim, Probes(cfg, store))
    await inspector.inspect_pending()
    q = await store.quota(qid)
    assert q["inspection_ok"] is None and q["last_error"] == NO_PROBE

    await backdoor.update(store, "accounts", {"id": 1}, is_probe=1)  # now one probe account
    await inspector.inspect_pending()
    q = await store.quota(qid)
    assert q["inspection_ok"] is True and q["last_error"] is None


async def test_a_probe_in_a_flood_wait_cools_down_and_the_quota_waits(store: Store) -> None:
    class Flooding(Simulator):
        async def resolve_channel(self, account: Any, target: str) -> Any:
            raise errors.FloodWaitError(request=None, capture=120)

    cfg = config.load(None, env={}, overrides={"simulator": {"accounts": 2}, "limits": {
        "flood_wait_jitter_seconds": 0}})
    sim = Flooding(cfg.simulator)
    async with store.tx() as tx:
        await store.insert_accounts(tx, ({"phone": a.phone, "tg_user_id": a.tg_user_id, "label": a.label,
                                          "is_probe": 1, "profile_json": "{}"} for a in sim.seeds()[:1]))
    qid = await store.add_quota(name="q", target="@tgfleet_news", action="channel_stats", last_n_posts=5,
                                quantity=None, orders=2, interval_seconds=60, expires_at=time.time() + 3600)
    await Inspector(store, sim, Probes(cfg, store)).inspect_pending()
    q = await store.quota(qid)
    assert q["inspection_ok"] is None and "FLOOD_WAIT" in q["last_error"]
    account = await store.get_account(1)
    assert account["state"] == "cooldown" and account["cooldown_reason"] == "FLOOD_WAIT"
    assert not [lock for lock in await backdoor.rows(store, "account_locks") if lock["expires_at"] > time.time()]
    assert abs((await backdoor.row(store, "accounts", id=1))["cooldown_until"] - time.time() - 120) < SLACK
