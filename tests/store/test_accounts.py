"""Accounts on both drivers: derived state, masked phones, keyset paging, search, counts, disable/enable, the
audit trail and its id order, transactions and what they tell the commit hook."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store import backdoor
from store.conftest import Database
from tgdaemon.errors import NotFound
from tgdaemon.store import SORT_KEYS, STATES, AccountEffect, Store, Tx, mask_phone
from tgdaemon.wire import Account

FAR = 10 * 365 * 86400  # cooldowns and locks "in the future" stay there for the whole test
SETUP_TYPES = ("ensure_2fa", "update_name", "privacy_phone_hidden", "story_image")


async def seed(store: Store, n: int, labels: list[str] | None = None, probes: bool = True) -> None:
    rows = [{"phone": f"+1555{i:07d}", "tg_user_id": 1000 + i,
             "label": labels[i - 1] if labels else f"acc-{i}", "is_probe": int(probes and i % 10 == 0),
             "profile_json": "{}"} for i in range(1, n + 1)]
    async with store.tx() as tx:
        await store.insert_accounts(tx, rows)


# --- masking -----------------------------------------------------------------------------------

@given(st.from_regex(r"\+?[0-9]{0,16}", fullmatch=True))
def test_mask_phone_reveals_at_most_first_4_and_last_2(phone: str) -> None:
    masked = mask_phone(phone)
    if not phone:
        assert masked is None
        return
    assert masked is not None and len(masked) == len(phone)
    revealed = [i for i, ch in enumerate(masked) if ch != "*"]
    for i in revealed:
        assert masked[i] == phone[i]
        assert i < 4 or i >= len(phone) - 2, (phone, masked)
    assert sum(ch.isdigit() for ch in masked) <= 6
    if len(phone) >= 9:  # a real number keeps at least 3 of its digits hidden
        assert sum(ch.isdigit() for ch in masked) <= sum(ch.isdigit() for ch in phone) - 3


def test_mask_phone_examples() -> None:
    assert mask_phone("+15551234567") == "+155******67"
    assert mask_phone(None) is None
    assert mask_phone("+1234") == "*****"


# --- keyset paging -----------------------------------------------------------------------------

LABELS = ["alpha", "beta", "Beta", "", "gamma", "δelta", "a_b", "a%b", "zeta 7", "alpha"]
ERRORS = [None, None, "FLOOD_WAIT", "PEER_FLOOD", "RPC_CALL_FAIL"]
N_PAGING = 60


async def seed_varied(store: Store) -> list[dict[str, Any]]:
    """60 accounts in every state, with ties in every sort key; returns a Python model of them."""
    rnd = random.Random(7)
    now = time.time()
    model = []
    for i in range(1, N_PAGING + 1):
        model.append({
            "id": i, "phone": f"+1555{i:07d}", "label": rnd.choice(LABELS),
            "is_active": int(rnd.random() > 0.1),
            "disabled": rnd.random() < 0.2,
            "cooldown_until": rnd.choice([None, None, now + FAR + rnd.random(), now - 1000.0]),
            "lock": rnd.choice([None, None, now + FAR, now - 1000.0]),
            "error": rnd.choice(ERRORS), "executor": rnd.choice(["local", "local", "prov-b", "prov-a"]),
            "setup_done": rnd.randrange(0, 4),
        })
    async with store.tx() as tx:
        await store.insert_accounts(tx, [{"phone": m["phone"], "tg_user_id": 1000 + m["id"], "label": m["label"],
                                          "is_probe": 0, "profile_json": "{}"} for m in model])
    await store.dispatch_setup({task_type: {} for task_type in SETUP_TYPES})  # every account: all four pending
    for m in model:
        for task_type in SETUP_TYPES[:m["setup_done"]]:
            await backdoor.update(store, "account_tasks", {"account_id": m["id"], "task_type": task_type},
                                  status="done")
        if not m["is_active"]:
            await backdoor.update(store, "accounts", {"id": m["id"]}, is_active=0)
        if m["disabled"]:
            await store.disable_account(m["id"], "test")
        async with store.tx() as tx:
            if m["cooldown_until"] is not None or m["error"] is not None:
                await store.apply_account_effect(tx, m["id"], AccountEffect(
                    cooldown_until=m["cooldown_until"], error_code=m["error"],
                    cooldown_reason="FLOOD_WAIT" if m["cooldown_until"] else None))
            if m["lock"] is not None:
                assert await store.take_lock(tx, m["id"], "t", m["lock"] - now)
    for executor in ("prov-a", "prov-b"):
        await store.assign_accounts([m["id"] for m in model if m["executor"] == executor], executor)
    for m in model:
        if m["disabled"]:
            m["state"] = "disabled"
        elif not m["is_active"]:
            m["state"] = "inactive"
        elif m["cooldown_until"] is not None and m["cooldown_until"] > now:
            m["state"] = "cooldown"
        elif m["lock"] is not None and m["lock"] > now:
            m["state"] = "busy"
        else:
            m["state"] = "ready"
    assert {m["state"] for m in model} == set(STATES)
    return model


def oracle(model: list[dict[str, Any]], *, sort: str, desc: bool, state: str | None, q: str | None) -> list[int]:
    """The expected listing, computed in Python from the model (not from the store)."""
    value = {
        "id": lambda m: m["id"],
        "label": lambda m: m["label"].encode(),  # byte order (SQLite's BINARY collation, PostgreSQL's "C")
        "state": lambda m: m["state"],
        "cooldown": lambda m: m["cooldown_until"] or 0,
        "error": lambda m: m["error"] or "",
        "setup": lambda m: m["setup_done"],
        "executor": lambda m: m["executor"],
    }[sort]
    rows = [m for m in model if state is None or m["state"] == state]
    if q:
        rows = [m for m in rows if q.lower() in m["label"].lower() or q in m["phone"] or str(m["id"]) == q]
    rows.sort(key=lambda m: (value(m), m["id"]), reverse=desc)
    return [m["id"] for m in rows]


@pytest.fixture
async def paging_store(store: Store) -> tuple[Store, list[dict[str, Any]]]:
    return store, await seed_varied(store)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sort=st.sampled_from(sorted(SORT_KEYS)), desc=st.booleans(), state=st.sampled_from([None, *STATES]),
       q=st.sampled_from([None, None, "alpha", "BETA", "a%", "_", "55500000", "7"]),
       page=st.integers(min_value=1, max_value=25))
async def test_keyset_pages_concatenate_to_the_full_listing(paging_store: tuple[Store, list[dict[str, Any]]],
                                                             sort: str, desc: bool, state: str | None,
                                                             q: str | None, page: int) -> None:
    store, model = paging_store
    full, nxt = await store.list_accounts(state=state, q=q, sort=sort, desc=desc, limit=10_000)
    assert nxt is None
    expected = oracle(model, sort=sort, desc=desc, state=state, q=q)
    assert [a["id"] for a in full] == expected

    pages: list[int] = []
    after = None
    for _ in range(N_PAGING + 2):  # bounded: at most one page per account, plus the empty last one
        rows, after = await store.list_accounts(state=state, q=q, sort=sort, desc=desc, limit=page, after=after)
        assert len(rows) <= page
        pages.extend(a["id"] for a in rows)
        if after is None:
            break
    else:
        pytest.fail("paging did not end")
    assert pages == expected  # same order, no duplicates, nothing missed
    if state:
        assert all(a["state"] == state for a in full)


async def test_the_listing_shows_each_accounts_setup_progress_and_executor(
        paging_store: tuple[Store, list[dict[str, Any]]]) -> None:
    store, model = paging_store
    full, _ = await store.list_accounts(limit=1000)
    assert {a["id"]: (a["state"], a["setup"], a["executor"], a["last_error_code"]) for a in full} == {
        m["id"]: (m["state"], {"done": m["setup_done"], "total": len(SETUP_TYPES)}, m["executor"], m["error"])
        for m in model}
    assert await store.account_counts() == {s: sum(m["state"] == s for m in model) for s in STATES}


async def test_bad_cursor_is_a_value_error(store: Store) -> None:
    await seed(store, 3)
    for bad in ("garbage!", "e30", "W10", "WyJ4Il0"):  # junk, {}, [], ["x"]
        with pytest.raises(ValueError, match="cursor"):
            await store.list_accounts(after=bad)


async def test_search_by_label_phone_and_id(store: Store) -> None:
    await seed(store, 12, labels=["north-1", "North-2", "south", "50% off", "under_score", "east",
                                  "west", "", "x", "y", "z", "w"])

    async def ids(q: str) -> list[int]:
        return [a["id"] for a in (await store.list_accounts(q=q, limit=100))[0]]

    assert await ids("north") == [1, 2]             # case-insensitive substring of the label
    assert await ids("%") == [4]                    # LIKE wildcards are literal
    assert await ids("_") == [5]
    assert await ids("+15550000003") == [3]        # the full phone
    assert await ids("0000011") == [11]             # a part of the phone
    assert await ids("12") == [12]                  # the id (phone +15550000012 also contains it)
    assert await ids("nobody") == []


async def test_search_folds_the_case_of_ascii_letters_only_and_takes_long_labels(store: Store) -> None:
    """SQLite's LIKE ignores the case of ASCII letters only; PostgreSQL must not match more. A label as long
    as an import's (100 characters of CJK: 300 bytes) is stored, indexed and found on both."""
    long = "漢字" * 50
    await seed(store, 3, labels=["Émile", "émile-2", long])

    async def ids(q: str) -> list[int]:
        return [a["id"] for a in (await store.list_accounts(q=q, limit=100))[0]]

    assert await ids("é") == [2]  # É is not é to SQLite's LIKE, so not on PostgreSQL either
    assert await ids("MILE") == [1, 2]  # ASCII letters fold
    assert await ids("字漢字") == [3]
    page, _ = await store.list_accounts(sort="label", limit=10)
    assert [a["label"] for a in page] == ["Émile", "émile-2", long]  # byte order, as SQLite sorts


async def test_account_view_shape(store: Store) -> None:
    await seed(store, 1)
    until = time.time() + FAR
    async with store.tx() as tx:
        await store.apply_account_effect(tx, 1, AccountEffect(cooldown_until=until, cooldown_reason="FLOOD_WAIT"))
    account = await store.get_account(1)
    assert account["state"] == "cooldown"
    assert account["phone_masked"] == mask_phone("+15550000001") and "+15550000001" not in str(account)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", account["cooldown_until"])
    assert account["cooldown_reason"] == "FLOOD_WAIT"
    assert account["setup"] == {"done": 0, "total": 0}
    assert (account["label"], account["name"], account["is_probe"], account["is_active"]) == ("acc-1", "", False, True)
    assert (account["executor"], account["disabled_at"], account["last_ok_at"]) == ("local", None, None)
    with pytest.raises(NotFound):
        await store.get_account(999)


async def test_accounts_by_id_reads_inside_and_outside_a_transaction(store: Store) -> None:
    await seed(store, 4)
    assert [a["id"] for a in await store.accounts_by_id(None, [3, 1, 99])] == [1, 3]
    assert await store.accounts_by_id(None, []) == []
    async with store.tx() as tx:
        assert await store.take_lock(tx, 2, "setup:1", 600)
        [inside] = await store.accounts_by_id(tx, [2])
        assert inside["state"] == "busy"  # what this transaction wrote, before it commits
    assert (await store.get_account(2))["state"] == "busy"


async def test_count_user_ids_and_refs(store: Store) -> None:
    assert await store.count_accounts() == 0 and await store.tg_user_ids() == set()
    await seed(store, 3)
    async with store.tx() as tx:
        await store.insert_accounts(tx, [{"phone": None, "tg_user_id": None, "label": "unchecked", "is_probe": 0,
                                          "profile_json": "{}"}])
    assert await store.count_accounts() == 4
    assert await store.tg_user_ids() == {1001, 1002, 1003}
    assert await store.account_ref(2) == (1002, "+15550000002")
    assert await store.account_ref(4) == (None, None)
    with pytest.raises(NotFound, match="account 9"):
        await store.account_ref(9)


# --- disable / enable --------------------------------------------------------------------------

async def test_disable_enable_write_events_and_report_changes(store: Store) -> None:
    await seed(store, 3)
    published: list[tuple[set[int], list[str]]] = []

    async def hook(tx: Tx) -> None:
        published.append((set(tx.accounts), [e["kind"] for e in tx.events]))

    store.on_commit = hook
    assert await store.disable_account(2, "banned by operator") is True
    assert await store.disable_account(2, "another reason") is False
    account = await store.get_account(2)
    assert account["state"] == "disabled" and account["disabled_reason"] == "banned by operator"
    assert account["disabled_at"] is not None
    assert (await store.get_account(1))["state"] == "ready"

    assert await store.enable_account(2) is True
    assert await store.enable_account(2) is False
    account = await store.get_account(2)
    assert account["state"] == "ready" and account["disabled_reason"] is None and account["disabled_at"] is None

    events = await store.recent_events(account_id=2)
    assert [e["kind"] for e in events] == ["account.enabled", "account.disabled"]  # newest first, no no-ops
    assert events[1]["data"] == {"reason": "banned by operator"}
    assert "banned by operator" in events[1]["message"]
    assert published == [({2}, ["account.disabled"]), ({2}, ["account.enabled"])]  # no-ops publish nothing

    with pytest.raises(NotFound):
        await store.disable_account(99, "x")
    with pytest.raises(NotFound):
        await store.enable_account(99)
    assert len(await store.recent_events(limit=1000)) == 2  # nothing written for unknown accounts


async def test_counts(store: Store) -> None:
    await seed(store, 5)
    await store.disable_account(1, "r")
    counts = await store.account_counts()
    assert counts == {"ready": 4, "busy": 0, "cooldown": 0, "disabled": 1, "inactive": 0}
    assert await store.task_counts() == {"setup": {}, "pulled": {}}


async def test_cooldowns_by_reason_count_live_cooldowns_of_enabled_accounts(store: Store) -> None:
    await seed(store, 5, probes=False)
    at = time.time()
    async with store.tx() as tx:
        for account_id, until, reason in [(1, at + 600, "FLOOD_WAIT"), (2, at + 60, "FLOOD_WAIT"),
                                          (3, at + 60, "pace"), (4, at - 10, "FLOOD_WAIT"), (5, at + 600, "pace")]:
            await store.apply_account_effect(tx, account_id, AccountEffect(cooldown_until=until,
                                                                           cooldown_reason=reason))
    await store.disable_account(5, "gone")
    assert await store.cooldowns_by_reason() == [("FLOOD_WAIT", 2), ("pace", 1)]


async def test_assign_accounts_counts_changes_and_refuses_unknown_ids(store: Store) -> None:
    await seed(store, 3)
    assert await store.assign_accounts([1, 2], "acme") == 2
    assert await store.assign_accounts([1, 2, 3], "acme") == 1  # 1 and 2 already were
    assert await store.assign_accounts([3], "acme") == 0
    with pytest.raises(NotFound, match="account 7"):
        await store.assign_accounts([1, 7], "local")
    assert [a["executor"] for a in (await store.list_accounts())[0]] == ["acme"] * 3  # the refused call changed none
    assigned = [e for e in await store.recent_events() if e["kind"] == "accounts.assigned"]
    assert [e["data"] for e in assigned] == [{"executor": "acme", "accounts": 3}, {"executor": "acme", "accounts": 2}]


# --- the audit trail ------------------------------------------------------------------------------

async def test_events_after_is_the_trail_in_id_order_and_resumes_from_any_id(store: Store) -> None:
    await seed(store, 2)
    head = await store.last_event_id()  # past the seeding's own row (its accounts, as a `changes` row)
    async with store.tx() as tx:
        await tx.event("test.one", "first", account_id=1, data={"n": 1, "nested": {"ok": True}})
        await tx.events_many([{"kind": "test.many", "message": f"m{i}", "account_id": 2, "task_id": i,
                               "data": {"i": i}} for i in range(3)])
        await tx.event("test.last", "last", quota_id=5)
        assert tx.accounts == {1, 2}  # an event for an account touches it
        assert tx.events == []  # written just before COMMIT, with the ids commit order gives
    ids = [e["id"] for e in tx.events]
    assert ids == list(range(ids[0], ids[0] + 5)), "one transaction's events take consecutive ids"
    assert ids[0] > head and await store.last_event_id() == ids[-1]
    trail = await store.events_after(head, 100)
    assert [e["id"] for e in trail] == ids  # every account touched is named by an event: no `changes` row
    assert [e["kind"] for e in trail] == ["test.one", "test.many", "test.many", "test.many", "test.last"]
    assert trail[0]["data"] == {"n": 1, "nested": {"ok": True}} and trail[0]["account_id"] == 1
    assert [(e["task_id"], e["data"]) for e in trail[1:4]] == [(i, {"i": i}) for i in range(3)]
    assert (trail[4]["quota_id"], trail[4]["account_id"], trail[4]["data"]) == (5, None, {})
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", e["at"]) for e in trail)
    assert await store.events_after(ids[1], 2) == trail[2:4]
    assert await store.events_after(ids[-1], 100) == []
    assert await store.recent_events(limit=2) == trail[::-1][:2]  # newest first
    assert await store.recent_events(account_id=2) == trail[3:0:-1]


async def test_a_failed_transaction_writes_nothing_and_publishes_nothing(store: Store) -> None:
    await seed(store, 1)
    head = await store.last_event_id()
    published: list[Tx] = []

    async def hook(tx: Tx) -> None:
        published.append(tx)

    store.on_commit = hook
    with pytest.raises(RuntimeError, match="boom"):
        async with store.tx() as tx:
            await tx.event("test.lost", "never committed", account_id=1)
            await store.set_meta(tx, "lost", "1")
            assert await store.take_lock(tx, 1, "setup:1", 600)
            raise RuntimeError("boom")
    assert published == []
    assert await store.events_after(head, 100) == []  # its event, and no `changes` row for the lock either
    assert await store.last_event_id() == head
    assert await store.get_meta("lost") is None
    assert (await store.get_account(1))["state"] == "ready"
    async with store.tx() as tx:  # and the next one works
        await tx.event("test.kept", "committed")
    assert [e["kind"] for e in await store.events_after(head, 100)] == ["test.kept"]
    assert len(published) == 1


async def test_meta_keys_are_set_and_replaced(store: Store) -> None:
    assert await store.get_meta("k") is None
    async with store.tx() as tx:
        await store.set_meta(tx, "k", "one")
        await tx.set_meta("other", "x")
    async with store.tx() as tx:
        await store.set_meta(tx, "k", "two")
    assert (await store.get_meta("k"), await store.get_meta("other")) == ("two", "x")


async def test_a_meta_key_set_by_default_keeps_the_value_of_whoever_set_it_first(
        store: Store, database: Database) -> None:
    """Two nodes first started at once each make the stream's epoch: both must end with one of them."""
    async with database.opened() as other:  # another node's store on the same database
        async with store.tx() as tx:
            assert await tx.setdefault_meta("k", "mine") == "mine"
            theirs = asyncio.create_task(_setdefault(other, "k", "theirs"))  # waits for this one's commit
            await asyncio.sleep(0.2)
            assert not theirs.done()
        assert await asyncio.wait_for(theirs, 10) == "mine"
        async with other.tx() as tx:
            assert await tx.setdefault_meta("k", "later") == "mine"
    assert await store.get_meta("k") == "mine"


async def _setdefault(store: Store, key: str, value: str) -> str:
    async with store.tx() as tx:
        return await tx.setdefault_meta(key, value)


async def test_a_writer_cancelled_while_beginning_leaves_no_open_transaction(store: Store) -> None:
    """A side task cancelled at shutdown right as its transaction begins must not wedge the writer."""
    async def write() -> None:
        async with store.tx() as tx:
            await tx.set_meta("x", "1")

    for i in range(20):  # the cancel lands at different points of BEGIN's hop to the database
        task = asyncio.create_task(write())
        await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        async with store.tx() as tx:  # would raise "cannot start a transaction within a transaction"
            await tx.set_meta("y", str(i))
    assert await store.get_meta("y") == "19"
    assert await store.get_meta("x") is None


async def test_reads_go_on_while_a_write_is_open_and_see_only_what_is_committed(store: Store) -> None:
    """Reads never wait for the writer (the interface's promise), and never see half a transaction: the
    stream resumes from ``events_after``, which must not show an event that may still roll back."""
    await seed(store, 2)
    head = await store.last_event_id()
    async with store.tx() as tx:
        assert await store.take_lock(tx, 1, "setup:1", 600)
        await tx.event("test.open", "not committed yet", account_id=1)
        async with asyncio.timeout(10):  # bounded: a read that waited for this writer would never end
            assert (await store.get_account(1))["state"] == "ready"
            assert await store.events_after(head, 10) == []
            assert await store.last_event_id() == head
            assert (await store.account_counts())["busy"] == 0
    assert (await store.get_account(1))["state"] == "busy"
    assert [e["kind"] for e in await store.events_after(head, 10)] == ["test.open"]


# --- the listing as JSON, built by the database ------------------------------------------------------------------

def encoded(rows: list[dict[str, Any]]) -> list[bytes]:
    """What the control API encoded before the database built the JSON: the view through ``wire.Account``."""
    return [msgspec.json.encode(msgspec.convert(r, Account)) for r in rows]


async def assert_json_pages_match_views(store: Store, **query: Any) -> int:
    """Every page of ``list_accounts_json`` is ``list_accounts``'s, byte for byte, with the same cursors."""
    seen = 0
    after = None
    for _ in range(N_PAGING + 2):  # bounded
        views, nxt = await store.list_accounts(**query, after=after)
        raw, raw_next = await store.list_accounts_json(**query, after=after)
        assert raw == encoded(views)
        assert raw_next == nxt
        seen += len(raw)
        if (after := nxt) is None:
            return seen
    pytest.fail("paging did not end")


async def test_json_listing_is_the_views_encoding_in_every_order_and_filter(
        paging_store: tuple[Store, list[dict[str, Any]]]) -> None:
    store, model = paging_store
    for sort in sorted(SORT_KEYS):
        for desc in (False, True):
            assert await assert_json_pages_match_views(store, sort=sort, desc=desc, limit=7) == len(model)
    for state in STATES:
        assert await assert_json_pages_match_views(store, state=state, limit=5) == sum(
            m["state"] == state for m in model)
    assert await assert_json_pages_match_views(store, q="alpha", sort="label", limit=3) > 0
    with pytest.raises(ValueError, match="cursor"):
        await store.list_accounts_json(after="garbage!")


# Text as an operator's import or Telegram may give it: quotes, backslashes, control characters, markup,
# every kind of whitespace str.strip() knows, characters beyond the BMP (no NUL: the APIs refuse it).
TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12) | st.sampled_from(
    ["", " ", '"q"', "back\\slash", "tab\there", "\u3000wide\u3000", "\x85x\xa0", "[bold]x[/]", "😀", "\x1f\x7f"])
TIMES = st.none() | st.floats(min_value=0, max_value=4e9) | st.sampled_from([1.0, 1.9999999, 1796147123.9999999])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(label=TEXT, first=TEXT, last=TEXT, phone=st.none() | TEXT, reason=st.none() | TEXT,
       cooldown=TIMES, disabled=TIMES, ok=TIMES, owner=st.none() | TEXT, probe=st.booleans())
async def test_json_listing_is_the_views_encoding_whatever_the_text_and_times(
        store: Store, label: str, first: str, last: str, phone: str | None, reason: str | None,
        cooldown: float | None, disabled: float | None, ok: float | None, owner: str | None, probe: bool) -> None:
    if not await backdoor.count(store, "accounts"):
        await seed(store, 2)
    await backdoor.update(store, "accounts", {"id": 1}, label=label, first_name=first, last_name=last, phone=phone,
                          cooldown_until=cooldown, cooldown_reason=reason, disabled_at=disabled,
                          disabled_reason=reason, last_ok_at=ok, owner=owner, pinned_node=owner,
                          last_error_code=reason, is_probe=int(probe))
    assert await assert_json_pages_match_views(store, limit=10) == 2
    [view] = [v for v in (await store.list_accounts())[0] if v["id"] == 1]
    assert view["label"] == label and view["name"] == f"{first} {last}".strip()


async def test_listing_status_and_export_read_beside_a_writer_that_holds_its_transaction(store: Store) -> None:
    """What ``accounts list``, ``status`` and ``quotas export`` read goes to the readers (SQLite's reader
    connection in WAL mode, PostgreSQL's pool): it neither waits for a transaction that holds the writer nor
    sees what that transaction has not committed."""
    await seed(store, 30)
    qid = await store.add_quota(name="q", target="@x", action="channel_stats", last_n_posts=5, quantity=None,
                                orders=3, interval_seconds=60, expires_at=time.time() + 3600)
    await backdoor.insert_many(store, "measurements", [{"quota_id": qid, "observed_at": 1e9 + i, "views": i}
                                                       for i in range(25)])
    before = (await store.list_accounts_json(limit=100))[0]

    async def reads() -> tuple[Any, ...]:
        return (await store.list_accounts_json(limit=100), await store.list_accounts(sort="state", limit=7),
                await store.account_counts(), await store.task_counts(), await store.database_stats(),
                await store.tasks_finished_since(time.time() - 60),
                [c async for c in store.measurement_export(qid, "csv", page=10)])

    async with store.tx() as tx:  # the writer held, with a write not committed yet
        await store.apply_account_effect(tx, 2, AccountEffect(cooldown_until=time.time() + FAR,
                                                              cooldown_reason="FLOOD_WAIT"))
        page, _, counts, _, stats, _, chunks = await asyncio.wait_for(reads(), timeout=30)
    assert page == (before, None) and counts["cooldown"] == 0 and stats["rows"]["accounts"] == 30
    assert b"".join(chunks).count(b"\r\n") == 25
    assert (await store.account_counts())["cooldown"] == 1  # committed now
