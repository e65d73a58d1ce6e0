"""How the operator is shown a duration and an account's state: one way, in the admin commands and the dashboard.

Here rather than under ``tgdaemon.cli`` so that the dashboard (tgtui) can use
it without importing the command line, and the command line never imports the
dashboard.
"""

from __future__ import annotations

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


def ago(seconds: float) -> str:
    """How long ago, in the largest unit: ``3m ago``, ``2h ago``, ``just now`` (under 5 s)."""
    if seconds < 5:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


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
