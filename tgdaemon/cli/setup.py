"""``setup dispatch``, ``accounts retry`` and ``tasks list``."""

from __future__ import annotations

import argparse

from tgdaemon.cli import output
from tgdaemon.cli.parser import group_help, positive_int, socket_path
from tgdaemon.control.client import ControlClient
from tgdaemon.wire import TASK_STATUSES, Account, Dispatched, Retried, TaskList


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

    tasks = sub.add_parser("tasks", parents=[common], help="setup tasks")
    tasks_sub = tasks.add_subparsers(metavar="ACTION")
    ls = tasks_sub.add_parser("list", parents=[common], help="setup tasks, with why each waits")
    ls.add_argument("--account", type=positive_int, metavar="ID", help="only this account's tasks")
    ls.add_argument("--status", choices=TASK_STATUSES, help="only tasks with this status")
    ls.add_argument("--limit", type=positive_int, default=1000, metavar="N", help="at most N tasks (default 1000)")
    ls.set_defaults(func=cmd_tasks)
    tasks.set_defaults(func=group_help(tasks))


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


async def cmd_tasks(args: argparse.Namespace) -> int:
    async with ControlClient(socket_path(args)) as client:
        data = await client.call("GET", "/tasks", TaskList, params={"account_id": args.account, "status": args.status,
                                                                    "limit": args.limit})
        if args.account and not data.tasks:
            await known_account(client, args.account)
    if args.json:
        output.print_json(data.tasks)
        return 0
    table = output.table("ID", "ACCOUNT", "TASK", "STATUS", "ATTEMPTS", "LAST ERROR", "BLOCKED BY")
    for t in data.tasks:
        table.add_row(str(t.id), f"{t.account_id} {t.label}", t.task_type, t.status, str(t.attempts),
                      t.last_error_code or "", output.times_in(t.blocked_by))
    output.console().print(table)
    return 0
