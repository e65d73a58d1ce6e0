"""File descriptors: the soft limit raised, the provider port's share of them, and one line saying so.

systemd gives a service 1,024 descriptors unless the unit says otherwise.
When the provider port uses them all, accept() fails on every socket of the
process, the control socket included, and asyncio logs a traceback for each
failed attempt (many per millisecond). So the daemon raises its soft limit
to the hard one, gives the provider port only what is left after a reserve
for everything else, and logs accept failures as a count now and then.
The Telegram clients come out of the reserve (one TCP socket each); a
``telegram.max_connected`` that the limit cannot hold is said in one warning
at start, because past that point every connect fails for want of a descriptor.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tgdaemon.config import Config

log = logging.getLogger(__name__)

# The provider port's listen backlog; asyncio accepts up to this many sockets in one go
# before any of them reaches the connection cap, so the reserve must cover a burst of it.
ACCEPT_BACKLOG = 128
# Listening sockets, control-socket clients, the database (two connections, each with
# its -wal and -shm), stdio, the event loop's own descriptors, media files, ffmpeg pipes.
OTHER_DESCRIPTORS = 64
# The provider port gets at least this many, even when the limit leaves less after the
# reserve (the reserve then shrinks, and the start line says to raise the limit).
MIN_CONNECTIONS = 16
THROTTLE_SECONDS = 5.0
ACCEPT_FAILURE = "socket.accept() out of system resource"


@dataclass(frozen=True)
class Limits:
    soft: int
    hard: int
    raised_from: int | None
    connection_cap: int


def raise_nofile() -> tuple[int, int, int | None]:
    """Soft limit to the hard one; returns (soft, hard, the soft limit before if it changed).

    Only a soft limit below the hard one is touched: under the shipped unit
    (LimitNOFILE sets both) nothing is called. Should it be, glibc raises it
    with prlimit64, which the unit's seccomp filter allows (@default); the
    older setrlimit system call is in the @resources it denies.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft >= hard:
        return soft, hard, None
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        log.warning("cannot raise the file-descriptor limit from %d to %d: %s", soft, hard, exc)
        return soft, hard, None
    return hard, hard, soft


def telegram_descriptors(cfg: Config) -> int:
    """One TCP socket per connected client, on a real fleet only: the simulator's clients open none."""
    return cfg.telegram.max_connected if cfg.telegram.configured else 0


def reserve(cfg: Config) -> int:
    """Descriptors kept from the provider port: an accept burst, the Telegram clients, everything else."""
    return ACCEPT_BACKLOG + telegram_descriptors(cfg) + OTHER_DESCRIPTORS


def clients_warning(cfg: Config, soft: int) -> str | None:
    """One line when ``telegram.max_connected`` clients do not fit in ``soft`` descriptors beside the reserve and
    the provider port's least; None when they do, or when there are no Telegram clients (the simulator)."""
    needed = reserve(cfg) + MIN_CONNECTIONS
    if not telegram_descriptors(cfg) or soft >= needed:
        return None
    fits = max(0, soft - (needed - cfg.telegram.max_connected))
    return (f"telegram.max_connected {cfg.telegram.max_connected} does not fit the file-descriptor limit {soft}"
            f" (each connected client holds one; with the daemon's own it needs {needed}): past about {fits}"
            f" connected clients, connects fail with 'Too many open files'; raise LimitNOFILE to at least {needed}"
            f" or set telegram.max_connected to at most {fits}")


def connection_cap(cfg: Config, soft: int) -> int:
    """``daemon.max_http_connections``, lowered to what the descriptor limit leaves after the reserve."""
    return min(cfg.daemon.max_http_connections, max(MIN_CONNECTIONS, soft - reserve(cfg)))


def prepare(cfg: Config) -> Limits:
    soft, hard, before = raise_nofile()
    if (warning := clients_warning(cfg, soft)) is not None:
        log.warning("%s", warning)
    return Limits(soft, hard, before, connection_cap(cfg, soft))


def _days(value: float) -> str:
    return "kept" if value == 0 else f"{value:g} d"


def startup_line(cfg: Config, limits: Limits) -> str:
    """What the daemon runs with, in one line, so an operator sees it in the journal at every start."""
    d, r = cfg.daemon, cfg.retention
    raised = f", raised from {limits.raised_from}" if limits.raised_from is not None else ""
    cap = f"at most {limits.connection_cap} connections"
    if limits.connection_cap < d.max_http_connections:
        cap += f" (max_http_connections {d.max_http_connections}, lowered to fit the fd limit)"
    parts = [f"limits: fds {limits.soft} (hard {limits.hard}{raised})",
             f"provider port: {cap}, request within {d.http_header_timeout_seconds:g} s,"
             f" idle {d.http_idle_timeout_seconds:g} s",
             f"store synchronous={cfg.store.synchronous}",
             f"retention: events {_days(r.events_days)}, finished tasks {_days(r.finished_tasks_days)}"]
    if limits.soft - reserve(cfg) < MIN_CONNECTIONS:
        parts.append("too few fds to keep a reserve for the control socket: raise LimitNOFILE to at least"
                     f" {reserve(cfg) + MIN_CONNECTIONS}")
    return "; ".join(parts)


class Tally:
    """Counts something that can happen thousands of times a second, and reports at most once per interval.

    The first occurrence is reported at once; later ones are summed and
    reported when the interval is up, until an interval passes with none.
    """

    def __init__(self, report: Callable[[Counter[str]], None], interval: float = THROTTLE_SECONDS) -> None:
        self._report = report
        self.interval = interval
        self._counts: Counter[str] = Counter()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, what: str) -> None:
        self._counts[what] += 1
        if self._timer is None:
            self._flush()

    def _flush(self) -> None:
        if not self._counts:
            self._timer = None
            return
        counts, self._counts = self._counts, Counter()
        self._report(counts)
        self._timer = asyncio.get_running_loop().call_later(self.interval, self._flush)

    def close(self) -> None:
        """Report what is still counted, and stop the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._counts:
            counts, self._counts = self._counts, Counter()
            self._report(counts)


ExceptionHandler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]


class AcceptFailures:
    """The loop's exception handler: accept failures become one line per interval, with a count.

    asyncio reports each failed accept() through the loop's exception handler,
    whose default logs a traceback; everything else still goes to the default.
    """

    def __init__(self, interval: float = THROTTLE_SECONDS, fallback: ExceptionHandler | None = None) -> None:
        self.tally = Tally(self._report, interval)
        self._error: object = None
        self._fallback = fallback

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != ACCEPT_FAILURE:
            if self._fallback is not None:
                self._fallback(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        self._error = context.get("exception")
        self.tally.add("accept")

    def _report(self, counts: Counter[str]) -> None:
        log.error("accept() failed %d time(s) (%s); raise LimitNOFILE or lower daemon.max_http_connections",
                  counts["accept"], self._error)
