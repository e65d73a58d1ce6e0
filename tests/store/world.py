"""A store with accounts and the quota services on it, for the pulled-task rules (design 5 and 6).

The real ``Generator`` and ``Leases`` on the ``Simulator`` gateway (no latency, no random faults): the same
path a provider's HTTP call or the local executor takes. Time is never waited for: leases are expired and
quotas made due again by writing the rows (``tests/store/backdoor.py``), and rows are read as stored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from store import backdoor
from tgdaemon import config
from tgdaemon.config import Config
from tgdaemon.gateway.base import AccountRef
from tgdaemon.gateway.simulator import Simulator
from tgdaemon.quotas.generator import Generator
from tgdaemon.quotas.leases import Leases
from tgdaemon.quotas.messages import Done, Failed, LeasedTask, Observation, PullRequest
from tgdaemon.quotas.probe import Probes
from tgdaemon.store import Generated, Store

TARGET = "@tgfleet_news"
NO_ACCOUNT = "no account is free for this run"
NO_POSTS = "the channel shows no posts"
READ_ALREADY = "every free account has read this post already"
WRONG_TOKEN = "0" * 32
SLACK = 5.0  # seconds of tolerance when comparing a stored time with "now + x"

Row = dict[str, Any]


def make_cfg(*, limits: dict[str, Any] | None = None, **quotas: Any) -> Config:
    """A deterministic world: no latency, no random faults, no dead accounts, no jitter, no pacing by default."""
    return config.load(None, env={}, overrides={
        "simulator": {"accounts": 20, "latency_min_ms": 0, "latency_max_ms": 0, "dead_fraction": 0,
                      "flood_wait_rate": 0, "peer_flood_rate": 0, "transient_rate": 0},
        "limits": {"flood_wait_jitter_seconds": 0, **(limits or {})},
        "quotas": {"pace_seconds": 0, **quotas},
    })


def close_to(value: float | None, expected: float) -> bool:
    return value is not None and abs(value - expected) < SLACK


@dataclass
class World:
    """A store with probe accounts (ids 1..probes) and workers (the ids after), and the services on it."""

    cfg: Config
    store: Store
    sim: Simulator
    leases: Leases
    gen: Generator
    workers: list[int]

    async def tick(self) -> Generated:
        return await self.gen.tick()

    async def pull(self, executor: str = "local", limit: int = 100) -> list[LeasedTask]:
        return await self.leases.pull(executor, PullRequest(limit=limit))

    async def done(self, task: LeasedTask, executor: str = "local", token: str | None = None,
                   views: int = 10) -> str:
        [result] = await self.leases.report(executor, [Done(
            task_id=task.task_id, lease_token=token or task.lease_token, result=Observation(views=views))])
        return result.outcome

    async def fail(self, task: LeasedTask, code: str, executor: str = "local") -> str:
        [result] = await self.leases.report(executor, [Failed(
            task_id=task.task_id, lease_token=task.lease_token, error_code=code, error="from the test")])
        return result.outcome

    # --- rows as stored

    async def quota(self, qid: int) -> Row:
        return await backdoor.row(self.store, "quotas", id=qid)

    async def account(self, aid: int) -> Row:
        return await backdoor.row(self.store, "accounts", id=aid)

    async def task(self, tid: int) -> Row:
        return await backdoor.row(self.store, "tasks", id=tid)

    async def tasks(self, **where: Any) -> list[Row]:
        return await backdoor.rows(self.store, "tasks", **where)

    async def lock(self, aid: int) -> Row | None:
        return await backdoor.maybe_row(self.store, "account_locks", account_id=aid)

    # --- what no operation does

    async def set_quota(self, qid: int, **values: Any) -> None:
        await backdoor.update(self.store, "quotas", {"id": qid}, **values)

    async def set_account(self, aid: int, **values: Any) -> None:
        await backdoor.update(self.store, "accounts", {"id": aid}, **values)

    async def due(self, *qids: int) -> None:
        """Make quotas due again at once, instead of waiting out their interval."""
        for qid in qids:
            await self.set_quota(qid, next_run_at=None)

    async def expire(self, task_id: int) -> None:
        """The lease (or the reservation window of a pending task) ran out, without waiting for it."""
        await backdoor.update(self.store, "tasks", {"id": task_id}, lease_expires_at=time.time() - 1)

    async def add_quota(self, *, action: str = "channel_stats", quantity: int | None = None,
                        orders: int | None = None, posts: list[int] | None = None, interval: float = 60.0,
                        target: str = TARGET, last_n_posts: int = 5) -> int:
        """An inspected quota (orders 100 unless told), with a fresh posts snapshot when ``posts`` is given."""
        if quantity is None and orders is None:
            orders = 100
        qid = await self.store.add_quota(name=f"q{time.monotonic_ns()}", target=target, action=action,
                                         last_n_posts=last_n_posts, quantity=quantity, orders=orders,
                                         interval_seconds=interval, expires_at=time.time() + 3600)
        await self.store.record_inspection(qid, ok=True, peer_id=1, title="news")
        if posts is not None:
            await self.store.record_posts(qid, posts)
        return qid


async def newest_posts(sim: Simulator, n: int) -> list[int]:
    """What the simulated channel shows right now, read as any account."""
    seed = sim.seeds()[0]
    ref = AccountRef(1, seed.tg_user_id, seed.phone)
    return await sim.last_post_ids(ref, await sim.resolve_channel(ref, TARGET), n)


async def world(store: Store, *, workers: int = 2, probes: int = 1, sim_cls: type[Simulator] = Simulator,
                limits: dict[str, Any] | None = None, seed: bool = True, **quotas: Any) -> World:
    cfg = make_cfg(limits=limits, **quotas)
    sim = sim_cls(cfg.simulator)
    if seed:
        async with store.tx() as tx:
            await store.insert_accounts(tx, ({"phone": a.phone, "tg_user_id": a.tg_user_id, "label": a.label,
                                              "is_probe": int(i < probes), "profile_json": "{}"}
                                             for i, a in enumerate(sim.seeds()[:probes + workers])))
    leases = Leases(cfg, store)
    gen = Generator(cfg, store, sim, Probes(cfg, store), leases)
    return World(cfg, store, sim, leases, gen, list(range(probes + 1, probes + workers + 1)))
