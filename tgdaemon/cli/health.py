"""``accounts check`` and ``accounts sessions``: account health and the account's other sessions."""

from __future__ import annotations

import argparse
from typing import Any

from tgdaemon.cli import output
from tgdaemon.cli.parser import positive_int, socket_path
from tgdaemon.control.client import ControlClient
from tgdaemon.errors import UsageError
from tgdaemon.wire import HealthCheck, HealthChecks, SessionList

BATCH = 50  # accounts per request: each request ends within minutes, and lines come as batches end
CHECK_TIMEOUT = 900.0  # one batch: a check is four calls and, with the SpamBot on, its wait


def register(acc: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    check = acc.add_parser("check", parents=[common],
                           help="check accounts' health now: alive, frozen, spam-limited, sessions")
    check.add_argument("ids", nargs="*", type=positive_int, metavar="ID", help="the accounts' ids (or --all)")
    check.add_argument("--all", action="store_true", help="every account that is not disabled")
    check.set_defaults(func=cmd_check)

    sessions = acc.add_parser("sessions", parents=[common], help="an account's active sessions (its own marked)")
    sessions.add_argument("id", type=positive_int, help="the account's id")
    sessions.set_defaults(func=cmd_sessions)


def describe(r: HealthCheck) -> str:
    """One line: the finding and what it rests on, or why there is none."""
    head = f"{r.account_id} {r.label}: "
    if r.outcome != "checked":
        return head + (r.message if r.outcome in ("busy", "skipped") else f"not checked: {r.message}")
    d: dict[str, Any] = r.detail
    parts = [f"{d['sessions']} session{'' if d['sessions'] == 1 else 's'}"] if "sessions" in d else []
    if d.get("frozen_since"):
        parts.append(f"frozen since {d['frozen_since']}" + (f" until {d['frozen_until']}" if d.get("frozen_until")
                                                             else ""))
    if "spambot" in d:
        until = f" until {d['limited_until']}" if d.get("limited_until") else ""
        parts.append(f"@SpamBot: {d['spambot']}{until}")
    if d.get("error"):
        parts.append(d["error"])
    return head + str(r.health) + (f" ({'; '.join(parts)})" if parts else "")


async def cmd_check(args: argparse.Namespace) -> int:
    if bool(args.ids) == args.all:
        raise UsageError("accounts check: give account IDs or --all, not both and not neither")
    results: list[HealthCheck] = []
    async with ControlClient(socket_path(args), timeout=CHECK_TIMEOUT) as client:
        if args.all:
            ids = [a.id async for page in client.account_pages(page=5000) for a in page.accounts
                   if a.state != "disabled"]
        else:
            ids = list(dict.fromkeys(args.ids))
        for start in range(0, len(ids), BATCH):
            batch = await client.call("POST", "/accounts/check", HealthChecks, body={"ids": ids[start:start + BATCH]})
            results += batch.results
            if not args.json:
                for r in batch.results:
                    print(describe(r), flush=True)
    if args.json:
        output.print_json(results)
    elif not ids:
        print("no accounts to check")
    return 0


async def cmd_sessions(args: argparse.Namespace) -> int:
    async with ControlClient(socket_path(args), timeout=120) as client:
        data = await client.call("GET", f"/accounts/{args.id}/sessions", SessionList)
    if args.json:
        output.print_json(data.sessions)
        return 0
    table = output.table("", "DEVICE", "APP", "PLATFORM", "COUNTRY", "CREATED", "LAST ACTIVE")
    for s in data.sessions:
        table.add_row("*" if s.current else "", s.device_model, f"{s.app_name} {s.app_version}".strip(),
                      f"{s.platform} {s.system_version}".strip(), s.country, s.created or "", s.active or "")
    con = output.console()
    con.print(table)
    others = sum(not s.current for s in data.sessions)
    con.print(f"* this daemon's own session; {others} other{'s' if others != 1 else ''}", markup=False)
    return 0
