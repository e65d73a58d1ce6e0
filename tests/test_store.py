"""The store on real SQLite files: pragmas, migrations, derived state, keyset paging, disable/enable."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tgdaemon.errors import NotFound, StoreError
from tgdaemon.store import SORT_KEYS, STATES, Store, Tx, mask_phone
from tgdaemon.store.sqlite import SQLiteStore, migrate

# Design section 3, table by table, with the columns the design names (``usage`` holds the claims'
# daily caps; ``entities`` is the per-account entity cache).
DESIGN_COLUMNS: dict[str, set[str]] = {
    "accounts": {"id", "phone", "label", "is_active", "is_probe", "disabled_at", "disabled_reason",
                 "cooldown_until", "cooldown_reason", "executor", "profile_json", "created_at", "last_ok_at"},
    "sessions": {"account_id", "dc_id", "server", "port", "auth_key", "updated_at"},
    "entities": {"account_id", "peer_id", "access_hash", "username"},
    "account_tasks": {"id", "account_id", "task_type", "payload_json", "status", "attempts", "retry_at",
                      "last_error_code", "last_error", "created_at", "updated_at"},
    "quotas": {"id", "name", "target", "action", "last_n_posts", "quantity_total", "quantity_left",
               "orders_left", "per_call", "interval_seconds", "expires_at", "next_run_at", "paused",
               "cursor", "last_error"},
    "tasks": {"id", "subject_type", "subject_id", "account_id", "action", "target", "post_id", "status",
              "lease_token", "leased_by", "lease_expires_at", "lease_count", "result_json", "error_code",
              "created_at", "reported_at"},
    "account_locks": {"account_id", "holder", "expires_at"},
    "usage": {"account_id"},
    "measurements": {"quota_id", "post_id", "observed_at", "views", "forwards", "replies", "reactions"},
    "providers": {"name", "token_hash", "created_at", "last_seen_at", "revoked_at"},
    "events": {"id", "at", "kind", "account_id", "task_id", "quota_id", "message"},
}
FAR = 10 * 365 * 86400  # cooldowns and locks "in the future" stay there for the whole test


def columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


async def seed(store: Store, n: int, labels: list[str] | None = None) -> None:
    rows = [{"phone": f"+1555{i:07d}", "tg_user_id": 1000 + i,
                   "label": labels[i - 1] if labels else f"acc-{i}", "is_probe": int(i % 10 == 0),
                   "profile_json": "{}"} for i in range(1, n + 1)]
    async with store.tx() as tx:
        await store.insert_accounts(tx, rows)


# --- pragmas -----------------------------------------------------------------------------------

async def test_wal_and_foreign_keys(store: Store) -> None:
    assert [r[0] for r in await store.read("PRAGMA journal_mode")] == ["wal"]
    assert [r[0] for r in await store.read("PRAGMA foreign_keys")] == [1]
    async with store.tx() as tx:
        assert [r[0] for r in await tx.fetchall("PRAGMA foreign_keys")] == [1]
    # and enforced on the writer: a session for a missing account is refused, and rolled back
    with pytest.raises(sqlite3.IntegrityError):
        async with store.tx() as tx:
            await tx.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
            await tx.execute("INSERT INTO sessions (account_id, dc_id, server, port, updated_at)"
                             " VALUES (424242, 2, 'x', 443, 0)")
    assert await store.get_meta("k") is None
    # the file on disk is in WAL mode for any other connection too
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


async def test_fresh_store_has_the_whole_data_model(store: Store) -> None:
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == migrate.latest_version()
        for table, cols in DESIGN_COLUMNS.items():
            assert cols <= columns(conn, table), (table, cols - columns(conn, table))
    finally:
        conn.close()
    async with store.tx() as tx:  # one setup task per (account, task_type)
        await store.insert_accounts(tx, [{"phone": "+15550000001", "tg_user_id": 1, "label": "a",
                                          "is_probe": 0, "profile_json": "{}"}])
        await tx.execute("INSERT INTO account_tasks (account_id, task_type, created_at, updated_at)"
                         " VALUES (1, 'ensure_2fa', 0, 0)")
    with pytest.raises(sqlite3.IntegrityError):
        async with store.tx() as tx:
            await tx.execute("INSERT INTO account_tasks (account_id, task_type, created_at, updated_at)"
                             " VALUES (1, 'ensure_2fa', 0, 0)")


# --- migrations --------------------------------------------------------------------------------

def _insert_rows_valid_at(conn: sqlite3.Connection, version: int) -> dict[str, Any]:
    """Rows a database at ``version`` could hold; returns what must survive the upgrade."""
    present = tables(conn)
    kept: dict[str, Any] = {}
    if "accounts" in present:
        conn.execute("INSERT INTO accounts (id, phone, label, is_probe, disabled_at, disabled_reason,"
                     " created_at) VALUES (7, '+15550000777', ?, 0, 5.0, 'old', 1.0)", (f"from-v{version}",))
        conn.execute("INSERT INTO events (at, kind, account_id, message) VALUES (1.0, 'old.event', 7, 'hi')")
        kept["account"] = (7, "+15550000777", f"from-v{version}", "old")
    if "account_tasks" in present:
        conn.execute("INSERT INTO account_tasks (account_id, task_type, status, created_at, updated_at)"
                     " VALUES (7, 'update_name', 'done', 1.0, 1.0)")
        kept["setup_done"] = 1
    if "measurements" in present:
        conn.execute("INSERT INTO quotas (id, name, target, action, interval_seconds, expires_at, created_at)"
                     " VALUES (3, 'q', '@x', 'post_stats', 60, 0, 0)")
        conn.executemany("INSERT INTO measurements (quota_id, observed_at) VALUES (3, ?)", [(1.0,), (2.0,)])
        if "measurements_count" in columns(conn, "quotas"):  # from 0009 the daemon keeps the count with the rows
            conn.execute("UPDATE quotas SET measurements_count = 2 WHERE id = 3")
        kept["measurements"] = 2
    return kept


@pytest.mark.parametrize("version", range(migrate.latest_version()))
async def test_upgrade_from_every_older_version(tmp_path: Path, version: int) -> None:
    latest = migrate.latest_version()
    path = tmp_path / "old.sqlite3"
    assert migrate.upgrade(path, target=version) == version
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == version
        if version >= 1:
            assert "accounts" in tables(conn)
        kept = _insert_rows_valid_at(conn, version)
        assert bool(kept) == (version >= 1)
    finally:
        conn.close()

    assert migrate.upgrade(path) == latest
    assert migrate.upgrade(path) == latest  # idempotent
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == latest
        assert set(DESIGN_COLUMNS) <= tables(conn)
        if "account" in kept:
            row = conn.execute("SELECT id, phone, label, disabled_reason FROM accounts").fetchall()
            assert row == [kept["account"]]
            assert conn.execute("SELECT kind FROM events").fetchall() == [("old.event",)]
    finally:
        conn.close()

    s = await SQLiteStore.open(path)  # and the daemon's own view of it
    try:
        if "account" in kept:
            account = await s.get_account(7)
            assert account["label"] == f"from-v{version}" and account["state"] == "disabled"
            assert account["setup"]["done"] == kept.get("setup_done", 0)
            assert (await s.database_stats())["rows"]["events"] == 1
        else:
            assert await s.count_accounts() == 0
        if "measurements" in kept:
            assert (await s.quota(3))["measurements"] == kept["measurements"]
    finally:
        await s.close()


async def test_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    migrate.upgrade(path)
    newer = migrate.latest_version() + 1
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {newer}")
    conn.close()
    with pytest.raises(StoreError, match=rf"schema version {newer}, newer than"):
        migrate.upgrade(path)
    with pytest.raises(StoreError) as info:
        await SQLiteStore.open(path)
    assert "\n" not in str(info.value)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == newer  # left untouched
    conn.close()


async def test_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite3"
    path.write_bytes(b"this is not an sqlite database at all " * 200)
    with pytest.raises(StoreError, match=str(path)):
        await SQLiteStore.open(path)


def test_migrations_are_numbered_without_gaps() -> None:
    steps = migrate.migrations()
    assert [v for v, _, _ in steps] == list(range(1, migrate.latest_version() + 1))
    assert all(re.fullmatch(r"\d{4}_[a-z0-9_]+\.sql", name) for _, name, _ in steps)


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
        for m in model:
            await tx.execute(
                "UPDATE accounts SET is_active = ?, disabled_at = ?, disabled_reason = ?, cooldown_until = ?,"
                " cooldown_reason = ?, last_error_code = ?, executor = ? WHERE id = ?",
                (m["is_active"], now if m["disabled"] else None, "test" if m["disabled"] else None,
                 m["cooldown_until"], "FLOOD_WAIT" if m["cooldown_until"] else None, m["error"],
                 m["executor"], m["id"]))
            if m["lock"] is not None:
                await tx.execute("INSERT INTO account_locks (account_id, holder, expires_at) VALUES (?, 't', ?)",
                                 (m["id"], m["lock"]))
            for n, task_type in enumerate(["ensure_2fa", "update_name", "privacy_phone_hidden", "story_image"]):
                await tx.execute(
                    "INSERT INTO account_tasks (account_id, task_type, status, created_at, updated_at)"
                    " VALUES (?, ?, ?, 0, 0)", (m["id"], task_type, "done" if n < m["setup_done"] else "pending"))
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
        "label": lambda m: m["label"].encode(),  # SQLite's BINARY collation compares UTF-8 bytes
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
async def paging_store(store: Store):
    return store, await seed_varied(store)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sort=st.sampled_from(sorted(SORT_KEYS)), desc=st.booleans(), state=st.sampled_from([None, *STATES]),
       q=st.sampled_from([None, None, "alpha", "BETA", "a%", "_", "55500000", "7"]),
       page=st.integers(min_value=1, max_value=25))
async def test_keyset_pages_concatenate_to_the_full_listing(paging_store, sort, desc, state, q, page) -> None:
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


async def test_account_view_shape(store: Store) -> None:
    await seed(store, 1)
    until = time.time() + FAR
    async with store.tx() as tx:
        await tx.execute("UPDATE accounts SET cooldown_until = ?, cooldown_reason = 'FLOOD_WAIT' WHERE id = 1",
                         (until,))
    account = await store.get_account(1)
    assert account["state"] == "cooldown"
    assert account["phone_masked"] == mask_phone("+15550000001") and "+15550000001" not in str(account)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", account["cooldown_until"])
    assert account["cooldown_reason"] == "FLOOD_WAIT"
    assert account["setup"] == {"done": 0, "total": 0}
    with pytest.raises(NotFound):
        await store.get_account(999)


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


async def test_a_writer_cancelled_while_beginning_leaves_no_open_transaction(store: Store) -> None:
    """A side task cancelled at shutdown right as its transaction begins must not wedge the writer."""
    async def write() -> None:
        async with store.tx() as tx:
            await tx.execute("INSERT INTO meta (key, value) VALUES ('x', '1')")

    for _ in range(20):  # the cancel lands at different points of BEGIN's thread hop
        task = asyncio.create_task(write())
        await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        async with store.tx() as tx:  # would raise "cannot start a transaction within a transaction"
            await tx.execute("DELETE FROM meta WHERE key = 'x'")
    assert await store.get_meta("x") is None
