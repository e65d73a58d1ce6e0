"""Several ids or a filter for a command that acts on accounts or quotas: ``accounts disable 3 4 5``,
``accounts disable --state cooldown --search sim-00``, ``quotas pause --state active``, with ``--dry-run``.

One id and nothing else keeps the single-row route and its answer (so a script's ``accounts disable 7 --json``
reads as it always did); several ids, a filter or ``--all`` go to the batch route in one request and answer
with ``wire.BulkResult``. Every account (or quota) is never acted on by leaving the filter out: it takes
``--all``.
"""

from __future__ import annotations

import argparse
from typing import Any, Literal

from tgdaemon.cli import output
from tgdaemon.cli.parser import positive_int, socket_path
from tgdaemon.control.client import ControlClient
from tgdaemon.display import bulk_summary, plural
from tgdaemon.errors import TgfleetError, UsageError
from tgdaemon.wire import HEALTHS, QUOTA_STATES, STATES, BulkResult

Kind = Literal["account", "quota"]


def add_targets(parser: argparse.ArgumentParser, kind: Kind) -> None:
    """The ids (any number), the filter options, --all and --dry-run."""
    plural_ = f"{kind}s"
    parser.add_argument("ids", type=positive_int, nargs="*", metavar="ID",
                        help=f"the {plural_}' ids (or none, with a filter or --all)")
    parser.add_argument("--state", choices=STATES if kind == "account" else QUOTA_STATES,
                        help=f"every {kind} in this state (as `{plural_} list --state` shows it)")
    parser.add_argument("--search", metavar="TEXT",
                        help="every account whose label or phone holds TEXT, or whose id it is" if kind == "account"
                        else "every quota whose name or target holds TEXT, or whose id it is")
    if kind == "account":
        parser.add_argument("--health", choices=[*HEALTHS, "unchecked"],
                            help="every account whose last health check found this")
    parser.add_argument("--all", action="store_true", help=f"every {kind}: required when no id and no filter is given")
    parser.add_argument("--dry-run", action="store_true", help="print what would change, and change nothing")


def single(args: argparse.Namespace) -> bool:
    """One id and nothing else: the single-row route, whose answer scripts already read."""
    return len(args.ids) == 1 and not (args.all or args.dry_run or _filter(args))


def _filter(args: argparse.Namespace) -> dict[str, str]:
    given = {"state": args.state, "q": args.search, "health": getattr(args, "health", None)}
    return {k: v for k, v in given.items() if v is not None}


def targets(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """The body's ``ids`` or ``filter``; a mix, or nothing at all without --all, is a bad argument (exit 2)."""
    where = _filter(args)
    if args.ids and (where or args.all):
        raise UsageError(f"{command}: give ids or a filter{' or --all' if not where else ''}, not both")
    if args.all and where:
        raise UsageError(f"{command}: --all is every one; leave it out to act on those the filter matches")
    if args.ids:
        return {"ids": args.ids}
    if not where and not args.all:
        options = "--state, --search" + (", --health" if hasattr(args, "health") else "")
        raise UsageError(f"{command}: give ids, a filter ({options}), or --all to act on every one")
    return {"filter": where}


async def run(args: argparse.Namespace, kind: Kind, action: str, **extra: Any) -> int:
    """One batch request; the answer as a line (or, under --dry-run, a table of what would change). Refusals
    (an expired quota) print after the answer and end with exit 1."""
    body = {"action": action, **targets(args, f"{kind}s {action}"), **extra, "dry_run": args.dry_run}
    async with ControlClient(socket_path(args), timeout=600) as client:  # 50,000 rows take a while
        data = await client.call("POST", f"/{kind}s/batch", BulkResult, body=body)
    if args.json:
        output.print_json(data)
    else:
        if args.dry_run and data.would_change:
            table = output.table("ID", "LABEL" if kind == "account" else "NAME")
            for item in data.would_change:
                table.add_row(str(item.id), item.label)
            output.console().print(table)
            if (more := data.changed - len(data.would_change)) > 0:
                print(f"… and {more:,} more")
        print(bulk_summary(data, kind) + ("" if data.matched else f" (no {kind} matched)"))
    if data.refused:
        shown = "; ".join(f"{r.reason}" for r in data.refusals[:3])
        raise TgfleetError(f"{plural(data.refused, kind)} refused: {shown}")
    return 0
