"""Several real ``tgdaemon run --simulate`` nodes on one PostgreSQL database, for the multi-node tests.

Each node is a subprocess of its own (tests/daemon_proc.py's DaemonProc) with its own data dir, control
socket, provider port (``127.0.0.1:0``: the bound address is read from its status) and ``node_name``
(n1, n2, ...), all on the test's one database and one simulated world (same seed, same accounts). The
config is a test's: small node timings (``TIMINGS``), no simulated faults unless a test asks for them.

What the tests look at goes through the doors an operator or a provider uses: the control API on any
node's socket, the CLI, the provider API over HTTP. The invariants are read from the database itself,
with SQL from the test process (``NodeFleet.sql``): the simulator's record of connections
(``sim_connections``), tasks, measurements.

The harness remembers when each process it started ended (``deaths``: kill -9, stop, or an exit it
noticed): a killed process's open simulated connection ends at its death, which is what the overlap
check needs. Every wait here is bounded in count and in time and fails with what it last saw.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pgtest
import pytest
from daemon_proc import DaemonProc, Fleet

from tgdaemon.control.client import ControlClient
from tgdaemon.errors import TgfleetError

T = TypeVar("T")

# Small node timings, so that a death is noticed and its accounts taken over within seconds.
TIMINGS: dict[str, dict[str, Any]] = {
    "nodes": {"heartbeat_seconds": 0.5, "dead_after_seconds": 2.0, "lease_seconds": 3.0,
              "moves_per_second": 1000.0},
    "daemon": {"shutdown_timeout_seconds": 5.0},
    "quotas": {"generate_interval_seconds": 0.2, "pace_seconds": 0, "reaper_interval_seconds": 0.5,
               "local_concurrency": 4},
    "limits": {"flood_wait_jitter_seconds": 0},
    "simulator": {"probe_fraction": 0.2, "dead_fraction": 0.0, "flood_wait_rate": 0.0, "peer_flood_rate": 0.0,
                  "transient_rate": 0.0, "server_timeout_seconds": 3.0},
}
ACCOUNTS = 30
POLL = 0.1  # seconds between two looks of a wait
WAIT = 30.0  # the longest any one wait may take by default
PULL = "/api/provider/telegram/tasks/pull"
REPORT = "/api/provider/telegram/tasks/report"


def toml(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """The config's text: one table per section (scalars only, as the tests need)."""
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value)}")  # numbers, booleans and strings are TOML as JSON writes them
    return "\n".join(lines) + "\n"


def merged(base: Mapping[str, Mapping[str, Any]], top: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {section: dict(values) for section, values in base.items()}
    for section, values in top.items():
        out.setdefault(section, {}).update(values)
    return out


async def wait_for(check: Callable[[], Awaitable[T | None]], what: str, *, timeout: float = WAIT,
                   interval: float = POLL) -> T:
    """``check()`` until it gives something other than None or False (bounded in count and time); that."""
    last: Any = None
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 1):
        try:
            last = await check()
        except (TgfleetError, aiohttp.ClientError, OSError) as exc:  # a node between lives: look again
            last = exc
        else:
            if last is not None and last is not False:
                return last
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(interval)
    pytest.fail(f"{what}: not within {timeout:.0f} s (last: {last!r})", pytrace=False)


@dataclass
class Node:
    """One node name and its data dir and socket; a new process each time it is started."""

    name: str
    data_dir: Path
    socket_path: Path
    env: dict[str, str]
    procs: list[DaemonProc] = field(default_factory=list)
    http: str | None = None  # the provider API of its current process, once ready

    @property
    def proc(self) -> DaemonProc | None:
        return self.procs[-1] if self.procs else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def client(self, timeout: float = 10.0) -> ControlClient:
        return ControlClient(self.socket_path, timeout=timeout)

    def logs(self) -> str:
        return "\n".join(f"--- {self.name} pid {p.pid}:\n{p.log()[-4000:]}" for p in self.procs)


@dataclass(frozen=True)
class Connection:
    """A row of the simulator's record, with the account it is for."""

    id: int
    account_id: int
    tg_user_id: int
    node: str
    pid: int
    opened_at: float
    last_seen_at: float
    closed_at: float | None
    closed_why: str | None


class NodeFleet:
    """N nodes on one database; ``nodes["n1"]`` ... Start, stop, kill -9, restart; ask any of them."""

    def __init__(self, server: pgtest.PgServer, database: str, *, accounts: int = ACCOUNTS,
                 config: Mapping[str, Mapping[str, Any]] | None = None, env: Mapping[str, str] | None = None) -> None:
        self.server = server
        self.database = database
        self.url = server.url(database)
        self.accounts = accounts
        self.fleet = Fleet(store=self.url)
        self.config = merged(TIMINGS, config or {})
        self.fleet.config.write_text(toml(self.config))
        self.fleet.env.update(env or {})
        self.nodes: dict[str, Node] = {}
        self.deaths: dict[int, float] = {}  # pid -> when the harness saw it end (time.time())
        self.kills: list[tuple[str, int, float]] = []  # (node, pid, at), kill -9 only

    # --- processes

    def node(self, name: str) -> Node:
        if name not in self.nodes:
            root = self.fleet.root / name
            root.mkdir()
            self.nodes[name] = Node(name, root / "data", root / "d.sock", {"TGFLEET_DAEMON__NODE_NAME": name})
        return self.nodes[name]

    async def start(self, name: str, *, wait: bool = True, env: Mapping[str, str] | None = None) -> Node:
        """A new process for node ``name`` (created on first use), ready when it returns (unless ``wait``
        is False: then ``ready`` later). The first node of an empty database seeds the world: start it
        alone, before the others."""
        node = self.node(name)
        assert not node.running, f"{name} is already running (pid {node.proc.pid if node.proc else None})"
        node.env.update(env or {})
        node.http = None
        node.procs.append(self.fleet.start(data_dir=node.data_dir, socket_path=node.socket_path,
                                           accounts=self.accounts, env=node.env))
        if wait:
            await self.ready(name)
        return node

    async def ready(self, name: str) -> Node:
        node = self.nodes[name]
        assert node.proc is not None
        await node.proc.await_ready()
        async with node.client() as c:
            status = await wait_for(lambda: c.status(), f"{name}'s status")
        assert status["node"] == name, status["node"]
        pid = node.proc.pid

        async def registered() -> bool:  # the socket answers before the node has its name (it may wait for it)
            return any(n["name"] == name and n["pid"] == pid and n["alive"]
                       for n in (await self.node_list(name))["nodes"])
        await wait_for(registered, f"{name} (pid {pid}) registered and alive")
        node.http = status["http"]
        return node

    async def start_all(self, n: int) -> list[Node]:
        """n1 first (it seeds the world and migrates the database), then the rest at once."""
        names = [f"n{i}" for i in range(1, n + 1)]
        first = await self.start(names[0])
        rest = [await self.start(name, wait=False) for name in names[1:]]
        for node in rest:
            await self.ready(node.name)
        return [first, *rest]

    def _ended(self, proc: DaemonProc) -> None:
        self.deaths.setdefault(proc.pid, time.time())

    def kill(self, name: str) -> int:
        """kill -9 of the node's process; its pid. The death is recorded once the process is reaped (a
        zombie still answers kill(pid, 0), as a live process does)."""
        node = self.nodes[name]
        assert node.proc is not None and node.running, f"{name} is not running"
        pid = node.proc.pid
        node.proc.proc.send_signal(signal.SIGKILL)
        node.proc.proc.wait(timeout=10)
        at = time.time()
        self.deaths[pid] = at
        self.kills.append((name, pid, at))
        node.http = None
        return pid

    async def stop(self, name: str, sig: signal.Signals = signal.SIGTERM) -> int:
        """A graceful stop; its exit code."""
        node = self.nodes[name]
        assert node.proc is not None
        code = await node.proc.astop(sig, timeout=15)
        self._ended(node.proc)
        node.http = None
        return code

    async def restart(self, name: str) -> Node:
        """A new process under the same name (after a kill, it waits for its old incarnation to be dead)."""
        return await self.start(name)

    def live(self) -> list[Node]:
        """The nodes whose current process runs (as the harness knows it)."""
        for node in self.nodes.values():
            if node.proc is not None and node.proc.returncode is not None:
                self._ended(node.proc)
        return [n for n in self.nodes.values() if n.running]

    def close(self) -> None:
        for node in self.nodes.values():
            for proc in node.procs:
                if proc.returncode is None:
                    proc.kill()
                self._ended(proc)
        self.fleet.close()

    def logs(self) -> str:
        return "\n".join(node.logs() for node in self.nodes.values())

    # --- the control API of any node

    async def api(self, name: str, method: str, path: str, body: dict[str, Any] | None = None,
                  params: dict[str, Any] | None = None) -> Any:
        async with self.nodes[name].client() as c:
            return await c.request(method, path, body=body, params=params)

    async def node_list(self, via: str) -> dict[str, Any]:
        """GET /v1/nodes on ``via``: {"node", "at", "nodes": [...]}."""
        return await self.api(via, "GET", "/nodes")

    async def owners(self, via: str) -> dict[int, str | None]:
        """Every account's owner, as node ``via``'s control API shows it."""
        async with self.nodes[via].client() as c:
            return {a["id"]: a["owner"] for a in await c.all_accounts()}

    async def leader(self, via: str) -> str | None:
        """The live leader as ``via`` sees it, or None."""
        nodes = (await self.node_list(via))["nodes"]
        leaders = [n["name"] for n in nodes if n["leader"] and n["alive"]]
        assert len(leaders) <= 1, f"two leaders: {nodes}"
        return leaders[0] if leaders else None

    def any_live(self, but: Iterable[str] = ()) -> str:
        names = [n.name for n in self.live() if n.name not in set(but)]
        assert names, "no live node to ask"
        return random.choice(names)

    async def provider_token(self, via: str, name: str) -> str:
        return (await self.api(via, "POST", "/providers", body={"name": name}))["token"]

    async def assign(self, via: str, ids: list[int], executor: str) -> None:
        answer = await self.api(via, "POST", "/accounts/assign", body={"ids": ids, "executor": executor})
        assert answer["changed"] == len(set(ids)), answer

    async def add_quota(self, via: str, **body: Any) -> int:
        body.setdefault("expires_in_seconds", 3600)
        body.setdefault("interval_seconds", 1)
        return (await self.api(via, "POST", "/quotas", body=body))["id"]

    # --- the database itself

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        return self.server.query(self.database, query)

    def connections(self) -> list[Connection]:
        """The simulator's record of connections, every node's, oldest first."""
        rows = self.sql("SELECT c.id, a.id, c.tg_user_id, c.node, c.pid, c.opened_at, c.last_seen_at, c.closed_at,"
                        " c.closed_why FROM sim_connections c JOIN accounts a ON a.tg_user_id = c.tg_user_id"
                        " ORDER BY c.opened_at, c.id")
        return [Connection(*row) for row in rows]

    def end_of(self, c: Connection, server_timeout: float) -> float:
        """When a connection ended: closed, its process's death, or the simulated server's timeout after
        it was last seen, whichever came first (inf: still open)."""
        ends = [c.last_seen_at + server_timeout, self.deaths.get(c.pid, float("inf"))]
        if c.closed_at is not None:
            ends.append(c.closed_at)
        return min(ends)

    def open_connections(self) -> list[Connection]:
        """Connections open now: not closed, their process alive, seen within the server's timeout."""
        timeout = float(self.config["simulator"]["server_timeout_seconds"])
        self.live()  # notes any process that ended on its own
        now = time.time()
        return [c for c in self.connections() if self.end_of(c, timeout) > now]

    def overlaps(self) -> list[tuple[Connection, Connection]]:
        """Pairs of connections of one account whose lives overlapped: what Telegram answers with
        AUTH_KEY_DUPLICATED. Empty is the promise."""
        timeout = float(self.config["simulator"]["server_timeout_seconds"])
        by_account: dict[int, list[Connection]] = {}
        for c in self.connections():
            by_account.setdefault(c.account_id, []).append(c)
        found: list[tuple[Connection, Connection]] = []
        for conns in by_account.values():
            conns.sort(key=lambda c: (c.opened_at, c.id))
            latest: Connection | None = None
            for c in conns:
                if latest is not None and c.opened_at < self.end_of(latest, timeout):
                    found.append((latest, c))
                if latest is None or self.end_of(c, timeout) > self.end_of(latest, timeout):
                    latest = c
        return found

    def duplicated_disables(self) -> list[tuple[Any, ...]]:
        """Accounts disabled (now or ever) for AUTH_KEY_DUPLICATED: the session a second connection kills."""
        return self.sql("SELECT id, disabled_reason FROM accounts WHERE disabled_reason LIKE '%AUTH_KEY_DUPLICATED%'"
                        " UNION ALL SELECT account_id, message FROM events WHERE kind = 'account.disabled'"
                        " AND (message LIKE '%AUTH_KEY_DUPLICATED%' OR data_json::text LIKE '%AUTH_KEY_DUPLICATED%')")

    def ownership(self) -> dict[int, tuple[str | None, int, str | None, str | None]]:
        """Per account: (owner, owner_epoch, assigned_node, pinned_node), straight from the table."""
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in
                self.sql("SELECT id, owner, owner_epoch, assigned_node, pinned_node FROM accounts ORDER BY id")}


class ProviderClient:
    """A provider as the tests drive it: pulls from any node, reports to any node, and remembers what it
    was given and what it was told.

    ``pulled``: every lease handed out (task id -> lease tokens, in order); ``applied``: the reports
    answered ``applied`` (task id -> the result sent); ``answers``: every outcome by task."""

    def __init__(self, http: aiohttp.ClientSession, token: str) -> None:
        self.http = http
        self.token = token
        self.pulled: dict[int, list[str]] = {}
        self.tasks: dict[int, dict[str, Any]] = {}
        self.applied: dict[int, dict[str, Any]] = {}
        self.answers: dict[int, list[str]] = {}
        self.sent_to: dict[int, tuple[str, str]] = {}  # task id -> (node pulled from, node reported to)
        self.pulled_after_applied: list[int] = []  # must stay empty: a done task is never leased again

    async def post(self, node: Node, path: str, body: Any) -> Any:
        assert node.http is not None, f"{node.name} has no provider address (not ready)"
        async with self.http.post(f"http://{node.http}{path}", json=body,
                                  headers={"Authorization": f"Bearer {self.token}"},
                                  timeout=aiohttp.ClientTimeout(total=10)) as resp:
            payload = await resp.json(content_type=None)
            assert resp.status == 200, (node.name, path, resp.status, payload)
            return payload

    async def pull(self, node: Node, limit: int = 10, lease_seconds: float = 60.0) -> list[dict[str, Any]]:
        tasks = (await self.post(node, PULL, {"limit": limit, "lease_seconds": lease_seconds}))["tasks"]
        for task in tasks:
            if task["task_id"] in self.applied:
                self.pulled_after_applied.append(task["task_id"])
            self.pulled.setdefault(task["task_id"], []).append(task["lease_token"])
            self.tasks[task["task_id"]] = task
            self.sent_to[task["task_id"]] = (node.name, "")
        return tasks

    @staticmethod
    def result_for(task: dict[str, Any]) -> dict[str, Any]:
        """A success report's result, different for every task (so a durable one can be told apart)."""
        if task["action"] == "channel_stats":
            return {"subscribers": 1000 + task["task_id"]}
        return {"views": 10_000 + task["task_id"], "forwards": task["task_id"] % 7, "replies": 0, "reactions": 1}

    async def report(self, node: Node, tasks: list[dict[str, Any]]) -> list[str]:
        """Success reports of ``tasks`` to ``node``; their outcomes, in order."""
        if not tasks:
            return []
        body = [{"task_id": t["task_id"], "lease_token": t["lease_token"], "status": "done",
                 "result": self.result_for(t)} for t in tasks]
        answer = await self.post(node, REPORT, body)
        outcomes = [r["outcome"] for r in answer["results"]]
        assert [r["task_id"] for r in answer["results"]] == [t["task_id"] for t in tasks], answer
        for t, outcome, sent in zip(tasks, outcomes, body):
            self.answers.setdefault(t["task_id"], []).append(outcome)
            self.sent_to[t["task_id"]] = (self.sent_to.get(t["task_id"], ("", ""))[0], node.name)
            if outcome == "applied":
                assert t["task_id"] not in self.applied, f"task {t['task_id']} applied twice"
                self.applied[t["task_id"]] = sent["result"]
        return outcomes

    def pulled_twice(self) -> dict[int, list[str]]:
        return {tid: tokens for tid, tokens in self.pulled.items() if len(tokens) > 1}


async def quiesced(fleet: NodeFleet, via: str, *, timeout: float = WAIT) -> None:
    """Until no pulled task is leased and no setup task runs (bounded): the moment the books must balance."""
    async def calm() -> bool:
        [(leased,)] = fleet.sql("SELECT count(*) FROM tasks WHERE status = 'leased'")
        [(running,)] = fleet.sql("SELECT count(*) FROM account_tasks WHERE status = 'running'")
        return leased == 0 and running == 0
    await wait_for(calm, "no leased task and no running setup task", timeout=timeout)


def books(fleet: NodeFleet) -> list[tuple[int, int | None, int | None, int, int, int, int]]:
    """Per quota: (id, total, left, done tasks, measurements rows, measurements_count, distinct tasks measured)."""
    return fleet.sql(
        "SELECT q.id, q.quantity_total, COALESCE(q.quantity_left, q.orders_left),"
        " (SELECT count(*) FROM tasks t WHERE t.subject_type = 'quota' AND t.subject_id = q.id"
        "  AND t.status = 'done'),"
        " (SELECT count(*) FROM measurements m WHERE m.quota_id = q.id), q.measurements_count,"
        " (SELECT count(DISTINCT m.task_id) FROM measurements m WHERE m.quota_id = q.id)"
        " FROM quotas q ORDER BY q.id")
