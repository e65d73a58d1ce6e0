"""Where the fleet's accounts should be: the leader's plan for one heartbeat (design 9, "Balancer").

Pure: it reads what ``Store.assignment`` counted and the live nodes' caps, and says which moves to
make; the leader (``tgdaemon.nodes.leader``) makes them with ``Store.move_accounts``. Each node's
target is its share of every account the live nodes can hold, pinned ones included, in proportion to
its weight (its ``max_accounts``; a node with none set weighs the mean of those set, or 1 when none
is), never above its cap and never below what is pinned to it (those cannot move). Accounts that no
live node is assigned (a new import, a dead or stopped node's) are handed out at once, to the nodes
furthest below their targets: nobody serves them meanwhile. Between live nodes at most
``max_moves`` accounts move per heartbeat, from the most loaded (against its target) to the least,
so a node that joins fills up gradually and a served account is not disturbed for nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from tgdaemon.store.api import Assignment

BISECTIONS = 100  # halvings of the share per unit of weight: far below one account at any fleet size


@dataclass(frozen=True, slots=True)
class Move:
    src: str | None  # None: accounts assigned to no live node
    dst: str
    n: int


def weights(caps: Mapping[str, int]) -> dict[str, float]:
    """A node's weight is its cap; a node with none (0) weighs the mean of the caps set, or 1 when none is."""
    set_caps = [cap for cap in caps.values() if cap > 0]
    default = sum(set_caps) / len(set_caps) if set_caps else 1.0
    return {name: float(cap) if cap > 0 else default for name, cap in caps.items()}


def targets(caps: Mapping[str, int], pinned: Mapping[str, int], total: int) -> dict[str, int]:
    """How many of ``total`` accounts each node should hold: proportional to weight, within [pinned, cap].

    Water-filling: the share per unit of weight ``x`` that makes ``sum(clamp(x * w, pinned, cap))`` reach
    the total is found by bisection (the sum grows with ``x``), then rounded to whole accounts by largest
    remainder. When every node is full the targets are the caps (the rest waits)."""
    if not caps:
        return {}
    w = weights(caps)
    low = {name: float(pinned.get(name, 0)) for name in caps}
    high = {name: float(cap) if cap > 0 else math.inf for name, cap in caps.items()}
    high = {name: max(high[name], low[name]) for name in caps}  # more pinned than its cap: they stay

    def filled(x: float) -> dict[str, float]:
        return {name: min(max(x * w[name], low[name]), high[name]) for name in caps}

    room = sum(high.values())
    goal = min(float(total), room)
    lo, hi = 0.0, goal / min(w.values()) + 1.0
    for _ in range(BISECTIONS):
        mid = (lo + hi) / 2
        if sum(filled(mid).values()) < goal:
            lo = mid
        else:
            hi = mid
    share = filled(hi)
    whole = {name: int(math.floor(share[name] + 1e-9)) for name in caps}
    left = int(goal) - sum(whole.values())
    order = sorted(caps, key=lambda name: (-(share[name] - whole[name]), name))
    for name in order:
        if left <= 0:
            break
        if whole[name] < high[name]:
            whole[name] += 1
            left -= 1
    return whole


def plan(caps: Mapping[str, int], a: Assignment, max_moves: int) -> list[Move]:
    """The moves of one heartbeat: every orphan at once, then at most ``max_moves`` between live nodes."""
    load = {name: a.assigned.get(name, 0) for name in caps}
    pinned = {name: a.pinned.get(name, 0) for name in caps}
    goal = targets(caps, pinned, sum(load.values()) + a.orphans)
    moves: list[Move] = []
    orphans = a.orphans
    for name in sorted(caps, key=lambda n: (load[n] - goal[n], n)):  # furthest below first
        n = min(orphans, goal[name] - load[name])
        if n > 0:
            moves.append(Move(None, name, n))
            load[name] += n
            orphans -= n
    budget = max_moves
    while budget > 0:
        src = max(caps, key=lambda n: (min(load[n] - goal[n], load[n] - pinned[n]), n))
        dst = min(caps, key=lambda n: (load[n] - goal[n], n))
        n = min(budget, load[src] - goal[src], load[src] - pinned[src], goal[dst] - load[dst])
        if n <= 0 or src == dst:
            break
        moves.append(Move(src, dst, n))
        load[src] -= n
        load[dst] += n
        budget -= n
    return moves
