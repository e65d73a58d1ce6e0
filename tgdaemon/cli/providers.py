"""``providers add|list|revoke``: the identities that may pull tasks over the provider API."""

from __future__ import annotations

import argparse
import sys

from tgdaemon.cli import bulk, output
from tgdaemon.cli.parser import group_help, socket_path
from tgdaemon.control.client import ControlClient
from tgdaemon.store.views import provider_name_problem
from tgdaemon.wire import Assigned, ProviderAdded, ProviderChange, ProviderList


def provider_name(text: str) -> str:
    if problem := provider_name_problem(text):
        raise argparse.ArgumentTypeError(problem)
    return text


def register(sub: argparse._SubParsersAction, acc: argparse._SubParsersAction,
             common: argparse.ArgumentParser) -> None:
    assign = acc.add_parser("assign", parents=[common],
                            help="give accounts to a provider, or to the daemon (local): by ids, or by a filter")
    bulk.add_targets(assign, "account")
    assign.add_argument("--executor", required=True, metavar="NAME|local",
                        help="a provider's name, or local for the daemon's own executor")
    assign.set_defaults(func=cmd_assign)
    providers = sub.add_parser("providers", parents=[common], help="workers that pull tasks over the provider API")
    prov = providers.add_subparsers(metavar="ACTION")
    add = prov.add_parser("add", parents=[common], help="add a provider and print its token (shown only once)")
    add.add_argument("name", type=provider_name, metavar="NAME", help="the new provider's name")
    add.set_defaults(func=cmd_add)
    ls = prov.add_parser("list", parents=[common], help="list providers")
    ls.set_defaults(func=cmd_list)
    rev = prov.add_parser("revoke", parents=[common], help="revoke a provider's token (it can no longer pull)")
    rev.add_argument("name", type=provider_name, metavar="NAME", help="the provider's name")
    rev.set_defaults(func=cmd_revoke)
    providers.set_defaults(func=group_help(providers))


async def cmd_add(args: argparse.Namespace) -> int:
    async with ControlClient(socket_path(args)) as client:
        data = await client.call("POST", "/providers", ProviderAdded, body={"name": args.name})
    # The token alone on stdout (so `TOKEN=$(tgdaemon providers add NAME)` works), the advice on stderr.
    print(f"provider {data.provider.name} added; its token follows. It is shown only this once"
          " (the daemon keeps only its hash): store it now.", file=sys.stderr)
    output.answer(args, data, data.token)
    return 0


async def cmd_list(args: argparse.Namespace) -> int:
    async with ControlClient(socket_path(args)) as client:
        rows = (await client.call("GET", "/providers", ProviderList)).providers
    if args.json:
        output.print_json(rows)
        return 0
    table = output.table("NAME", "CREATED", "LAST SEEN", "REVOKED")
    for p in rows:
        table.add_row(p.name, output.ago(p.created_at), output.ago(p.last_seen_at, empty="never"),
                      output.ago(p.revoked_at))
    output.console().print(table)
    return 0


async def cmd_revoke(args: argparse.Namespace) -> int:
    async with ControlClient(socket_path(args)) as client:
        data = await client.call("POST", f"/providers/{args.name}/revoke", ProviderChange, body={})
    p = data.provider
    output.answer(args, data, f"provider {p.name} revoked" if data.changed else
                  f"provider {p.name} was already revoked at {p.revoked_at}; nothing changed")
    return 0


async def cmd_assign(args: argparse.Namespace) -> int:
    """Ids alone keep POST /accounts/assign and its answer, as before; a filter, --all or --dry-run is a batch."""
    if not args.ids or args.all or args.dry_run or args.state or args.search or args.health:
        return await bulk.run(args, "account", "assign", executor=args.executor)
    async with ControlClient(socket_path(args)) as client:
        data = await client.call("POST", "/accounts/assign", Assigned,
                                 body={"ids": args.ids, "executor": args.executor})
    output.answer(args, data, f"{data.changed} of {len(set(args.ids))} account(s) now assigned to {data.executor}")
    return 0
