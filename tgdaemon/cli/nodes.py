"""``nodes list``, ``accounts pin`` and ``accounts unpin``: the daemons of one fleet, and where accounts stay."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from tgdaemon.cli import output
from tgdaemon.cli.parser import group_help, positive_int, socket_path
from tgdaemon.control.client import ControlClient
from tgdaemon.display import NODE_STYLE, node_condition, relative
from tgdaemon.wire import NodeList, Pinned


def register(sub: argparse._SubParsersAction, acc: argparse._SubParsersAction,
             common: argparse.ArgumentParser) -> None:
    pin = acc.add_parser("pin", parents=[common], help="keep accounts on one node (they wait for it while it is down)")
    pin.add_argument("ids", type=positive_int, nargs="+", metavar="ID", help="the accounts' ids")
    pin.add_argument("--node", required=True, metavar="NAME", help="the node's name, as `tgdaemon nodes list` shows it")
    pin.set_defaults(func=cmd_pin)
    unpin = acc.add_parser("unpin", parents=[common], help="let the fleet place accounts again")
    unpin.add_argument("ids", type=positive_int, nargs="+", metavar="ID", help="the accounts' ids")
    unpin.set_defaults(func=cmd_unpin)

    nodes = sub.add_parser("nodes", parents=[common], help="the daemons of the fleet (several on one PostgreSQL)")
    nodes_sub = nodes.add_subparsers(metavar="ACTION")
    ls = nodes_sub.add_parser("list", parents=[common], help="every node: alive or not, leader, accounts owned")
    ls.set_defaults(func=cmd_list)
    nodes.set_defaults(func=group_help(nodes))


def _seconds_between(earlier: str, later: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


async def cmd_list(args: argparse.Namespace) -> int:
    async with ControlClient(socket_path(args)) as client:
        data = await client.call("GET", "/nodes", NodeList)
    if args.json:
        output.print_json(data.nodes)
        return 0
    table = output.table("NAME", "HOST", "PID", "STATE", "LEADER", "ACCOUNTS", "HEARTBEAT", "VERSION", "HTTP")
    for n in data.nodes:
        state = node_condition(n.alive, n.stopped_at)
        age = max(0.0, _seconds_between(n.heartbeat_at, data.at))  # both the database's clock
        table.add_row(n.name + (" *" if n.name == data.node else ""), n.host, str(n.pid),
                      f"[{NODE_STYLE[state]}]{state}[/]", "leader" if n.leader else "", str(n.accounts),
                      relative(-age, 0.0), n.version, n.http or "")
    con = output.console()
    con.print(table)
    con.print(f"* {data.node}: the node that answered" if any(n.name == data.node for n in data.nodes)
              else f"answered by {data.node}, which has no row yet", markup=False)
    return 0


async def cmd_pin(args: argparse.Namespace) -> int:
    async with ControlClient(socket_path(args)) as client:
        data = await client.call("POST", "/accounts/pin", Pinned, body={"ids": args.ids, "node": args.node})
    output.answer(args, data, f"{data.changed} of {len(set(args.ids))} account(s) newly pinned to {data.node}")
    if data.note:
        print(f"tgdaemon: note: {data.note}", file=sys.stderr)
    return 0


async def cmd_unpin(args: argparse.Namespace) -> int:
    async with ControlClient(socket_path(args)) as client:
        data = await client.call("POST", "/accounts/unpin", Pinned, body={"ids": args.ids})
    output.answer(args, data, f"{data.changed} of {len(set(args.ids))} account(s) unpinned; the fleet places them"
                              " again")
    return 0
