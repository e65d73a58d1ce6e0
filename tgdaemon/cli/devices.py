"""``accounts set-device`` and ``accounts show``, and the device options ``accounts import`` shares."""

from __future__ import annotations

import argparse
import re
from typing import Any

from tgdaemon.cli import output
from tgdaemon.cli.parser import positive_int, socket_path
from tgdaemon.control.client import ControlClient
from tgdaemon.errors import UsageError
from tgdaemon.store import DEVICE_FIELDS
from tgdaemon.wire import Account, AccountDevice, DeviceFields, DeviceSet

SHOWN = ("api_id", "api_hash_masked", "device_model", "system_version", "app_version", "lang_code",
         "system_lang_code")


def api_hash(text: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{32}", text):
        raise argparse.ArgumentTypeError("not an api_hash (32 hexadecimal digits, from my.telegram.org)")
    return text


def device_text(text: str) -> str:
    text = text.strip()
    if not text or len(text) > 256 or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise argparse.ArgumentTypeError("1 to 256 characters, no control characters")
    return text


def add_device_options(parser: argparse.ArgumentParser, what: str) -> None:
    group = parser.add_argument_group("app and device", f"what {what} present to Telegram instead of [telegram]'s")
    group.add_argument("--api-id", type=positive_int, metavar="N", help="the app's api_id, from my.telegram.org")
    group.add_argument("--api-hash", type=api_hash, metavar="HASH", help="shown masked; visible in ps while it runs")
    group.add_argument("--device-model", type=device_text, metavar="TEXT", help="e.g. 'Pixel 7', 'Desktop'")
    group.add_argument("--system-version", type=device_text, metavar="TEXT", help="e.g. 'Android 14', 'Windows 10'")
    group.add_argument("--app-version", type=device_text, metavar="TEXT", help="e.g. '10.9.1'")
    group.add_argument("--lang-code", type=device_text, metavar="CODE", help="e.g. 'en'")
    group.add_argument("--system-lang-code", type=device_text, metavar="CODE", help="e.g. 'en-US'")


def device_options(args: argparse.Namespace) -> dict[str, Any]:
    """The device fields given on the command line."""
    return {name: getattr(args, name) for name in DEVICE_FIELDS if getattr(args, name, None) is not None}


def register(acc: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    sd = acc.add_parser("set-device", parents=[common],
                        help="set the app and device accounts present to Telegram (from their next connection)")
    sd.add_argument("ids", nargs="+", type=positive_int, metavar="ID", help="the accounts' ids")
    add_device_options(sd, "these accounts")
    sd.add_argument("--reset", action="store_true",
                    help="every field not given goes back to [telegram]'s (alone: all of them)")
    sd.set_defaults(func=cmd_set_device)
    show = acc.add_parser("show", parents=[common], help="one account: its state and the app and device it presents")
    show.add_argument("id", type=positive_int, metavar="ID", help="the account's id")
    show.set_defaults(func=cmd_show)


def _summary(fields: DeviceFields) -> str:
    return ", ".join(f"{name.removesuffix('_masked')} {getattr(fields, name)}" for name in SHOWN
                     if getattr(fields, name) is not None) or "none"


async def cmd_set_device(args: argparse.Namespace) -> int:
    given = device_options(args)
    if not given and not args.reset:
        raise UsageError("nothing to set: give --api-id, --device-model, ... or --reset")
    async with ControlClient(socket_path(args)) as client:
        data = await client.call("POST", "/accounts/device", DeviceSet,
                                 body={"ids": args.ids, "device": given, "reset": args.reset})
    lines = [f"account {shown.account_id}: own {_summary(shown.own)}" for shown in data.accounts]
    output.answer(args, data, "\n".join([*lines, f"device {'replaced' if args.reset else 'set'} on {data.changed}"
                                                   " account(s); each presents it from its next connection"]))
    return 0


async def cmd_show(args: argparse.Namespace) -> int:
    async with ControlClient(socket_path(args)) as client:
        account = await client.call("GET", f"/accounts/{args.id}", Account)
        device = await client.call("GET", f"/accounts/{args.id}/device", AccountDevice)
    if args.json:
        output.print_json({"account": account, "device": device})
        return 0
    con = output.console()
    con.print(f"account {account.id}  {account.label}  {account.phone_masked or '-'}  {account.state}"
              f"  {account.name}", markup=False)
    table = output.table("field", "own", "default", "presented")
    for name in SHOWN:
        own, default, effective = (getattr(f, name) for f in (device.own, device.default, device.effective))
        table.add_row(name.removesuffix("_masked"), "-" if own is None else str(own),
                      "-" if default is None else str(default), "-" if effective is None else str(effective))
    con.print(table)
    return 0
