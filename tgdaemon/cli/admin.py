"""Admin commands: thin clients of the control socket. They never open the database."""

from __future__ import annotations

import argparse

import msgspec
from rich.text import Text

from tgdaemon.cli import (
    backup,
    devices,
    export,
    health,
    nodes,
    onboard,
    output,
    providers,
    proxies,
    quotas,
    setup,
    tasks,
)
from tgdaemon.cli.parser import group_help, nonblank, positive_int, socket_path
from tgdaemon.cli.table import ListingTable
from tgdaemon.control.client import ControlClient
from tgdaemon.display import NODE_STYLE, STATE_STYLE, duration, node_condition
from tgdaemon.wire import (
    HEALTHS,
    SORT_KEYS,
    STATES,
    Account,
    AccountChange,
    EventList,
    Status,
)

PAGE = 5000  # accounts per request: a 50,000-account fleet in ten


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    status = sub.add_parser("status", parents=[common], help="the daemon's status")
    status.set_defaults(func=cmd_status)

    accounts = sub.add_parser("accounts", parents=[common],
                              help="list, check, disable, enable, assign, pin and retry accounts")
    acc = accounts.add_subparsers(metavar="ACTION")
    ls = acc.add_parser("list", parents=[common], help="list accounts")
    ls.add_argument("--state", choices=STATES, help="only accounts in this state")
    ls.add_argument("--health", choices=[*HEALTHS, "unchecked"], help="what the last health check found")
    ls.add_argument("--search", metavar="TEXT", help="label, phone or id")
    ls.add_argument("--sort", choices=sorted(SORT_KEYS), default="id", help="the column to sort by (default id)")
    ls.add_argument("--desc", action="store_true", help="reverse the sort")
    ls.add_argument("--limit", type=positive_int, metavar="N", help="at most N accounts (default: all)")
    ls.set_defaults(func=cmd_accounts_list)
    dis = acc.add_parser("disable", parents=[common], help="disable an account (its work stops)")
    dis.add_argument("id", type=positive_int, help="the account's id")
    dis.add_argument("--reason", required=True, type=nonblank, help="why, for the audit trail (not blank)")
    dis.set_defaults(func=cmd_disable)
    en = acc.add_parser("enable", parents=[common], help="enable a disabled account")
    en.add_argument("id", type=positive_int, help="the account's id")
    en.set_defaults(func=cmd_enable)
    onboard.register(acc, common)
    devices.register(acc, common)
    export.register(acc, common)
    setup.register(sub, acc, common)
    tasks.register(sub, common)
    quotas.register(sub, common)
    providers.register(sub, acc, common)
    nodes.register(sub, acc, common)
    proxies.register(sub, acc, common)
    backup.register(sub, common)
    health.register(acc, common)
    accounts.set_defaults(func=group_help(accounts))

    events = sub.add_parser("events", parents=[common], help="the audit trail, newest first")
    events.add_argument("--account", type=positive_int, metavar="ID", help="only this account's events")
    events.add_argument("--limit", type=positive_int, default=50, metavar="N", help="at most N events (default 50)")
    events.set_defaults(func=cmd_events)


async def cmd_status(args: argparse.Namespace) -> int:
    async with ControlClient(socket_path(args)) as client:
        data = await client.call("GET", "/status", Status)
    if args.json:
        output.print_json(data)
        return 0
    con = output.console()
    con.print(f"tgdaemon {data.version}  node {data.node}  pid {data.pid}  up {duration(data.uptime_seconds)}"
              f"  gateway {data.gateway}", markup=False)
    con.print(f"socket {data.socket}  http {data.http}{' (TLS)' if data.tls else ''}  data {data.data_dir}",
              markup=False)
    con.print(f"store {data.store.kind} {data.store.url}  synchronous {data.synchronous}", markup=False)
    if data.store.down is not None:
        con.print(Text.assemble(("store DOWN", "bold red"), f" since {data.store.down_since}: {data.store.down}"
                                "; the daemon takes no work and retries; the counts below are from before"))
    con.print("accounts  " + "  ".join(f"[{STATE_STYLE[s]}]{s}[/] {n}" for s, n in data.accounts.items()))
    if data.cooldowns:
        con.print("cooldowns  " + "  ".join(f"{reason} {n}" for reason, n in data.cooldowns.items()), markup=False)
    if data.nodes:  # the one that answered is named on the first line
        con.print("nodes  " + ", ".join(
            f"{n.name} [{NODE_STYLE[c]}]{c}[/]{' leader' if n.leader else ''} {n.accounts} accounts"
            for n in data.nodes for c in [node_condition(n.alive, n.stopped_at)]))
    for kind, counts in data.tasks.items():
        con.print(f"{kind} tasks  " + ("  ".join(f"{s} {n}" for s, n in sorted(counts.items())) or "none"))
    if db := data.database:  # PostgreSQL's WAL is the server's, shared by its databases: not shown
        wal = f" + WAL {output.size(db['wal_bytes'])}" if db.get("path") else ""
        con.print(f"database {output.size(db['file_bytes'])}{wal}  "
                  + "  ".join(f"{table} {n:,}" for table, n in db["rows"].items()), markup=False)
    if ret := data.retention:
        keep = "  ".join(f"{what} {f'{days:g} d' if days else 'for ever'}" for what, days in
                         (("events", ret["events_days"]), ("finished tasks", ret["finished_tasks_days"])))
        last = ret["last_run"]
        done = (f"; last run {ret['last_run_at']}: {last['events']:,} events, {last['tasks']:,} tasks, "
                f"{last['usage']:,} usage rows pruned" if last else "; not run yet")
        con.print(f"retention  keeps {keep}{done}", markup=False)
    if (sim := data.simulator) is not msgspec.UNSET:
        con.print("simulated channels  " + "  ".join(f"@{c}" for c in sim.channels))
    return 0


async def cmd_accounts_list(args: argparse.Namespace) -> int:
    """Page by page, each page taken in (decoded, its cells made) while the daemon reads the next; printed
    once the last is in, so a listing cut short by an error prints nothing, as before."""
    params = {"state": args.state, "q": args.search, "sort": args.sort, "desc": args.desc, "health": args.health}
    con = output.console()
    table = ListingTable(con, output.ACCOUNT_COLUMNS)
    pages: list[list[Account]] = []
    async with ControlClient(socket_path(args)) as client:
        async for page in client.account_pages(page=PAGE, limit=args.limit, **params):
            if args.json:
                pages.append(page.accounts)
            else:
                table.add_columns(output.account_columns(page.accounts))
    if args.json:
        output.print_json([a for accounts in pages for a in accounts])
    else:
        table.print()
    return 0


async def cmd_disable(args: argparse.Namespace) -> int:
    async with ControlClient(socket_path(args)) as client:
        data = await client.call("POST", f"/accounts/{args.id}/disable", AccountChange, body={"reason": args.reason})
    acc = data.account
    done = "disabled" if data.changed else "was already disabled"
    output.answer(args, data, f"account {acc.id} ({acc.label}) {done}: {acc.disabled_reason}")
    return 0


async def cmd_enable(args: argparse.Namespace) -> int:
    async with ControlClient(socket_path(args)) as client:
        data = await client.call("POST", f"/accounts/{args.id}/enable", AccountChange, body={})
    acc = data.account
    output.answer(args, data, f"account {acc.id} ({acc.label}) {'enabled' if data.changed else 'was not disabled'};"
                              f" state {acc.state}")
    return 0


async def cmd_events(args: argparse.Namespace) -> int:
    async with ControlClient(socket_path(args)) as client:
        rows = (await client.call("GET", "/events", EventList,
                                  params={"account_id": args.account, "limit": args.limit})).events
        if args.account and not rows:
            await setup.known_account(client, args.account)
    if args.json:
        output.print_json(rows)
        return 0
    con = output.console()
    for e in rows:
        who = f"account {e.account_id}" if e.account_id else ""
        con.print(f"{e.at}  {e.kind:<20} {who:<14} {e.message}", markup=False)
    return 0
