"""How the operator is shown a duration and an account's state: one way, in the admin commands and the dashboard.

Here rather than under ``tgdaemon.cli`` so that the dashboard (tgtui) can use
it without importing the command line, and the command line never imports the
dashboard.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from tgdaemon.wire import HEALTHS, QUOTA_STATES, STATES, BulkResult

# A rich style per state, in the order of STATES (a state added there without a colour fails here, at import).
STATE_STYLE = dict(zip(STATES, ("green", "cyan", "yellow", "red", "dim"), strict=True))
# And per health (wire.HEALTHS), for the accounts tables' Health column.
HEALTH_STYLE = dict(zip(HEALTHS, ("green", "yellow", "magenta", "red"), strict=True))
# And per quota state (wire.QUOTA_STATES), for ``quotas list`` and the dashboard's quotas view.
QUOTA_STATE_STYLE = dict(zip(QUOTA_STATES, ("green", "yellow", "red", "dim"), strict=True))


def duration(seconds: float) -> str:
    """Two units at most, the larger first: ``6d 23h``, ``3m 5s``, ``42s``."""
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


JUST_NOW_SECONDS = 5.0  # a past this close reads "just now": the second it took is noise


def span(seconds: float) -> str:
    """A length of time as a person reads it at a glance: ``42s``, ``4m``, ``3h 5m``, ``30h``, ``6d 23h``, ``12d``.

    The second unit only while the first is a single digit, where it changes the picture (``1h 59m`` is not
    ``1h``); past that it is noise. Cut down, never rounded up: a countdown never says more than is left.
    """
    s = int(abs(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 36000:
        hours, minutes = divmod(s // 60, 60)
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if s < 172800:
        return f"{s // 3600}h"
    if s < 864000:
        days, hours = divmod(s // 3600, 24)
        return f"{days}d {hours}h" if hours else f"{days}d"
    return f"{s // 86400}d"


def relative(at: float, now: float) -> str:
    """An instant against now, the one way every view and table shows it: ``in 4m``, ``3h ago``, ``just now``."""
    delta = at - now
    if delta >= 1:
        return f"in {span(delta)}"
    if delta > -JUST_NOW_SECONDS:
        return "just now"
    return f"{span(delta)} ago"


def absolute(at: float) -> str:
    """An instant in full, UTC, to the second (``2026-01-15 11:57:03Z``): what a detail shows beside the
    relative time, and what an operator can grep the logs for."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def moment(at: float, now: float) -> str:
    """``2026-01-15 11:57:03Z (3m ago)``: a detail's time, exact and at a glance."""
    return f"{absolute(at)} ({relative(at, now)})"


def instant(value: str | None) -> float | None:
    """An API's ISO time (``...Z`` or with an offset) as a Unix time; None stays None."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def relative_iso(value: str | None, now: float, past: str | None = None, empty: str = "") -> str:
    """An API's ISO time against now (``in 4m``, ``3h ago``); ``past`` names a deadline that has come (``due``,
    ``expired``) in place of how long ago it was; ``empty`` stands for none."""
    at = instant(value)
    if at is None:
        return empty
    return past if past is not None and at <= now else relative(at, now)


ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)")
_UNTIL = re.compile(r"until (" + ISO_TIME.pattern + ")")


def times_in(text: str | None, now: float) -> str:
    """A daemon's sentence with the instants in it said against now: ``cooldown until 2026-01-15T12:04:00Z
    (FLOOD_WAIT)`` reads ``cooldown ends in 4m (FLOOD_WAIT)``, which a table's cell does not cut."""
    if not text:
        return ""
    text = _UNTIL.sub(lambda m: f"ends {relative_iso(m[1], now)}", text)
    return ISO_TIME.sub(lambda m: relative_iso(m[0], now), text)


def ago(seconds: float) -> str:
    """How long ago, ``seconds`` back: ``3m ago``, ``2h 5m ago``, ``just now`` (under 5 s); as ``relative`` says it."""
    return relative(-seconds, 0.0)


# A task's status (wire.ANY_TASK_STATUSES), in the CLI's tasks tables and the dashboard's tasks view.
TASK_STATUS_STYLE = {"pending": "cyan", "running": "bold blue", "leased": "bold blue", "done": "green",
                     "failed": "bold red", "retry": "yellow"}
NODE_STYLE = {"alive": "green", "dead": "bold red", "stopped": "dim"}
PROXY_STYLE = {"ok": "green", "slow": "yellow", "dead": "bold red", "unchecked": "dim"}


def node_condition(alive: bool, stopped_at: str | None) -> str:
    """A node is ``alive``, ``dead`` (no heartbeat within nodes.dead_after_seconds: killed, stalled, cut off) or
    ``stopped`` (a clean stop, which let its accounts go at once)."""
    if alive:
        return "alive"
    return "stopped" if stopped_at is not None else "dead"


PAST = {"disable": "disabled", "enable": "enabled", "retry": "retried", "assign": "assigned", "pause": "paused",
        "resume": "resumed"}


def plural(n: int, noun: str) -> str:
    """``1 account``, ``1,000 accounts``."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def bulk_summary(result: BulkResult, noun: str) -> str:
    """One line for a bulk action's answer (``wire.BulkResult``), the same in the admin commands and the
    dashboard: what changed (or would), what already was so, and the first refusal with why."""
    past = PAST.get(result.action, result.action)
    head = f"would {result.action}" if result.dry_run else past
    parts = [f"{head} {plural(result.changed, noun)}"]
    if result.action == "retry":
        parts[0] += f", {plural(result.tasks, 'task')} due now" if not result.dry_run else \
            f", {plural(result.tasks, 'task')} due"
    if result.unchanged:
        parts.append(f"{result.unchanged:,} had nothing to retry" if result.action == "retry"
                     else f"{result.unchanged:,} already {past}")
    if result.refused:
        first = result.refusals[0] if result.refusals else None
        parts.append(f"{result.refused:,} refused" + (f" ({first.reason})" if first else ""))
    return "; ".join(parts)
