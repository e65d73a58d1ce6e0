"""Results, and the rewrite of ``docs/benchmarks.md`` one section at a time.

Each benchmark owns one section of the file, fenced by HTML comments
(``<!-- bench:NAME -->`` … ``<!-- /bench:NAME -->``). Running a benchmark
replaces its own section and leaves every other section as it was, so a later
issue adds its benchmark module and gets its own section without touching
anyone else's figures. Sections not yet in the file are appended in the order
the benchmarks ran.
"""

from __future__ import annotations

import math
import os
import platform
import re
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"

PREAMBLE = """# Benchmarks

Written by `make bench` (`.venv/bin/python -m bench`; `python -m bench NAME…` runs a subset).
Each section below belongs to one benchmark module under `bench/` and is rewritten only when
that benchmark runs, so the sections may come from different dates or machines: each one says
where and when it was measured. Benchmarks are measurements, not tests: nothing fails on a
miss, and no test asserts on timing. Every benchmark talks only to 127.0.0.1 and the daemon's
own Unix socket.
"""


@dataclass
class Result:
    """One measured figure, optionally judged against a target.

    ``lower_is_better`` decides the direction of the target. ``at_least`` marks a
    figure that is only a lower bound (an operation cut off by its time limit).
    A result with no target is informational.
    """

    name: str
    value: float | int | str
    unit: str = ""
    target: float | None = None
    lower_is_better: bool = True
    at_least: bool = False
    note: str = ""

    def verdict(self) -> str:
        if self.target is None or not isinstance(self.value, (int, float)):
            return "info"
        value, target = float(self.value), float(self.target)
        if self.lower_is_better:
            if value <= target and not self.at_least:
                return "**pass**"
            more = "more than " if self.at_least else ""
            return f"**miss** by {more}{_num(value - target)} {self.unit} ({more}{_pct(value, target)})" \
                .replace("  ", " ")
        if value >= target:
            return "**pass**"
        return f"**miss** by {_num(target - value)} {self.unit} ({_pct(value, target)})".replace("  ", " ")

    @property
    def passed(self) -> bool | None:
        v = self.verdict()
        return None if v == "info" else v == "**pass**"

    def shown_value(self) -> str:
        if isinstance(self.value, str):
            return self.value
        return f"{'> ' if self.at_least else ''}{_num(self.value)} {self.unit}".strip()

    def shown_target(self) -> str:
        if self.target is None:
            return ""
        return f"{'≤' if self.lower_is_better else '≥'} {_num(self.target)} {self.unit}".strip()


@dataclass
class Section:
    key: str
    title: str
    about: str
    results: list[Result] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _num(x: float | int) -> str:
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) >= 100):
        return f"{int(x):,}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _pct(value: float, target: float) -> str:
    if target == 0:
        return "target 0"
    ratio = value / target
    if ratio >= 2:
        return f"{ratio:,.1f}× the target"
    return f"{(ratio - 1) * 100:+.0f} %"


# ---- the machine --------------------------------------------------------------------------------

def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    versions = []
    for dist in ("aiohttp", "aiosqlite", "msgspec"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    return {
        "cpu": cpu,
        "cores": f"{os.cpu_count()} logical ({usable} usable by this process)",
        "ram": ram,
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite": sqlite3.sqlite_version,
        "libraries": ", ".join(versions),
        "commit": _git_commit(),
        "load": _load(),
    }


def _load() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.1f} (1 min), {five:.1f} (5 min)"


def _git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not head:
        return "unknown"
    return f"{head}{' + uncommitted changes' if dirty else ''}"


# ---- rendering and the rewrite ------------------------------------------------------------------

def render(section: Section, mach: dict[str, str] | None = None) -> str:
    mach = mach or machine()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    judged = [r for r in section.results if r.passed is not None]
    passed = sum(1 for r in judged if r.passed)
    lines = [
        f"<!-- bench:{section.key} -->",
        f"## {section.title}",
        "",
        f"*Measured {when} by `python -m bench {section.key}` in {section.seconds:.0f} s; "
        f"{passed} of {len(judged)} targets met.*",
        "",
        f"Machine: {mach['cpu']}, {mach['cores']}, {mach['ram']} RAM, {mach['os']}; "
        f"{mach['python']}, SQLite {mach['sqlite']}; {mach['libraries']}; commit {mach['commit']}; "
        f"load average when the run began {mach['load']}.",
        "",
        section.about.strip(),
        "",
        "| measurement | result | target | verdict |",
        "|---|---|---|---|",
    ]
    for r in section.results:
        name = r.name + (f" <br><sub>{r.note}</sub>" if r.note else "")
        lines.append(f"| {name} | {r.shown_value()} | {r.shown_target()} | {r.verdict()} |")
    if section.notes:
        lines.append("")
        lines.extend(section.notes)
    lines.append(f"<!-- /bench:{section.key} -->")
    return "\n".join(lines) + "\n"


_SECTION = re.compile(r"<!-- bench:(?P<key>[\w.-]+) -->\n.*?<!-- /bench:(?P=key) -->\n?", re.S)


def write_section(section: Section, doc: Path = DOC, mach: dict[str, str] | None = None) -> None:
    """Replace this benchmark's section of the document (or append it), keeping every other one."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else PREAMBLE
    block = render(section, mach)
    found = False

    def swap(match: re.Match[str]) -> str:
        nonlocal found
        if match["key"] != section.key:
            return match[0]
        found = True
        return block

    text = _SECTION.sub(swap, text)
    if not found:
        text = text.rstrip("\n") + "\n\n" + block
    doc.parent.mkdir(parents=True, exist_ok=True)
    tmp = doc.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, doc)


def summary_line(section: Section) -> str:
    judged = [r for r in section.results if r.passed is not None]
    misses = [r for r in judged if not r.passed]
    head = f"{section.key}: {len(judged) - len(misses)}/{len(judged)} targets met"
    return head + "".join(f"\n  miss: {r.name}: {r.shown_value()} (target {r.shown_target()})" for r in misses)


# ---- small statistics -----------------------------------------------------------------------------

def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: list[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


if __name__ == "__main__":  # pragma: no cover - a quick look at what would be written
    sys.stdout.write(render(Section("example", "Example", "About.", [Result("x", 1.5, "ms", 2.0)])))
