"""The stream across daemons (design 9): two real daemon subprocesses on one PostgreSQL database; a client of
daemon A's /v1/watch sees what is done through daemon B, in the one order of the shared event log, and a
cursor from one daemon's stream resumes on the other's. And, in process, that what wakes a daemon's stream
for another process's commit is the store's LISTEN connection (with the poll turned off), lost or not."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import asyncpg
import pgtest
import pytest
from daemon_proc import READY_TIMEOUT, DaemonProc, Fleet, fleet
from test_stream import Msg, nxt, until

from tgdaemon import stream
from tgdaemon.control.client import ControlClient
from tgdaemon.store.postgres import PostgresStore
from tgtui.model import FleetModel

ACCOUNTS = 12
QUIET = {"TGFLEET_QUOTAS__LOCAL_CONCURRENCY": "0"}  # setup is off by default: neither daemon works its fleet


@pytest.fixture
def pg_store(request: pytest.FixtureRequest) -> Iterator[str]:
    with pgtest.store_url("postgresql", request) as url:
        assert url is not None
        yield url


def disabled_ids(msgs: list[Msg]) -> list[int]:
    """The accounts whose ``account.disabled`` event these messages carry, in order."""
    return [m["data"]["account_id"] for m in msgs
            if m.get("kind") == "event" and m["data"]["kind"] == "account.disabled"]


def enabled(account_id: int) -> Callable[[Msg], bool]:
    return lambda m: (m.get("kind") == "event" and m["data"]["kind"] == "account.enabled"
                      and m["data"]["account_id"] == account_id)


def chained(start: int, msgs: list[Msg]) -> bool:
    """Every delta's ``prev`` names the row before its own, from ``start`` on; seq never goes back."""
    seq = start
    for m in msgs:
        if m["type"] != "delta":
            return False  # nothing else comes between these deltas (no loss of the database here)
        if m["seq"] != seq:
            if m["seq"] < seq or m["prev"] != seq:
                return False
            seq = m["seq"]
    return True


async def started(daemon: DaemonProc) -> DaemonProc:
    """Ready as a node: the socket answers before the node registers (a name another live node holds is
    waited for), and the stream follows the log only from there."""
    await daemon.await_ready()
    for _ in range(int(READY_TIMEOUT / 0.05)):
        if "tgdaemon ready" in daemon.log():
            return daemon
        assert daemon.returncode is None, daemon.log()
        await asyncio.sleep(0.05)
    pytest.fail(f"tgdaemon not ready within {READY_TIMEOUT:.0f} s:\n{daemon.log()}", pytrace=False)


async def start_two(f: Fleet) -> tuple[DaemonProc, DaemonProc]:
    """A first (it seeds the simulated fleet), then B on the same database, each with its own data dir,
    socket, port and node name (both would default to the host's name: B would wait for A's name, then
    refuse to start)."""
    a = await started(f.start(data_dir=f.root / "a", socket_path=f.root / "a.sock", accounts=ACCOUNTS,
                              env={**QUIET, "TGFLEET_DAEMON__NODE_NAME": "a"}))
    b = await started(f.start(data_dir=f.root / "b", socket_path=f.root / "b.sock", accounts=ACCOUNTS,
                              env={**QUIET, "TGFLEET_DAEMON__NODE_NAME": "b"}))
    return a, b


async def until_all(stream: AsyncIterator[Msg], ids: range) -> list[Msg]:
    """Messages until each of these accounts' ``account.disabled`` event has come (bounded)."""
    got: list[Msg] = []
    for _ in range(2000):
        if set(ids) <= set(disabled_ids(got)):
            return got
        got.append(await nxt(stream))
    raise AssertionError(f"not all of {list(ids)} disabled in 2000 messages: {got[-5:]}")


def rows(msgs: list[Msg], after: int, upto: int) -> list[tuple[Any, ...]]:
    return [(m["seq"], m["prev"], m["kind"], m["data"].get("id")) for m in msgs if after < m["seq"] <= upto]


async def test_a_client_of_one_daemon_sees_changes_made_through_another_in_one_order(pg_store: str) -> None:
    with fleet(store=pg_store) as f:
        a, b = await start_two(f)
        async with ControlClient(a.socket_path, timeout=10) as on_a, ControlClient(b.socket_path, timeout=10) as on_b:
            status_a, status_b = await on_a.status(), await on_b.status()
            assert (status_a["pid"], status_a["node"], status_b["pid"], status_b["node"]) == (a.pid, "a", b.pid, "b")
            model = FleetModel(clock=time.time)
            async with contextlib.aclosing(on_a.watch()) as stream_a, contextlib.aclosing(on_b.watch()) as stream_b:
                snap_a, snap_b = await nxt(stream_a), await nxt(stream_b)
                assert snap_a["type"] == snap_b["type"] == "snapshot"
                assert snap_a["epoch"] == snap_b["epoch"], "the stream's epoch is the database's"
                assert model.apply(snap_a) and model.accounts[3]["state"] != "disabled"

                assert (await on_b.disable(3, "through b"))["changed"] is True
                seen_a = await until_all(stream_a, range(3, 4))  # bounded: MSG_TIMEOUT per message
                [delta] = [m for m in seen_a if m["kind"] == "account" and m["data"]["id"] == 3]
                assert delta["data"]["state"] == "disabled" and delta["data"]["disabled_reason"] == "through b"
                assert delta["data"] == await on_a.account(3)  # A answers for the whole fleet too

                # Both daemons write at once; each stream carries both daemons' rows, in the same order.
                await asyncio.gather(*(on_b.disable(i, "burst through b") for i in range(4, 8)),
                                     *(on_a.disable(i, "burst through a") for i in range(8, 12)))
                seen_a += await until_all(stream_a, range(4, 12))
                seen_b = await until_all(stream_b, range(3, 12))
            assert chained(snap_a["seq"], seen_a) and chained(snap_b["seq"], seen_b)
            assert all(model.apply(m) for m in seen_a)
            assert {i for i, acc in model.accounts.items() if acc["state"] == "disabled"} == set(range(3, 12))
            after, upto = max(snap_a["seq"], snap_b["seq"]), min(seen_a[-1]["seq"], seen_b[-1]["seq"])
            assert len(rows(seen_a, after, upto)) >= 18, "nine accounts disabled: a state and an event each"
            assert rows(seen_a, after, upto) == rows(seen_b, after, upto), "one order on both daemons"

            # The cursor A's stream gave resumes on B: the log, and its ids, are the database's.
            cursor = model.since
            assert cursor == f"{snap_a['epoch']}:{seen_a[-1]['seq']}"
            await on_a.enable(3)
            await on_b.enable(4)
            async with contextlib.aclosing(on_b.watch(since=cursor)) as resumed_b:
                resumed = await nxt(resumed_b)
                assert resumed["type"] == "resumed" and resumed["status"]["pid"] == b.pid
                missed = await until(resumed_b, enabled(4))
            assert missed[0]["prev"] == seen_a[-1]["seq"] and chained(seen_a[-1]["seq"], missed)
            assert all(m["type"] == "delta" for m in missed) and all(model.apply(m) for m in missed)
            assert model.accounts[3]["state"] != "disabled" and model.accounts[4]["state"] != "disabled"
            assert disabled_ids(missed) == [], "nothing it saw before comes again"


async def test_a_daemons_stream_is_woken_by_another_process_commit_even_across_a_lost_listener(
        daemon_factory: Callable[..., Any], pg_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "POLL_SECONDS", 3600.0)  # no safety net: only a notification can wake it
    async with daemon_factory(store={"url": pg_store}, quotas={"local_concurrency": 0}) as (daemon, client):
        other = await PostgresStore.open(pg_store)  # another daemon's store on the same database
        try:
            async with contextlib.aclosing(client.watch()) as watched:
                snap = await nxt(watched)
                await other.disable_account(3, "through another process")
                got = await until_all(watched, range(3, 4))
                listener = daemon.runtime.store.listener  # type: ignore[attr-defined]
                assert listener.sessions == 1 and listener.conn is not None
                pid = listener.conn.get_server_pid()
                admin = await asyncpg.connect(pg_store)
                try:  # the server ends the listening session, and is sure it is gone before returning
                    assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
                finally:
                    await admin.close()
                await other.disable_account(4, "while the daemon is not listening")
                got += await until_all(watched, range(4, 5))  # the head, handed over on listening again
                assert listener.sessions == 2
            assert chained(snap["seq"], got) and disabled_ids(got) == [3, 4]
        finally:
            await other.close()
