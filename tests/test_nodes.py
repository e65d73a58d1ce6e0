"""The node runtime (tgdaemon/nodes) on one PostgreSQL database: focused cases, two daemons at most.

Two real ``Daemon`` instances in this process (each its own data dir, socket, port and node name, both on
one fresh database of the session's server) show registration, the spread of the accounts, the release
of a node that stops, the gate refusing calls for an account the other node owns, and the leadership
moving to the survivor. A private server that the test stops and starts again shows self-fencing: the
gate closes on the node's own clock once renewals fail, and opens when the database is back. Real
subprocesses show what an operator sees: a second daemon with a live node's name refused in one line,
a restart right after ``kill -9`` that waits for its old incarnation to be taken for dead, and a node
that was stalled past ``dead_after`` (SIGSTOP) and finds its name taken, which stops with exit code 1,
and two nodes first started at once on an empty database: one seeded fleet, one stream epoch.
The 3-node chaos runs are tests/multinode.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pgtest
import pytest
from conftest import start_in_process
from daemon_proc import DaemonProc, Fleet, fleet
from simrecord import overlaps

from tgdaemon import config
from tgdaemon.control.client import ControlClient
from tgdaemon.errors import NotOwned
from tgdaemon.gateway.base import AccountRef
from tgdaemon.gateway.gate import check
from tgdaemon.gateway.simulator import Simulator
from tgdaemon.lifecycle.daemon import Daemon
from tgdaemon.store.api import STREAM_EPOCH
from tgdaemon.store.postgres import PostgresStore

T = TypeVar("T")
ACCOUNTS = 30
# Short timings, so that joins, stops and fences happen within a second or two.
NODES = {"heartbeat_seconds": 0.25, "dead_after_seconds": 1.0, "lease_seconds": 1.5, "moves_per_second": 1000.0}
WAIT = 20.0
STOP_TIMEOUT = 15.0
DEAD_AFTER_RESTART = 5.0  # longer than an interpreter's start: the restart after kill -9 finds the old one alive


async def eventually(check: Callable[[], Awaitable[T | None | bool]], what: str, timeout: float = WAIT) -> T:
    """``check()`` until it is truthy (bounded in count and time); what it gave."""
    last: Any = None
    for _ in range(int(timeout / 0.05)):
        last = await check()
        if last:
            return last  # type: ignore[return-value]
        await asyncio.sleep(0.05)
    pytest.fail(f"{what}: not within {timeout:.0f} s (last: {last!r})", pytrace=False)


def node_config(root: Path, name: str, store_url: str, **sections: dict[str, Any]) -> config.Config:
    empty = root / "empty.toml"
    empty.write_text("")
    overrides: dict[str, dict[str, Any]] = {
        "daemon": {"data_dir": str(root / name), "socket": str(root / f"{name}.sock"), "http": "127.0.0.1:0",
                   "node_name": name, "shutdown_timeout_seconds": 5.0},
        "store": {"url": store_url},
        "nodes": dict(NODES),
        "simulator": {"accounts": ACCOUNTS, "latency_min_ms": 0, "latency_max_ms": 0, "flood_wait_rate": 0.0,
                      "peer_flood_rate": 0.0, "transient_rate": 0.0, "dead_fraction": 0.0},
    }
    for section, values in sections.items():
        overrides[section] = {**overrides.get(section, {}), **values}
    return config.load(empty, env={}, overrides=overrides)


@pytest.fixture
def database(pg_server: pgtest.PgServer) -> Iterator[str]:
    name = pg_server.create()
    try:
        yield pg_server.url(name)
    finally:
        pg_server.drop(name)


class Running:
    """Daemons started in this loop; each stopped (and its exit code checked) at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tasks: dict[str, tuple[Daemon, asyncio.Task[int]]] = {}

    async def start(self, name: str, url: str, **sections: dict[str, Any]) -> Daemon:
        cfg = node_config(self.root, name, url, **sections)
        daemon = Daemon(cfg, Simulator(cfg.simulator), install_signal_handlers=False)
        self.tasks[name] = (daemon, await start_in_process(daemon))
        return daemon

    async def stop(self, name: str) -> int:
        daemon, task = self.tasks.pop(name)
        daemon.stop()
        return await asyncio.wait_for(task, STOP_TIMEOUT)

    async def close(self) -> None:
        for name in list(self.tasks):
            await self.stop(name)


@pytest.fixture
async def running(short_dir: Path) -> AsyncIterator[Running]:
    r = Running(short_dir)
    try:
        yield r
    finally:
        await r.close()


async def owned(daemon: Daemon, name: str) -> set[int]:
    assert daemon.runtime is not None
    return {a.id for a in await daemon.runtime.store.owned_accounts(name)}


async def test_two_nodes_share_the_fleet_and_a_stop_hands_everything_to_the_other(
        database: str, running: Running) -> None:
    a = await running.start("a", database)
    assert a.runtime is not None and a.runtime.node.leader  # alone: it leads, and owns every account at ready
    assert len(await owned(a, "a")) == ACCOUNTS == a.runtime.node.accounts

    b = await running.start("b", database)
    assert b.runtime is not None and not b.runtime.node.leader
    store = a.runtime.store

    async def spread() -> tuple[set[int], set[int]] | None:
        mine, theirs = await owned(a, "a"), await owned(b, "b")
        return (mine, theirs) if (len(mine), len(theirs)) == (ACCOUNTS // 2, ACCOUNTS // 2) else None

    mine, theirs = await eventually(spread, "the accounts spread evenly over both nodes")
    nodes = {n.name: n for n in await store.list_nodes(NODES["dead_after_seconds"])}
    assert set(nodes) == {"a", "b"} and all(n.alive for n in nodes.values())
    assert nodes["a"].leader and not nodes["b"].leader
    assert nodes["a"].pid == nodes["b"].pid == os.getpid() and nodes["a"].http != nodes["b"].http

    # Each node's gate is what the database says it owns: an account is in one gate at most.
    await eventually(lambda: _gates_match(a, b), "both gates as the database says")
    # The gate refuses an account the other node owns: what every gateway call asks before it sends anything
    # (the Telethon gateway's calls through it: tests/test_node_gate.py).
    theirs_id = min(theirs)
    ref = AccountRef(theirs_id, *await store.account_ref(theirs_id))
    with pytest.raises(NotOwned, match=f"account {theirs_id}"):
        check(a.gateway.gate, theirs_id)
    check(b.gateway.gate, theirs_id)
    assert (await b.gateway.get_me(ref)).user_id == ref.tg_user_id

    # A clean stop releases its accounts in the same transaction as it stops: nobody owns them after it,
    # and the other node takes them, and the leadership, at its next heartbeats (not after the lease).
    assert await running.stop("a") == 0
    assert await owned(b, "a") == set()
    await eventually(lambda: _takes_all(b), "the survivor owning every account and leading")
    nodes = {n.name: n for n in await b.runtime.store.list_nodes(NODES["dead_after_seconds"])}
    assert nodes["a"].stopped_at is not None and not nodes["a"].alive and nodes["b"].leader
    assert (await b.gateway.get_me(AccountRef(min(mine), *await b.runtime.store.account_ref(min(mine))))).user_id


async def _gates_match(a: Daemon, b: Daemon) -> bool:
    assert a.runtime is not None and b.runtime is not None
    ga, gb = a.runtime.node.gate.owned(), b.runtime.node.gate.owned()
    return (not set(ga) & set(gb) and set(ga) == await owned(a, "a") and set(gb) == await owned(b, "b"))


async def _takes_all(b: Daemon) -> bool:
    assert b.runtime is not None
    return b.runtime.node.leader and len(await owned(b, "b")) == ACCOUNTS == len(b.runtime.node.gate.owned())


async def test_a_node_that_cannot_renew_fences_itself_and_opens_again_when_the_database_is_back(
        running: Running) -> None:
    with pgtest.restartable_server() as server:
        admin = server.admin
        url = admin.url(admin.create())
        a = await running.start("a", url)
        assert a.runtime is not None
        node, store = a.runtime.node, a.runtime.store
        account = min(await owned(a, "a"))
        ref = AccountRef(account, *await store.account_ref(account))
        assert (await a.gateway.get_me(ref)).user_id == ref.tg_user_id and node.leader

        server.stop()
        stopped = time.monotonic()
        # The gate closes on the node's own clock (tests/test_node_gate.py) at this deadline, which counts from
        # a renewal sent before the server went away: two heartbeats before the lease can end in the database.
        assert node.gate.fence_at - stopped < NODES["lease_seconds"] - 2 * NODES["heartbeat_seconds"]
        await eventually(lambda: _fenced(a), "the gate closed for every account")
        assert node.gate.owned() == {} and not node.leader  # clients let go, the leader's work stopped
        with pytest.raises(NotOwned):
            check(a.gateway.gate, account)

        server.start()
        await eventually(lambda: _serving(a, account), "the node serving its accounts again")
        # Its client was let go while the database was away: the simulated server's record has it closed,
        # written once the store was back, so the next call connects anew instead of finding a second holder.
        assert (await a.gateway.get_me(ref)).user_id == ref.tg_user_id
        record = await store.sim_connections(ref.tg_user_id)
        assert [(c.closed_why, c.closed_at is None) for c in record] == [("forgotten", False), (None, True)]
        assert overlaps(record) == []
        assert await running.stop("a") == 0


async def _fenced(a: Daemon) -> bool:
    assert a.runtime is not None
    node = a.runtime.node
    return node.fenced and not node.leader and not node.gate.owned()


async def _serving(a: Daemon, account: int) -> bool:
    assert a.runtime is not None
    node = a.runtime.node
    return not node.fenced and node.leader and node.gate.allows(account)


# --- what an operator sees: real processes ----------------------------------------------------------

def node_env(name: str, **nodes: float) -> dict[str, str]:
    env = {"TGFLEET_DAEMON__NODE_NAME": name, "TGFLEET_DAEMON__SHUTDOWN_TIMEOUT_SECONDS": "5"}
    env.update({f"TGFLEET_NODES__{key.upper()}": str(value) for key, value in {**NODES, **nodes}.items()})
    return env


@pytest.fixture
def fl(database: str) -> Iterator[Fleet]:
    with fleet(store=database) as f:
        yield f


def registered(daemon: DaemonProc, name: str, timeout: float = WAIT) -> None:
    for _ in range(int(timeout / 0.1)):
        if f"node {name} registered" in daemon.log():
            return
        assert daemon.returncode is None, daemon.log()
        time.sleep(0.1)
    pytest.fail(f"node {name} did not register within {timeout:.0f} s:\n{daemon.log()}", pytrace=False)


def last_line(text: str) -> str:
    return [line for line in text.splitlines() if line.strip()][-1]


def test_a_second_daemon_with_a_live_nodes_name_is_refused_in_one_line_and_a_restart_after_kill_waits(
        fl: Fleet) -> None:
    first = fl.start(accounts=ACCOUNTS, env=node_env("x", dead_after_seconds=DEAD_AFTER_RESTART)).wait_ready()
    registered(first, "x")
    other = fl.start(accounts=ACCOUNTS, env=node_env("x", dead_after_seconds=DEAD_AFTER_RESTART),
                     data_dir=fl.root / "data2", socket_path=fl.root / "d2.sock")
    assert other.wait_exit(timeout=DEAD_AFTER_RESTART + 15) == 1
    line = last_line(other.log())
    assert line == (f"tgdaemon: node x is already running on {socket.gethostname()} (pid {first.pid}); stop that"
                    " daemon, or give this one another [daemon] node_name"), other.log()
    assert "Traceback" not in other.log()
    assert first.returncode is None  # left alone

    # kill -9: the restart finds its own earlier incarnation still looking alive, and waits it out
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=5)
    again = fl.start(accounts=ACCOUNTS, env=node_env("x", dead_after_seconds=DEAD_AFTER_RESTART)).wait_ready()
    registered(again, "x")  # the socket answers from the start; the node registers once the old one is dead
    assert "looks alive; waiting up to" in again.log()
    assert again.stop() == 0, again.log()


# A transaction the stopped process left open would hold its row locks while it is stopped (the server's
# idle_in_transaction_session_timeout is another matter): it is stopped again when it had one. Not only
# "idle in transaction": stopped between a statement's prepare (asyncpg: Parse, Describe, Flush) and its
# execution, the session is "active", waiting for the client, inside the transaction.
OPEN_TX = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
           " AND xact_start IS NOT NULL")


def test_a_node_stalled_past_dead_after_finds_its_name_taken_and_stops_with_one_line(
        fl: Fleet, pg_server: pgtest.PgServer, database: str) -> None:
    stalled = fl.start(accounts=ACCOUNTS, env=node_env("y")).wait_ready()
    registered(stalled, "y")  # the fleet seeded, its accounts owned
    for _ in range(50):  # bounded: a moment between two of its transactions
        stalled.proc.send_signal(signal.SIGSTOP)
        time.sleep(0.05)
        if pg_server.query(pgtest.database_of(database), OPEN_TX) == [(0,)]:
            break
        stalled.proc.send_signal(signal.SIGCONT)
    else:
        pytest.fail("the node always had a transaction open")
    try:
        time.sleep(NODES["dead_after_seconds"] + 0.5)  # taken for dead: another daemon may have the name
        taker = fl.start(accounts=ACCOUNTS, env=node_env("y"), data_dir=fl.root / "data2",
                         socket_path=fl.root / "d2.sock").wait_ready(timeout=20)
        registered(taker, "y")
    finally:
        stalled.proc.send_signal(signal.SIGCONT)
    assert stalled.wait_exit(timeout=15) == 1
    lines = [line for line in stalled.log().splitlines() if "was taken over" in line]
    assert len(lines) == 1 and "node y was taken over by another daemon of that name" in lines[0], stalled.log()
    assert "Traceback" not in stalled.log()
    assert taker.returncode is None
    assert taker.stop() == 0, taker.log()


# Both daemons' inserts of the seeded accounts, waiting: one for the test's row, the other for the first's.
SEEDING = ("SELECT query FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
           " ORDER BY pid")


async def test_two_nodes_first_started_at_once_on_an_empty_database_come_up_with_one_seeded_fleet(
        fl: Fleet, database: str) -> None:
    """Neither started first: both find no fleet and seed one at the same moment. The test holds, uncommitted,
    a row with the first seeded account's phone (invisible to every read) until both daemons' seeding
    inserts wait for it, so both surely saw an empty store; then it rolls the row back. The schema is made
    first (a database no daemon has started on, migrated: the migration's own race is
    tests/store/test_postgres_only.py's). Both also made the stream's epoch at about the same moment (that
    race is not forced here: tests/store/test_accounts.py's setdefault_meta test is its deterministic twin)."""
    await (await PostgresStore.open(database)).close()
    first = Simulator(config.SimulatorConfig(accounts=ACCOUNTS)).seeds()[0]
    blocker, db = await asyncpg.connect(database), await asyncpg.connect(database)
    try:
        held = blocker.transaction()
        await held.start()
        await blocker.execute(  # an id of its own: it takes none from the seeded accounts
            "INSERT INTO accounts (id, phone, tg_user_id, created_at) VALUES (0, $1, $2, 0)", first.phone,
            first.tg_user_id)
        p, q = (fl.start(accounts=ACCOUNTS, env=node_env(name), data_dir=fl.root / name,
                         socket_path=fl.root / f"{name}.sock") for name in ("p", "q"))
        waiting: list[str] = []
        for _ in range(int(WAIT / 0.05)):  # bounded: two interpreters start, then seed
            waiting = [r["query"] for r in await db.fetch(SEEDING)]
            if len(waiting) == 2 or p.returncode is not None or q.returncode is not None:
                break
            await asyncio.sleep(0.05)
        assert len(waiting) == 2 and all("INSERT INTO accounts" in query for query in waiting), (
            waiting, p.log(), q.log())
        await held.rollback()

        for daemon, name in ((p, "p"), (q, "q")):
            registered(daemon, name)
        assert await db.fetchval("SELECT count(*) FROM accounts") == ACCOUNTS
        assert await db.fetchval("SELECT count(*) FROM events WHERE kind = 'fleet.seeded'") == 1
        logs = p.log() + q.log()
        assert (logs.count(f"simulator: seeded {ACCOUNTS} accounts"),
                logs.count("simulator: another node seeded the fleet first")) == (1, 1), logs
        assert "Traceback" not in logs and p.returncode is None and q.returncode is None

        # One fleet, and one stream: its epoch is the database's, the same on both nodes.
        epoch = await db.fetchval("SELECT value FROM meta WHERE key = $1", STREAM_EPOCH)
        for daemon in (p, q):
            async with ControlClient(daemon.socket_path, timeout=10) as client:
                async with contextlib.aclosing(client.watch()) as stream:
                    snap = await asyncio.wait_for(stream.__anext__(), WAIT)
                assert (snap["type"], snap["epoch"], len(snap["accounts"])) == ("snapshot", epoch, ACCOUNTS)

        async def spread() -> list[tuple[str, int]] | None:
            rows = await db.fetch("SELECT owner, count(*) AS n FROM accounts GROUP BY owner ORDER BY owner")
            got = [(r["owner"], r["n"]) for r in rows]
            return got if got == [("p", ACCOUNTS // 2), ("q", ACCOUNTS // 2)] else None

        await eventually(spread, "the seeded accounts spread over both nodes")
    finally:
        await blocker.close()
        await db.close()
    assert p.stop() == 0 and q.stop() == 0, (p.log(), q.log())
