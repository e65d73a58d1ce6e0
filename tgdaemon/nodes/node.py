"""The node: this daemon's row in the fleet, its heartbeat, and its fence.

A start registers the node under ``[daemon] node_name`` with a fresh incarnation. A name still held by a
live node is waited for up to ``nodes.dead_after_seconds`` (a restart right after a ``kill -9`` finds its
own earlier incarnation still looking alive), then refused in one line. On SQLite the data dir's lock
already guarantees that no other daemon uses the database, and the driver takes the name at once.

Every ``nodes.heartbeat_seconds`` a heartbeat renews the node's row (its accounts' ownership lease) and
asks for the fleet's leadership, runs the balancer when it leads, takes the accounts assigned to it, and
reads what it owns (``Ownership``). A renewal that finds the name taken by another incarnation (this one
was taken for dead, after a long stall) stops the daemon. A renewal that fails (the database out of
reach) changes nothing by itself; but the gate stops passing calls once ``fence_at`` is reached, and the
fence watch then lets go of every client and stops the leader's work, before the lease can end in the
database (design 9, "Self-fencing"). The next successful renewal opens the gate again for whatever the
database still says is this node's.

A clean stop lets go of every client, then ``stop_node`` releases the node's accounts and leadership,
so the other nodes take them at their next heartbeat instead of after the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable

from tgdaemon import __version__
from tgdaemon.config import Config
from tgdaemon.errors import StoreDisconnected, TgfleetError
from tgdaemon.gateway.base import Gateway
from tgdaemon.nodes.gate import NodeGate
from tgdaemon.nodes.leader import Keep, Leadership, LeaderTasks, rebalance
from tgdaemon.nodes.ownership import ACQUIRE_BATCHES, START_BATCHES, Ownership
from tgdaemon.store.api import NodeInfo, NodeSpec, Store
from tgdaemon.timeutil import steady

log = logging.getLogger(__name__)


class NodeNameTaken(TgfleetError):
    """another live daemon holds this node name"""


class Node:
    def __init__(self, cfg: Config, store: Store, gateway: Gateway, *, keep: Keep,
                 on_lost: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg.nodes
        self.store = store
        self.gateway = gateway
        self.name = cfg.node_name()
        self.incarnation = secrets.token_hex(8)
        self.max_accounts = cfg.daemon.max_accounts
        self.gate = NodeGate()
        gateway.gate = self.gate  # from now on every call as an account asks this node
        self.ownership = Ownership(store, gateway, self.gate, self.name, self.incarnation,
                                   max_accounts=self.max_accounts, release_wait=self.cfg.lease_seconds,
                                   takeover_grace=self.cfg.takeover_grace_seconds)
        self.leadership = Leadership(self.name, keep)
        self.on_lost = on_lost
        self.registered = False
        self.lost = False  # another incarnation holds the name now: this daemon is stopping
        self.renewed_at: float | None = None  # the database's time of the last successful renewal
        self._sent_at = 0.0  # this clock's (steady: a suspend counts) time the last successful renewal was sent
        self._renewed = asyncio.Event()
        self._fenced = False
        self._seen_alive: set[str] = set()  # the balancer's: the nodes alive at its last round

    @property
    def leader(self) -> bool:
        return self.leadership.leader

    @property
    def accounts(self) -> int:
        return self.ownership.count

    @property
    def fenced(self) -> bool:
        return self.gate.fenced

    async def start(self, http: str | None, leader_tasks: LeaderTasks) -> None:
        """Registered, and one heartbeat made: the node's accounts are its own before any work starts. A
        database lost after the registration is waited for like any later loss: the heartbeat goes on."""
        self.leadership.work = leader_tasks
        await self._register(http)
        with contextlib.suppress(StoreDisconnected):
            await self.tick(batches=START_BATCHES)

    async def _register(self, http: str | None) -> None:
        spec = NodeSpec(self.name, self.incarnation, socket.gethostname(), os.getpid(), __version__, http,
                        self.max_accounts)
        deadline = steady() + self.cfg.dead_after_seconds + self.cfg.heartbeat_seconds
        waited = False
        while True:
            sent = steady()
            info = await self.store.register_node(spec, dead_after=self.cfg.dead_after_seconds,
                                                  lease_seconds=self.cfg.lease_seconds)
            if info is not None:
                break
            holder = await self._holder()
            if steady() >= deadline:
                where = f" on {holder.host} (pid {holder.pid})" if holder is not None else ""
                raise NodeNameTaken(f"node {self.name} is already running{where}; stop that daemon, or give this"
                                    " one another [daemon] node_name")
            if not waited and holder is not None:
                log.info("node %s is held by a daemon on %s (pid %d) that looks alive; waiting up to %g s for its"
                         " heartbeat to stop", self.name, holder.host, holder.pid, self.cfg.dead_after_seconds)
                waited = True
            await asyncio.sleep(min(1.0, self.cfg.heartbeat_seconds))
        self.registered = True
        self.renewed_at, self._sent_at = info.heartbeat_at, sent
        self.gate.renewed(sent, self.cfg.lease_seconds, self.cfg.heartbeat_seconds)
        log.info("node %s registered (host %s, pid %d, incarnation %s)", self.name, spec.host, spec.pid,
                 self.incarnation)

    async def _holder(self) -> NodeInfo | None:
        return next((n for n in await self.store.list_nodes(self.cfg.dead_after_seconds)
                     if n.name == self.name and n.alive), None)

    async def tick(self, batches: int = ACQUIRE_BATCHES) -> None:
        """One heartbeat: renew (and ask to lead), balance when leading, take what is assigned (at most
        ``batches`` transactions of it), read what is owned."""
        renewal = await self.store.renew_node(self.name, self.incarnation, lease_seconds=self.cfg.lease_seconds,
                                              lead=True)
        if not renewal.held:
            await self._taken_over()
            return
        # From when it was sent, after waiting for this node's writer (another node holding the log's lock can
        # keep it a while): counted from before that wait, one stopped peer would fence every node.
        sent = renewal.sent
        self.renewed_at, self._sent_at = renewal.at, sent
        if self.gate.fenced:  # the fence time passed before this renewal came back (a stall): what the gate
            await self._enforce_fence()  # held may be another node's by now; it is read afresh below
        self.gate.renewed(sent, self.cfg.lease_seconds, self.cfg.heartbeat_seconds)
        self._renewed.set()
        if self.gate.fenced:
            return  # back too late to open anything
        if self._fenced:
            self._fenced = False
            log.info("node %s renewed its lease again; taking up its accounts", self.name)
        await self.leadership.follow(renewal.leader_epoch)
        if self.leadership.epoch is not None:
            await rebalance(self.store, self.cfg, self.leadership.epoch, self._seen_alive)
        await self.ownership.acquire(batches)
        await self.ownership.refresh()

    async def run(self) -> None:
        """The side task: a heartbeat every ``heartbeat_seconds``, and the fence watch beside it."""
        watch = asyncio.create_task(self._watch_fence(), name="node fence")
        try:
            while True:
                started = steady()
                if not self.lost:
                    try:
                        await self.tick()  # never cut short: a store call cancelled half-way helps nobody
                    except StoreDisconnected:
                        pass  # the store watch says so; should it last, the fence acts (on its own clock)
                    self.ownership.check()
                    self.leadership.check()
                if watch.done():
                    watch.result()
                await asyncio.sleep(max(0.0, self.cfg.heartbeat_seconds - (steady() - started)))
        finally:
            watch.cancel()
            await self.leadership.stop()

    async def _watch_fence(self) -> None:
        while True:
            wait = self.gate.fence_at - steady()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            self._renewed.clear()  # before fencing: a renewal during it is not missed
            await self._enforce_fence()
            await self._renewed.wait()

    async def _enforce_fence(self) -> None:
        if not self._fenced:
            self._fenced = True
            log.warning("node %s could not renew its lease in time (last renewed %.1f s ago); letting go of every"
                        " client and stopping its leader work until it can", self.name,
                        steady() - self._sent_at)
        await self._fence()

    async def _fence(self) -> None:
        ids = self.ownership.fence()  # the gate is closed from here on, synchronously
        await self.leadership.stop()
        if ids:
            with contextlib.suppress(StoreDisconnected):  # a gateway that records its connections in the store
                await self.gateway.let_go(ids)

    async def _taken_over(self) -> None:
        self.lost = self._fenced = True  # fenced for good: the watch has nothing more to say
        await self._fence()
        line = (f"node {self.name} was taken over by another daemon of that name (this one was taken for dead:"
                f" no heartbeat for {self.cfg.dead_after_seconds:g} s); stopping")
        if self.on_lost is not None:
            self.on_lost(line)

    async def stop(self) -> None:
        """Every client let go, then the node's accounts and leadership released for the others to take."""
        await self.leadership.stop()
        ids = await self.ownership.stop()
        if ids:
            await self.gateway.let_go(ids)
        if self.registered and not self.lost:
            released = await self.store.stop_node(self.name, self.incarnation)
            log.info("node %s stopped: %d accounts released", self.name, released)
