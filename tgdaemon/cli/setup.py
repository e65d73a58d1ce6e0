"""``setup dispatch`` and ``accounts retry`` (the ``tasks`` commands: cli/tasks.py)."""

from __future__ import annotations

import argparse

from tgdaemon.cli import output
from tgdaemon.cli.parser import group_help, positive_int, socket_path
from tgdaemon.control.client import ControlClient
from tgdaemon.wire import Account, Dispatched, Retried


def register(sub: argparse._SubParsersAction, acc: argparse._SubParsersAction,
             common: argparse.ArgumentParser) -> None:
    setup = sub.add_parser("setup", parents=[common], help="the account setup pipeline")
    setup_sub = setup.add_subparsers(metavar="ACTION")
    dispatch = setup_sub.add_parser("dispatch", parents=[common], help="create the required tasks now")
    dispatch.set_defaults(func=cmd_dispatch)
    setup.set_defaults(func=group_help(setup))

    retry = acc.add_parser("retry", parents=[common],
                           help="make an account's failed and waiting setup tasks due now (cooldowns stay)")
    retry.add_argument("id", type=positive_int, help="the account's id")
    retry.set_defaults(func=cmd_retry)


async def known_account(client: ControlClient, account_id: int) -> None:
    """An empty listing for an account that does not exist is a mistake to say (the daemon's 404), not an answer."""
    await client.call("GET", f"/accounts/{account_id}", Account)


async def cmd_dispatch(args: argparse.Namespace) -> int:
    async with ControlClient(socket_path(args), timeout=120) as client:
        data = await client.call("POST", "/setup/dispatch", Dispatched)
    off = "" if data.enabled else "\nsetup is off (setup.enabled = false): the tasks wait until it is turned on"
    output.answer(args, data, f"created {data.created} setup tasks; {data.due} due now{off}")
    return 0


async def cmd_retry(args: argparse.Namespace) -> int:
    async with ControlClient(socket_path(args)) as client:
        data = await client.call("POST", f"/accounts/{args.id}/retry", Retried)
    output.answer(args, data, f"account {args.id}: {data.tasks} setup tasks due now")
    return 0
