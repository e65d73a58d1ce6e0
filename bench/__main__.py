"""``python -m bench [NAME…]``: run the benchmarks and rewrite their sections of docs/benchmarks.md.

A benchmark is any module ``bench/NAME.py`` (not starting with ``_``, not
``report``) that defines ``TITLE``, ``ABOUT`` and ``async def run() ->
list[Result]``, and optionally ``notes() -> list[str]`` for lines to print
under its table. New benchmarks are found without editing this file. NAME may
be a prefix (``python -m bench control`` runs ``control_list``).

Each benchmark's section is written as soon as it finishes. A benchmark that
fails leaves its previous section alone; the exit status is then 1. A miss
against a target is a result, not a failure: the exit status stays 0.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import pkgutil
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType

from bench.report import DOC, Section, machine, summary_line, write_section

NOT_BENCHMARKS = {"report"}


def available() -> list[str]:
    here = Path(__file__).resolve().parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)])
                  if not m.name.startswith("_") and m.name not in NOT_BENCHMARKS)


def select(names: list[str]) -> list[str]:
    every = available()
    if not names:
        return every
    chosen: list[str] = []
    for name in names:
        matches = [b for b in every if b == name] or [b for b in every if b.startswith(name)]
        if not matches:
            raise SystemExit(f"bench: no benchmark named {name!r}; available: {', '.join(every)}")
        chosen += [m for m in matches if m not in chosen]
    return chosen


async def run_one(module: ModuleType) -> Section:
    started = time.monotonic()
    results = await module.run()
    notes = module.notes() if hasattr(module, "notes") else []
    name = module.__name__.rsplit(".", 1)[-1]
    return Section(name, module.TITLE, module.ABOUT, results, notes, time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {', '.join(available())})")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--doc", type=Path, default=DOC, help=f"the document to rewrite (default {DOC})")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(available()))
        return 0
    chosen = select(args.names)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    mach = machine()
    print(f"bench: {mach['cpu']}, {mach['cores']}, {mach['ram']}; {mach['python']}, SQLite {mach['sqlite']}")
    status = 0
    total = time.monotonic()
    for name in chosen:
        module = importlib.import_module(f"bench.{name}")
        mach = machine()  # per benchmark: the load average is the one when this benchmark began
        print(f"bench: {name}: {module.TITLE} …", flush=True)
        try:
            section = asyncio.run(run_one(module))
        except KeyboardInterrupt:
            print(f"bench: {name}: interrupted; its section was left as it was", file=sys.stderr)
            return 130
        except Exception:
            traceback.print_exc()
            print(f"bench: {name}: failed; its section of {args.doc} was left as it was", file=sys.stderr)
            status = 1
            continue
        write_section(section, args.doc, mach)
        for result in section.results:
            print(f"  {result.name}: {result.shown_value()}  [{result.verdict().replace('**', '')}]")
        print(summary_line(section).replace("\n", "\n  ") + f" ({section.seconds:.0f} s)", flush=True)
    print(f"bench: wrote {args.doc} in {time.monotonic() - total:.0f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
