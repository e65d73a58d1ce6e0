"""``quotas add/list/pause/resume/export``."""

from __future__ import annotations

import argparse
import sys

from tgdaemon.cli import bulk, output
from tgdaemon.cli.parser import (
    duration,
    group_help,
    nonblank,
    positive_int,
    socket_path,
)
from tgdaemon.control.client import ControlClient
from tgdaemon.display import QUOTA_STATE_STYLE
from tgdaemon.errors import UsageError
from tgdaemon.wire import ACTIONS, Quota, QuotaChange, QuotaList


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    quotas = sub.add_parser("quotas", parents=[common], help="monitoring quotas on public channels")
    q = quotas.add_subparsers(metavar="ACTION")
    add = q.add_parser("add", parents=[common], help="add a quota; prints its id")
    add.add_argument("--name", required=True, type=nonblank,
                     help="what to call it (a name already in use is warned about on stderr, and taken)")
    add.add_argument("--target", required=True, metavar="LINK", help="@username, t.me link or invite link")
    add.add_argument("--action", required=True, choices=ACTIONS,
                     help="what to observe (tgfleet only observes: post_stats or channel_stats)")
    add.add_argument("--last-n", type=positive_int, metavar="N",
                     help="post_stats only: the newest N posts (default 10)")
    amount = add.add_mutually_exclusive_group(required=True)
    amount.add_argument("--quantity", type=positive_int, metavar="Q", help="observations in all")
    amount.add_argument("--orders", type=positive_int, metavar="O", help="runs in all")
    add.add_argument("--interval", type=duration, default=3600.0, metavar="DURATION",
                     help="between runs, with a unit: 90s, 15m, 1h30m (default 1h)")
    add.add_argument("--expires-in", type=duration, required=True, metavar="DURATION",
                     help="from now, with a unit: 12h, 7d, 2d12h")
    add.set_defaults(func=cmd_add)
    ls = q.add_parser("list", parents=[common], help="list quotas")
    ls.set_defaults(func=cmd_list)
    for name, paused in (("pause", True), ("resume", False)):
        p = q.add_parser(name, parents=[common], help=f"{name} quotas: by ids, or every one a filter matches"
                         " (an expired one is refused)")
        bulk.add_targets(p, "quota")
        p.set_defaults(func=cmd_pause, paused=paused)
    exp = q.add_parser("export", parents=[common], help="the quota's measurements, to standard output")
    exp.add_argument("id", type=positive_int, help="the quota's id")
    exp.add_argument("--format", choices=("csv", "json"),
                     help="csv (the default) or json (the default under --json)")
    exp.set_defaults(func=cmd_export)
    quotas.set_defaults(func=group_help(quotas))


async def cmd_add(args: argparse.Namespace) -> int:
    if args.last_n is not None and args.action != "post_stats":
        raise UsageError(f"quotas add: --last-n applies to post_stats only, not {args.action}")
    body = {"name": args.name, "target": args.target, "action": args.action, "last_n_posts": args.last_n,
            "quantity": args.quantity, "orders": args.orders, "interval_seconds": args.interval,
            "expires_in_seconds": args.expires_in}
    async with ControlClient(socket_path(args)) as client:
        same = [q.id for q in (await client.call("GET", "/quotas", QuotaList)).quotas if q.name == args.name]
        quota = await client.call("POST", "/quotas", Quota, body={k: v for k, v in body.items() if v is not None})
    if same:  # names are for people, ids for the daemon: a second one is allowed, and said
        print(f"tgdaemon: note: quota {quota.id} is named {args.name!r}, as quota"
              f" {', '.join(map(str, same))} already is", file=sys.stderr)
    output.answer(args, quota, str(quota.id))
    return 0


async def cmd_list(args: argparse.Namespace) -> int:
    async with ControlClient(socket_path(args)) as client:
        quotas = (await client.call("GET", "/quotas", QuotaList)).quotas
    if args.json:
        output.print_json(quotas)
        return 0
    table = output.table("ID", "NAME", "STATE", "ACTION", "TARGET", "LEFT", "NEXT RUN", "EXPIRES", "INSPECTION",
                         "LAST ERROR")
    for q in quotas:
        left = q.quantity_left if q.quantity_left is not None else q.orders_left
        inspection = {None: "pending", True: "ok", False: "failed"}[q.inspection_ok]
        table.add_row(str(q.id), q.name, f"[{QUOTA_STATE_STYLE[q.state]}]{q.state}[/]", q.action, q.target,
                      f"{left}/{q.quantity_total}", output.ago(q.next_run_at, "due") if q.state == "active" else "",
                      output.ago(q.expires_at, "expired", "never"), inspection, q.last_error or "")
    output.console().print(table)
    return 0


async def cmd_pause(args: argparse.Namespace) -> int:
    action = "pause" if args.paused else "resume"
    if not bulk.single(args):
        return await bulk.run(args, "quota", action)
    quota_id = args.ids[0]
    async with ControlClient(socket_path(args)) as client:
        data = await client.call("POST", f"/quotas/{quota_id}/{action}", QuotaChange)
    verb = "paused" if args.paused else "resumed"
    output.answer(args, data, f"quota {quota_id} {verb}" if data.changed else f"quota {quota_id} was already {verb}")
    return 0


async def cmd_export(args: argparse.Namespace) -> int:
    """Written to standard output as the daemon sends it: flat memory however long the quota has run. JSON
    gets the newline a text file ends with (CSV's last row has its own)."""
    if args.json and args.format == "csv":
        raise UsageError("quotas export: --json writes JSON; leave out --format csv")
    fmt = args.format or ("json" if args.json else "csv")
    sys.stdout.flush()
    async with ControlClient(socket_path(args)) as client:
        await client.export_measurements_to(args.id, fmt, sys.stdout.buffer)
    if fmt == "json":
        sys.stdout.buffer.write(b"\n")
    sys.stdout.buffer.flush()
    return 0
