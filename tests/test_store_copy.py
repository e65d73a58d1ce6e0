"""Issue 11 item 4: ``tgdaemon store copy``, a fleet moved between stores, and the daemon going on on the copy.

Real stores at both ends: SQLite files in tmp_path, fresh databases on the session's PostgreSQL server
(``pg_server``, tests/pgtest.py). The fleet is made by the daemon's own parts on the simulator (the store's
operations, the ``Generator`` and ``Leases``): accounts with sessions and entity caches, setup tasks done,
waiting and running, quotas with cursors, tasks pulled by a provider (some reported, some still leased),
measurements, usage, events. After a copy a store opened on the target must answer every question as the
source's does, and go on from there: a provider's token, an outstanding lease, ids past the copied ones.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pgtest
import pytest
from daemon_proc import fleet, no_traceback, one_line

from tgdaemon import config
from tgdaemon.control.client import ControlClient
from tgdaemon.gateway.base import AccountRef
from tgdaemon.gateway.simulator import Simulator
from tgdaemon.lifecycle.datadir import DB_NAME, DataDirLock
from tgdaemon.provider.auth import hash_token, new_token
from tgdaemon.quotas.generator import Generator
from tgdaemon.quotas.leases import Leases
from tgdaemon.quotas.messages import Done, LeasedTask, Observation, PullRequest
from tgdaemon.quotas.probe import Probes
from tgdaemon.store import AccountEffect, NewAccount, SessionData, SetupOutcome, Store
from tgdaemon.store.api import NodeSpec
from tgdaemon.store.connect import open_url, parse_url
from tgdaemon.store.copy import CopyError, copy_store
from tgdaemon.timeutil import now

ACCOUNTS = 12
PROBES = 2
PROVIDER = "prov"
NODE = "copy-node"
HOUR = 3600.0  # a node's lease and liveness: it stays the same while the test runs
NUMBERS = {"big": 1e16, "small": 1e-7, "nested": {"b": [1, 2.5], "a": "é"}}  # jsonb prints these its own way
STOP_TIMEOUT = 15.0
E2E_TIMEOUT = 30.0


@pytest.fixture
def databases(pg_server: pgtest.PgServer) -> Iterator[Callable[[], str]]:
    """Fresh PostgreSQL databases on the session's server, as many as the test asks for; dropped after it."""
    names: list[str] = []

    def make() -> str:
        names.append(pg_server.create())
        return pg_server.url(names[-1])

    yield make
    for name in names:
        pg_server.drop(name)


@pytest.fixture
def url_of(tmp_path: Path, request: pytest.FixtureRequest) -> Callable[[str, str], str]:
    """A new store's URL of either kind: a file in tmp_path (``name`` its data dir), or a fresh database."""
    def make(kind: str, name: str) -> str:
        if kind == "sqlite":
            return f"sqlite://{tmp_path / name / DB_NAME}"
        return request.getfixturevalue("databases")()
    return make


async def opened(url: str) -> Store:
    return await open_url(parse_url(url))


@dataclass
class Fleet:
    """What the test needs to know of the fleet it made, beyond what the store answers."""

    token: str  # the provider's token
    keys: dict[int, bytes]  # auth key per account
    leased: list[LeasedTask]  # pulled, not reported
    reported: list[LeasedTask]  # pulled and reported done


def make_cfg() -> config.Config:
    return config.load(None, env={}, overrides={
        "simulator": {"accounts": 20, "latency_min_ms": 0, "latency_max_ms": 0, "dead_fraction": 0,
                      "flood_wait_rate": 0, "peer_flood_rate": 0, "transient_rate": 0},
        "limits": {"flood_wait_jitter_seconds": 0}, "quotas": {"pace_seconds": 0}})


async def make_fleet(store: Store) -> Fleet:
    """Every table with rows in it, made by the operations the daemon uses."""
    cfg = make_cfg()
    sim = Simulator(cfg.simulator)
    seeds = sim.seeds()[:ACCOUNTS]
    async with store.tx() as tx:
        await store.insert_accounts(tx, ({
            "phone": s.phone, "tg_user_id": s.tg_user_id, "label": s.label, "is_probe": int(i < PROBES),
            "first_name": s.first_name, "last_name": s.last_name,
            "profile_json": json.dumps({"about": "é", "weight": 1.5})} for i, s in enumerate(seeds)))
        await tx.event("test.numbers", "JSON the drivers print differently", data=NUMBERS)
    keys = {}
    for account_id in range(1, ACCOUNTS + 1):
        keys[account_id] = os.urandom(256)
        await store.save_session(account_id, SessionData(2, "149.154.167.51", 443, keys[account_id]))
        await store.save_entities(account_id, [(1000 + account_id, 2**62 + account_id, f"user{account_id}", None, "A"),
                                               (-1001234567890, -(2**62), "tgfleet_news", None, "News")])
    await store.dispatch_setup({"update_name": {"first_name": "Fleet"}, "set_bio": {"about": "copied"}})
    done, waiting, _running = await store.claim_setup(["update_name"], 3, 600)
    await store.finish_setup_many([
        (done, SetupOutcome("done", AccountEffect(ok=True), result={"name": "Fleet"})),
        (waiting, SetupOutcome("retry", AccountEffect(error_code="FLOOD_WAIT_X", cooldown_until=now() + 600,
                                                      cooldown_reason="flood_wait"),
                               error="flood wait", retry_at=now() + 600, refund_attempt=True))])
    token = new_token()
    await store.add_provider(PROVIDER, hash_token(token))
    await store.assign_accounts(list(range(PROBES + 1, ACCOUNTS + 1)), PROVIDER)
    assert await store.register_node(NodeSpec(NODE, "i1", "host-1", 4242, "12", None, 0), dead_after=HOUR,
                                     lease_seconds=HOUR)
    epoch = (await store.renew_node(NODE, "i1", lease_seconds=HOUR, lead=True)).leader_epoch
    assert epoch is not None
    await store.pin_accounts([1], NODE)
    assert await store.move_accounts(epoch, None, NODE, 3, [NODE]) == 3
    assert len(await store.acquire_accounts(NODE, "i1", 3)) == 3  # owners, epochs, one account left unowned
    for i in range(3):  # a quota makes one task per run: six make six
        posts = await store.add_quota(name=f"views {i}", target="@tgfleet_news", action="post_stats", last_n_posts=3,
                                      quantity=50, orders=None, interval_seconds=60, expires_at=time.time() + 3600)
        channel = await store.add_quota(name=f"subscribers {i}", target="@tgfleet_markets", action="channel_stats",
                                        last_n_posts=0, quantity=None, orders=20, interval_seconds=60,
                                        expires_at=time.time() + 3600)
        for quota_id in (posts, channel):
            await store.record_inspection(quota_id, ok=True, peer_id=quota_id, title=f"channel {quota_id}")
        await store.record_posts(posts, [11, 12, 13])
    await sim.start(store)  # the simulator's own tables too: a changed profile, its connections
    try:
        await sim.set_name(AccountRef(1, seeds[0].tg_user_id), "Copied", "Along")
        await sim.forget(1)
        leases = Leases(cfg, store)
        generated = await Generator(cfg, store, sim, Probes(cfg, store), leases).tick()
    finally:
        await sim.close()
    assert generated.tasks >= 4, generated
    pulled = await leases.pull(PROVIDER, PullRequest(limit=100))
    reported, leased = pulled[: len(pulled) // 2], pulled[len(pulled) // 2:]
    results = await leases.report(PROVIDER, [Done(task_id=t.task_id, lease_token=t.lease_token,
                                                  result=Observation(views=100 + t.task_id)) for t in reported])
    assert {r.outcome for r in results} == {"applied"}
    return Fleet(token, keys, leased, reported)


async def answers(store: Store, fleet: Fleet) -> dict[str, Any]:
    """Everything a daemon asks its store about the fleet, as the store answers it."""
    accounts, _ = await store.list_accounts(limit=1000)
    stats = await store.database_stats()
    connections = await store.sim_connections()
    return {
        "accounts": accounts,
        "account_counts": await store.account_counts(),
        "quotas": await store.quotas(),
        # setup_tasks gives its JSON as the driver stores it (jsonb prints spaces): compared parsed.
        "setup": [{k: json.loads(v) if k.endswith("_json") and v is not None else v for k, v in t.items()}
                  for t in await store.setup_tasks(limit=1000)],
        "task_counts": await store.task_counts(),
        "rows": stats["rows"],
        "events": await store.events_after(0, 1000),
        "providers": await store.list_providers(),
        "sessions": {a: await store.load_session(a) for a in fleet.keys},
        "entities": {a: sorted(await store.load_entities(a)) for a in fleet.keys},
        "measurements": [page for q in await store.quotas() async for page in store.measurement_pages(q["id"])],
        "meta": await store.get_meta("test.meta"),
        "nodes": await store.list_nodes(HOUR),
        "owned": await store.owned_accounts(NODE),
        "assignment": await store.assignment([NODE]),
        "sim_connections": connections,
        "sim_profiles": {u: json.loads(await store.sim_profile(u) or "null")
                         for u in sorted({c.tg_user_id for c in connections})},
    }


DIRECTIONS = [("sqlite", "postgresql"), ("postgresql", "sqlite"), ("sqlite", "sqlite"), ("postgresql", "postgresql")]


@pytest.mark.parametrize(("source_kind", "target_kind"), DIRECTIONS, ids=[f"{s}-{t}" for s, t in DIRECTIONS])
async def test_a_copied_fleet_answers_alike_and_goes_on(url_of: Callable[[str, str], str], source_kind: str,
                                                        target_kind: str) -> None:
    source_url, target_url = url_of(source_kind, "from"), url_of(target_kind, "to")
    source = await opened(source_url)
    try:
        fleet = await make_fleet(source)
        async with source.tx() as tx:
            await source.set_meta(tx, "test.meta", "kept")
        before = await answers(source, fleet)
        assert any(p and p["first_name"] == "Copied" for p in before["sim_profiles"].values())
    finally:
        await source.close()

    report = await copy_store(source_url, target_url, batch=7)  # batches smaller than most tables
    assert report.ok, report
    assert {t.name for t in report.tables} >= {"accounts", "sessions", "entities", "account_tasks", "quotas",
                                               "tasks", "account_locks", "usage", "measurements", "providers",
                                               "events", "meta", "row_counts", "nodes", "leadership"}
    assert all(t.source_rows == t.target_rows for t in report.tables)
    assert sum(t.target_rows for t in report.tables if t.name in ("tasks", "measurements", "usage")) > 0
    if target_kind == "sqlite":
        assert stat.S_IMODE(os.stat(parse_url(target_url).path).st_mode) == 0o600  # type: ignore[arg-type]
        left = parse_url(target_url).path.parent  # type: ignore[union-attr]
        assert sorted(p.name for p in left.iterdir()) == sorted([DB_NAME, "tgdaemon.lock"])  # no temporary file

    target = await opened(target_url)
    try:
        after = await answers(target, fleet)
        assert after == before
        assert all(after["sessions"][a].auth_key == key for a, key in fleet.keys.items())  # type: ignore[union-attr]
        found = await target.provider_by_token_hash(hash_token(fleet.token))
        assert found is not None and found.name == PROVIDER and found.revoked_at is None
        # The provider goes on where it was: an outstanding lease reports with its token, a report
        # sent again is the duplicate it was on the source.
        leases = Leases(make_cfg(), target)
        results = await leases.report(PROVIDER, [
            Done(task_id=fleet.leased[0].task_id, lease_token=fleet.leased[0].lease_token,
                 result=Observation(views=7)),
            Done(task_id=fleet.reported[0].task_id, lease_token=fleet.reported[0].lease_token,
                 result=Observation(views=7))])
        assert [r.outcome for r in results] == ["applied", "duplicate"]
        # New rows are numbered past the copied ones.
        account_id = await target.add_account(NewAccount("+15550000999", 999_999, "new", False),
                                               SessionData(2, "149.154.167.51", 443, os.urandom(256)), how="import")
        assert account_id == ACCOUNTS + 1
        quota_id = await target.add_quota(name="new", target="@tgfleet_news", action="channel_stats", last_n_posts=0,
                                          quantity=None, orders=1, interval_seconds=60, expires_at=time.time() + 60)
        assert quota_id == max(q["id"] for q in before["quotas"]) + 1
        newest = await target.events_after(before["events"][-1]["id"], 100)
        assert newest and all(e["id"] > before["events"][-1]["id"] for e in newest)
        assert (await target.database_stats())["rows"]["measurements"] == before["rows"]["measurements"] + 1
    finally:
        await target.close()


@pytest.mark.parametrize("target_kind", ["sqlite", "postgresql"])
async def test_a_target_with_any_row_is_refused_and_left_alone(url_of: Callable[[str, str], str],
                                                               target_kind: str) -> None:
    source_url, target_url = url_of("sqlite", "from"), url_of(target_kind, "to")
    for url, label in ((source_url, "copied"), (target_url, "already there")):
        store = await opened(url)
        try:
            await store.add_account(NewAccount(None, None, label, False), SessionData(2, "h", 443, os.urandom(8)),
                                    how="import")
        finally:
            await store.close()
    with pytest.raises(CopyError, match=r"is not empty \((.+) hold rows\)") as refused:
        await copy_store(source_url, target_url)
    named = re.search(r"\((.+) hold rows\)", str(refused.value)).group(1)  # type: ignore[union-attr]
    assert sorted(named.split(", ")) == ["accounts", "events", "row_counts", "sessions"]
    target = await opened(target_url)
    try:
        accounts, _ = await target.list_accounts()
        assert [a["label"] for a in accounts] == ["already there"]
    finally:
        await target.close()
    if target_kind == "sqlite":
        left = parse_url(target_url).path.parent  # type: ignore[union-attr]
        assert sorted(p.name for p in left.iterdir()) == sorted(["tgdaemon.lock", DB_NAME])


async def test_a_failed_copy_leaves_an_empty_postgresql_target_empty(url_of: Callable[[str, str], str]) -> None:
    """A value PostgreSQL refuses (a NUL in text, which SQLite keeps) fails the copy half way, in one line."""
    source_url, target_url = url_of("sqlite", "from"), url_of("postgresql", "to")
    source = await opened(source_url)
    try:
        await make_fleet(source)
        async with source.tx() as tx:
            await source.set_meta(tx, "zz.last", "a\x00b")  # meta is written after every other table but one
    finally:
        await source.close()
    with pytest.raises(CopyError, match=r"^target postgresql://.*: table meta: .*0x00"):
        await copy_store(source_url, target_url)
    target = await opened(target_url)
    try:
        assert await target.count_accounts() == 0
        assert await target.events_after(0, 10) == []
        assert (await target.database_stats())["rows"]["events"] == 0
        account_id = await target.add_account(NewAccount(None, None, "first", False),
                                               SessionData(2, "h", 443, os.urandom(8)), how="import")
        assert account_id == 1  # the sequences were not moved either
    finally:
        await target.close()


async def test_a_failed_copy_leaves_no_sqlite_file(url_of: Callable[[str, str], str], tmp_path: Path) -> None:
    """A row SQLite's own target refuses (a session of no account, kept by a source without foreign keys)."""
    source_url, target_url = url_of("sqlite", "from"), url_of("sqlite", "to")
    source = await opened(source_url)
    await source.close()
    conn = sqlite3.connect(parse_url(source_url).path)  # type: ignore[arg-type]
    conn.execute("INSERT INTO sessions (account_id, dc_id, server, port, updated_at) VALUES (42, 2, 'h', 443, 0)")
    conn.commit()
    conn.close()
    with pytest.raises(CopyError, match=r"table sessions: FOREIGN KEY constraint failed"):
        await copy_store(source_url, target_url)
    assert [p.name for p in (tmp_path / "to").iterdir()] == ["tgdaemon.lock"]


async def test_a_daemon_on_either_store_refuses_the_copy(url_of: Callable[[str, str], str], tmp_path: Path) -> None:
    sqlite_url, pg_url, other = url_of("sqlite", "from"), url_of("postgresql", "pg"), url_of("sqlite", "to")
    for url in (sqlite_url, pg_url):
        store = await opened(url)
        await store.close()
    lock = DataDirLock(tmp_path / "from")  # what a running daemon holds
    lock.acquire()
    try:
        with pytest.raises(CopyError, match=rf"^source sqlite://.*: a tgdaemon \(pid {os.getpid()}\) is running on"
                                            r" data dir .*; stop it first"):
            await copy_store(sqlite_url, pg_url)
    finally:
        lock.release()
    daemon = await opened(pg_url)  # the driver's pool: connections named as a daemon's are
    try:
        with pytest.raises(CopyError, match=r"^source postgresql://.*: a tgdaemon is connected to it .*stop it"):
            await copy_store(pg_url, other)
        with pytest.raises(CopyError, match=r"^target postgresql://.*: a tgdaemon is connected to it"):
            await copy_store(sqlite_url, pg_url)
    finally:
        await daemon.close()
    assert not Path(parse_url(other).path).exists()  # type: ignore[arg-type]


def test_a_url_with_a_password_is_refused_in_one_line(tmp_path: Path) -> None:
    with fleet() as f:
        for flags in (["--from", "postgresql://fleet:s3cret-pw@db.example/fleet", "--to", f"sqlite://{tmp_path}/x"],
                      ["--from", f"sqlite://{tmp_path}/x",
                       "--to", "postgresql://fleet@db.example/f?password=s3cret-pw"]):
            result = f.cli("store", "copy", *flags)
            no_traceback(result)
            line = one_line(result.stderr)
            assert result.returncode == 2, result
            assert "s3cret-pw" not in result.stdout + result.stderr
            assert "password" in line and ("--from" in line if flags[1].startswith("postgresql") else "--to" in line)
    assert list(tmp_path.iterdir()) == []


def test_the_cli_prints_a_table_of_counts_and_checksums(tmp_path: Path) -> None:
    with fleet() as f:
        source, target = tmp_path / "from" / DB_NAME, tmp_path / "to" / DB_NAME
        made = f.cli("store", "copy", "--from", f"sqlite://{source}", "--to", f"sqlite://{target}")
        assert made.returncode == 1 and one_line(made.stderr) == f"tgdaemon: source sqlite://{source}: no such database"
        assert f.start(data_dir=source.parent, accounts=5).wait_ready().stop() == 0
        result = f.cli("store", "copy", "--from", f"sqlite://{source}", "--to", f"sqlite://{target}")
        no_traceback(result)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0].split() == ["table", "source", "rows", "target", "rows", "checksum"]
        counts = {line.split()[0]: line.split()[1:] for line in lines[1:-1]}
        assert counts["accounts"][:3] == ["5", "5", "match"] and all(c[2] == "match" for c in counts.values())
        assert lines[-1].startswith(f"copied {sum(int(c[0]) for c in counts.values())} rows in ")
        assert lines[-1].endswith(f"sqlite://{source} -> sqlite://{target}")
        again = f.cli("store", "copy", "--from", f"sqlite://{source}", "--to", f"sqlite://{target}")
        no_traceback(again)
        assert again.returncode == 1 and "is not empty" in one_line(again.stderr)


# --- end to end: a daemon on SQLite works, stops; the copy; a daemon on PostgreSQL goes on ---------------------------

CONFIG = """
[quotas]
generate_interval_seconds = 0.2
pace_seconds = 0
[setup]
enabled = true
dispatch_interval_seconds = 1
[setup.retry]
backoff_seconds = [0.1]
[setup.profile]
first_name = "Fleet"
last_name = "Copy"
[simulator]
probe_fraction = 0.1
dead_fraction = 0.0
flood_wait_rate = 0.0
peer_flood_rate = 0.0
transient_rate = 0.0
post_interval_seconds = 1
"""
PULL = "/api/provider/telegram/tasks/pull"
REPORT = "/api/provider/telegram/tasks/report"
QUOTAS = 12  # a quota makes one task per run, at most one run a second: many make the load
KEPT = 3  # leases left outstanding across the move
STEPS = int(E2E_TIMEOUT / 0.05)  # a loop's bound in count, beside its bound in time


class Provider:
    """A provider over real HTTP: pulls and reports done, counting what the daemon applied."""

    def __init__(self, http: aiohttp.ClientSession, base: str, token: str) -> None:
        self.http, self.base, self.token = http, base, token
        self.applied = 0

    async def post(self, path: str, body: Any) -> Any:
        async with self.http.post(self.base + path, json=body,
                                  headers={"Authorization": f"Bearer {self.token}"}) as resp:
            assert resp.status == 200, (resp.status, await resp.text())
            return await resp.json()

    async def pull(self, limit: int) -> list[dict[str, Any]]:
        return (await self.post(PULL, {"limit": limit, "lease_seconds": 3600}))["tasks"]  # type: ignore[no-any-return]

    async def report(self, tasks: list[dict[str, Any]]) -> list[str]:
        results = await self.post(REPORT, [{"status": "done", "task_id": t["task_id"], "lease_token": t["lease_token"],
                                            "result": {"views": 100, "forwards": 1, "replies": 0, "reactions": 2}}
                                           for t in tasks])
        outcomes = [r["outcome"] for r in results["results"]]
        self.applied += outcomes.count("applied")
        return outcomes

    async def work_until(self, applied: int) -> None:
        deadline = time.monotonic() + E2E_TIMEOUT
        for _ in range(STEPS):
            if self.applied >= applied or time.monotonic() > deadline:
                break
            if tasks := await self.pull(20):
                await self.report(tasks)
            else:
                await asyncio.sleep(0.05)
        assert self.applied >= applied, f"only {self.applied} reports applied within {E2E_TIMEOUT:g} s"

    async def pull_some(self, n: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + E2E_TIMEOUT
        tasks: list[dict[str, Any]] = []
        for _ in range(STEPS):
            if len(tasks) >= n or time.monotonic() > deadline:
                break
            tasks += await self.pull(n - len(tasks))
            await asyncio.sleep(0.05)
        assert len(tasks) == n, f"only {len(tasks)} tasks pulled within {E2E_TIMEOUT:g} s"
        return tasks


def cli_json(f: Any, *args: str) -> Any:
    result = f.cli(*args, "--json", "--socket", str(f.socket_path))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


async def test_a_daemon_goes_on_on_postgresql_after_the_copy(databases: Callable[[], str]) -> None:
    pg_url = databases()
    with fleet() as f:
        f.config.write_text(CONFIG)
        sqlite_path = f.data_dir / DB_NAME
        daemon = await f.start(accounts=30).await_ready()
        status = cli_json(f, "status")
        token = f.cli("providers", "add", PROVIDER, "--socket", str(f.socket_path)).stdout.strip()
        workers = [str(a["id"]) for a in cli_json(f, "accounts", "list") if not a["is_probe"]]
        assert f.cli("accounts", "assign", *workers, "--executor", PROVIDER, "--socket", str(f.socket_path)
                     ).returncode == 0
        channels = status["simulator"]["channels"]
        async with ControlClient(f.socket_path) as client:
            for i in range(QUOTAS):
                await client.request("POST", "/quotas", body={
                    "name": f"q{i}", "target": f"@{channels[i % len(channels)]}", "action": "post_stats",
                    "last_n_posts": 20, "quantity": 100_000, "interval_seconds": 1, "expires_in_seconds": 3600})
        async with aiohttp.ClientSession() as http:
            provider = Provider(http, f"http://{status['http']}", token)
            await provider.work_until(20)
            kept = await provider.pull_some(KEPT)

        refused = f.cli("store", "copy", "--from", f"sqlite://{sqlite_path}", "--to", pg_url)
        no_traceback(refused)
        assert refused.returncode == 1, refused
        assert f"a tgdaemon (pid {daemon.pid}) is running on data dir {f.data_dir}" in one_line(refused.stderr)
        assert await daemon.astop(signal.SIGTERM, STOP_TIMEOUT) == 0
        accounts = rows(sqlite_path, "SELECT id, label, executor, first_name FROM accounts ORDER BY id")
        left = rows(sqlite_path, "SELECT id, quantity_left, cursor FROM quotas ORDER BY id")
        setup_done = rows(sqlite_path, "SELECT COUNT(*) FROM account_tasks WHERE status = 'done'")[0][0]
        # The newest of the audit trail (`events` leaves out the stream's `changes` rows; the copy's counts
        # and checksums cover those).
        [(last_event,)] = rows(sqlite_path, "SELECT MAX(id) FROM events WHERE kind <> 'changes'")
        assert setup_done > 0

        copied = f.cli("store", "copy", "--from", f"sqlite://{sqlite_path}", "--to", pg_url, "--json")
        no_traceback(copied)
        assert copied.returncode == 0, copied.stderr
        summary = json.loads(copied.stdout)
        assert summary["ok"] and all(t["match"] and t["source_rows"] == t["target_rows"] for t in summary["tables"])
        assert {t["name"]: t["target_rows"] for t in summary["tables"]}["accounts"] == 30

        f.store = pg_url
        daemon = await f.start(accounts=None).await_ready()
        status = cli_json(f, "status")
        assert status["store"]["kind"] == "postgresql"
        listed = cli_json(f, "accounts", "list")
        assert [(a["id"], a["label"], a["executor"]) for a in listed] == [a[:3] for a in accounts]
        assert [(q["id"], q["quantity_left"]) for q in cli_json(f, "quotas", "list")] == [q[:2] for q in left]
        async with aiohttp.ClientSession() as http:
            provider = Provider(http, f"http://{status['http']}", token)
            assert await provider.report(kept) == ["applied"] * KEPT  # the leases taken on SQLite
            await provider.work_until(KEPT + 10)  # and new work, pulled from PostgreSQL
        quotas = cli_json(f, "quotas", "list")
        assert sum(q["quantity_left"] for q in quotas) == sum(q[1] for q in left) - provider.applied
        assert f.cli("accounts", "disable", workers[0], "--reason", "moved", "--socket", str(f.socket_path)
                     ).returncode == 0
        events = cli_json(f, "events", "--limit", "5000")
        assert last_event in {e["id"] for e in events}  # the audit trail came along, ids and all
        assert events[0]["kind"] == "account.disabled" and events[0]["id"] > last_event, events[0]
        setup = status["tasks"]["setup"]
        assert setup.get("done", 0) >= setup_done
        assert "Traceback" not in daemon.log()
        assert await daemon.astop(signal.SIGTERM, STOP_TIMEOUT) == 0
