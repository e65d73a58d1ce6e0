"""``tgdaemon completion bash|zsh|fish``: the shell's completion script, made by shtab from the parser itself,
so it knows every command and option this tgdaemon has (install lines in the README)."""

from __future__ import annotations

import argparse

import shtab

from tgdaemon.cli import output

SHELLS = ("bash", "zsh", "fish")


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    cmd = sub.add_parser("completion", parents=[common], help="print the completion script for a shell")
    cmd.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash, zsh or fish")
    cmd.set_defaults(func=cmd_completion)


def cmd_completion(args: argparse.Namespace) -> int:
    from tgdaemon.cli import root_parser  # the parser this command is part of

    script = shtab.complete(root_parser(), shell=args.shell)
    if args.json:
        output.print_json({"shell": args.shell, "script": script})
    else:
        print(script)
    return 0
