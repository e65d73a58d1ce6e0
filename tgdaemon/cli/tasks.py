"""``tasks list``, ``tasks show KIND:ID`` and ``tasks retry``: setup and pulled tasks, their attempts, and the
operator's retry (issue 15), over the control API's ``/tasks`` routes."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from rich.text import Text

from tgdaemon.cli import output
from tgdaemon.cli.parser import group_help, positive_int, socket_path
from tgdaemon.control.client import ControlClient
from tgdaemon.display import TASK_STATUS_STYLE, ago, duration
from tgdaemon.errors import UsageError
from tgdaemon.wire import ANY_TASK_STATUSES, TaskDetail, TaskList, TasksRetried

KINDS = ("setup", "pulled")


def task_key(text: str) -> str:
    """KIND:ID, checked here so that a typo is exit 2 before the daemon is asked."""
    kind, sep, number = text.partition(":")
    if not sep or kind not in KINDS or not number.isdigit() or int(number) < 1:
        raise argparse.ArgumentTypeError(f"not a task: {text!r} (expected KIND:ID, e.g. setup:12 or pulled:7)")
    return f"{kind}:{int(number)}"


def add_filters(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--kind", choices=KINDS, help=f"{what} of this kind only")
    parser.add_argument("--status", choices=ANY_TASK_STATUSES, help=f"{what} with this status only")
    parser.add_argument("--queue", metavar="QUEUE", help=f"{what} of this queue only: fast, media or pulled:EXECUTOR")
    parser.add_argument("--type", metavar="TYPE",
                        help=f"{what} of this setup task type (update_name, story_video, ...) or pulled action only")
    parser.add_argument("--account", type=positive_int, metavar="ID", help=f"{what} of this account only")


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    tasks = sub.add_parser("tasks", parents=[common], help="setup and pulled tasks: list, show, retry")
    tasks_sub = tasks.add_subparsers(metavar="ACTION")
    ls = tasks_sub.add_parser("list", parents=[common], help="setup and pulled tasks, with why each waits")
    add_filters(ls, "tasks")
    ls.add_argument("--limit", type=positive_int, default=1000, metavar="N",
                    help="at most N tasks of each kind (default 1000)")
    ls.set_defaults(func=cmd_list)
    show = tasks_sub.add_parser("show", parents=[common], help="one task and its attempt history")
    show.add_argument("task", type=task_key, metavar="KIND:ID", help="the task, e.g. setup:12 or pulled:7")
    show.set_defaults(func=cmd_show)
    retry = tasks_sub.add_parser(
        "retry", parents=[common],
        help="make tasks due again: the given ones, or every one matching the filter (never all without one)")
    retry.add_argument("tasks", nargs="*", type=task_key, metavar="KIND:ID", help="the tasks, e.g. setup:12")
    add_filters(retry, "retry tasks")
    retry.add_argument("--dry-run", action="store_true", help="say how many would be retried, change nothing")
    retry.set_defaults(func=cmd_retry)
    tasks.set_defaults(func=group_help(tasks))


def filters(args: argparse.Namespace) -> dict[str, Any]:
    given = {"kind": args.kind, "status": args.status, "queue": args.queue, "type": args.type,
             "account_id": args.account}
    return {k: v for k, v in given.items() if v is not None}


def since(iso_time: str | None) -> str:
    if not iso_time:
        return ""
    then = datetime.fromisoformat(iso_time.replace("Z", "+00:00"))
    return ago((datetime.now(UTC) - then).total_seconds())


def status_text(status: str) -> Text:
    return Text(status, style=TASK_STATUS_STYLE.get(status, ""))


async def cmd_list(args: argparse.Namespace) -> int:
    async with ControlClient(socket_path(args)) as client:
        data = await client.call("GET", "/tasks", TaskList, params={**filters(args), "limit": args.limit})
    if args.json:
        output.print_json(data.tasks)
        return 0
    table = output.table("TASK", "ACCOUNT", "TYPE", "QUEUE", "STATUS", "ATTEMPTS", "LAST ERROR", "BLOCKED BY",
                         "UPDATED")
    for t in data.tasks:
        table.add_row(t.key, f"{t.account_id} {t.label}", t.task_type, t.queue or "?", status_text(t.status),
                      str(t.attempts), t.last_error_code or "", output.times_in(t.blocked_by), since(t.updated_at))
    out = output.console()
    out.print(table)
    out.print("  ".join(f"{queue}: " + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none")
                        for queue, counts in data.counts.items()))
    return 0


async def cmd_show(args: argparse.Namespace) -> int:
    kind, _, number = args.task.partition(":")
    async with ControlClient(socket_path(args)) as client:
        data = await client.call("GET", f"/tasks/{kind}/{number}", TaskDetail)
    if args.json:
        output.print_json(data)
        return 0
    t = data.task
    out = output.console()
    out.print(Text.assemble((t.key, "bold"), f"  {t.task_type}  queue {t.queue or '?'}  account {t.account_id}"
                            f" {t.label}  ", status_text(t.status), f"  attempts {t.attempts}"))
    for label, value in (("created", t.created_at), ("updated", t.updated_at), ("retry at", t.retry_at),
                         ("blocked by", t.blocked_by), ("last error", " ".join(
                             x for x in (t.last_error_code, t.last_error) if x) or None)):
        if value:
            out.print(f"  {label}: {value}" + (f" ({since(value)})" if label in ("created", "updated") else ""))
    if not data.attempts:
        out.print("no finished attempt yet")
        return 0
    table = output.table("#", "STARTED", "ENDED", "TOOK", "NODE", "OUTCOME", "ERROR")
    for a in data.attempts:
        took = "" if a.seconds is None else (f"{a.seconds:.1f}s" if a.seconds < 60 else duration(a.seconds))
        table.add_row(str(a.attempt), a.started_at or "", a.ended_at, took, a.node or a.executor or "",
                      Text(a.outcome, style=TASK_STATUS_STYLE["done" if a.outcome == "done" else "failed"]),
                      " ".join(x for x in (a.error_code, a.error) if x))
    out.print(table)
    if data.attempts_kept is not None:
        out.print(f"(a setup task keeps its last {data.attempts_kept} attempts)")
    return 0


async def cmd_retry(args: argparse.Namespace) -> int:
    narrowed = filters(args)
    if args.tasks and narrowed:
        raise UsageError("tasks retry: give task ids or a filter, not both")
    if not args.tasks and not {k: v for k, v in narrowed.items() if k != "kind"}:
        raise UsageError("tasks retry: give task ids, or a filter (--status, --queue, --type, --account):"
                         " it never retries every task")
    body: dict[str, Any] = {"ids": args.tasks} if args.tasks else dict(narrowed)
    body["dry_run"] = args.dry_run
    async with ControlClient(socket_path(args), timeout=120) as client:
        data = await client.call("POST", "/tasks/retry", TasksRetried, body=body)
    if args.json:
        output.print_json(data)
        return 0
    verb = "would retry" if data.dry_run else "retried"
    lines = [f"{verb} {data.retried} of {data.matched} matching tasks"
             + (f"; {data.refused_count} not:" if data.refused_count else "")]
    lines += [f"  {r.task}: {r.reason}" for r in data.refused]
    if data.refused_count > len(data.refused):
        lines.append(f"  ... and {data.refused_count - len(data.refused)} more")
    print("\n".join(lines))
    return 0
