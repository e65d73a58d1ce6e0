"""The fleet's leader: the work that runs once per fleet, started and stopped with the leadership.

Every node asks for the leadership with each heartbeat (``renew_node(lead=True)``); the one that holds
it runs generation (fenced in the store by the leader epoch), the reaper, setup dispatch, retention and
the balancer. They start when the node becomes leader and are cancelled the moment it is not (another
node took the leadership after this one could not renew it) or its gate fences, and start again, with
the new epoch, when it leads again. Each runs under ``StoreWatch.keep``, as every side task does.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Coroutine
from typing import Any

from tgdaemon.config import NodesConfig
from tgdaemon.nodes.balancer import plan
from tgdaemon.store import Store

log = logging.getLogger(__name__)
Loop = Callable[[], Coroutine[Any, Any, None]]
Keep = Callable[[Loop], Coroutine[Any, Any, None]]
LeaderTasks = Callable[[int], list[tuple[str, Loop]]]  # the leader epoch -> (name, loop)


class Leadership:
    def __init__(self, name: str, keep: Keep) -> None:
        self.name = name
        self._keep = keep
        self.work: LeaderTasks = lambda epoch: []  # the daemon's, given once its parts exist
        self.epoch: int | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def leader(self) -> bool:
        return self.epoch is not None

    async def follow(self, epoch: int | None) -> None:
        """The leadership as the last renewal found it: the leader's work runs under exactly this epoch."""
        if epoch == self.epoch:
            return
        await self._cancel()
        was, self.epoch = self.epoch, epoch
        if epoch is None:
            log.info("node %s no longer leads the fleet (epoch %s): its leader work stopped", self.name, was)
            return
        log.info("node %s leads the fleet (epoch %d): generation, the reaper, setup dispatch, retention and"
                 " the balancer run here", self.name, epoch)
        self._tasks = [asyncio.create_task(self._keep(loop), name=f"leader {name}")
                       for name, loop in self.work(epoch)]

    def check(self) -> None:
        """A leader task that ended on its own (a bug, not the database, which ``keep`` waits out) stops the
        daemon, as any side task's end does."""
        for task in self._tasks:
            if task.done() and not task.cancelled():
                raise RuntimeError(f"{task.get_name()} ended ({task.exception() or 'returned'})")

    async def _cancel(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def stop(self) -> None:
        await self._cancel()
        self.epoch = None


async def rebalance(store: Store, cfg: NodesConfig, epoch: int, seen: set[str]) -> int:
    """One heartbeat of the balancer: the live nodes' assignment read, the plan's moves made. Moves
    made under an epoch that is no longer the fleet's change nothing (the store checks it). ``seen``: the
    nodes alive at the last round, kept by the caller, so that a node's death is said once, here."""
    nodes = await store.list_nodes(cfg.dead_after_seconds)
    live = {n.name: n.max_accounts for n in nodes if n.alive}
    for n in nodes:
        if n.name in seen and not n.alive and n.stopped_at is None:
            log.warning("node %s is dead: no heartbeat for %.0f s (host %s, pid %d); its %d accounts go to the"
                        " live nodes once its lease ends", n.name, max(0.0, await store.db_now() - n.heartbeat_at),
                        n.host, n.pid, n.accounts)
    seen.clear()
    seen.update(live)
    if not live:
        return 0
    names = sorted(live)
    moved = 0
    max_moves = max(1, math.floor(cfg.moves_per_second * cfg.heartbeat_seconds))
    for move in plan(live, await store.assignment(names), max_moves):
        moved += await store.move_accounts(epoch, move.src, move.dst, move.n, names)
    if moved:
        log.debug("balancer: %d accounts assigned anew over %d live nodes", moved, len(names))
    return moved
