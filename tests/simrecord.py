"""Reading the simulated Telegram's record of connections (``Store.sim_connections``): overlaps.

The simulator refuses a second live connection of an account (``AUTH_KEY_DUPLICATED``) and keeps the
refused attempt on its record, so any moment two processes acted as one account shows as an overlap here.
Tests of several daemons end with ``assert overlaps(await store.sim_connections()) == []``.
"""

from __future__ import annotations

import math
from collections import defaultdict

from tgdaemon.store.api import SimConnection


def overlaps(record: list[SimConnection]) -> list[tuple[SimConnection, SimConnection]]:
    """Pairs of one account's connections that were open at the same time: each spans [opened_at,
    closed_at] (still open: without end; a refused attempt: the instant it was tried). Ends that only
    touch (one closed as the next opened, as the server does when it lets a dead holder go) do not count."""
    by_account: dict[int, list[SimConnection]] = defaultdict(list)
    for c in record:
        by_account[c.tg_user_id].append(c)
    found = []
    for conns in by_account.values():
        conns.sort(key=lambda c: (c.opened_at, c.id))
        for i, a in enumerate(conns):
            end = math.inf if a.closed_at is None else a.closed_at
            found.extend((a, b) for b in conns[i + 1:] if b.opened_at < end)
    return found
