"""The simulated Telegram server's rules for its connections, written once above the drivers.

A driver reads an account's open connections (locked, in the opening transaction) or the pinged ones,
asks these what the server makes of them, and writes that back in the same transaction. The server
closes a connection ``server_timeout`` after its last ping (as Telegram closes one that stops pinging),
and one whose process is gone (``kill -9`` included) when it next looks at it; only a live one refuses a
second connection of the account (``AUTH_KEY_DUPLICATED``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tgdaemon.store.api import SimConnection

# A closed connection's record is kept this long, then goes when its account next opens one.
KEEP_CLOSED_SECONDS = 86400.0
TIMEOUT = "timeout"
GONE = "gone"
DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class OpenVerdict:
    timed_out: list[int]  # close each at last_seen_at + server_timeout: when the server let it go
    gone: list[int]  # close each now: its process has exited
    live: SimConnection | None  # the open connection that refuses another one


def judge_open(open_now: Sequence[SimConnection], at: float, server_timeout: float,
               live_pids: Callable[[list[int]], set[int]]) -> OpenVerdict:
    """What the server makes of an account's open connections when another one asks to open."""
    timed_out = [c.id for c in open_now if c.last_seen_at + server_timeout <= at]
    rest = [c for c in open_now if c.last_seen_at + server_timeout > at]
    alive = live_pids(sorted({c.pid for c in rest})) if rest else set()
    gone = [c.id for c in rest if c.pid not in alive]
    live = next((c for c in rest if c.pid in alive), None)
    return OpenVerdict(timed_out, gone, live)


@dataclass(frozen=True, slots=True)
class PingVerdict:
    seen: list[int]  # still open: seen now
    timed_out: list[int]  # open until this ping came too late: closed at last_seen_at + server_timeout
    closed: list[int]  # every pinged id the server no longer has open (timed_out among them)


def judge_ping(asked: Sequence[int], found: Sequence[tuple[int, float, float | None]], at: float,
               server_timeout: float) -> PingVerdict:
    """Pings of ``asked``: ``found`` is (id, last_seen_at, closed_at) of those the record has. An id it
    no longer has was closed long ago."""
    rows = {i: (seen, closed) for i, seen, closed in found}
    seen, timed_out, closed = [], [], []
    for i in asked:
        if i not in rows or rows[i][1] is not None:
            closed.append(i)
        elif rows[i][0] + server_timeout <= at:
            timed_out.append(i)
            closed.append(i)
        else:
            seen.append(i)
    return PingVerdict(seen, timed_out, closed)
