"""The packages' direction: the dashboard (tgtui) builds on the daemon's package, never the other way round.

Read from the source (every import statement of every module, wherever it
sits: a function-level import counts too), not from what happens to be
imported at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported(source: str, package: str) -> set[str]:
    """Every module an import statement in ``source`` names; relative ones resolved within ``package``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            base = ".".join([*parts, node.module] if node.module else parts)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def offenders(package: str, forbidden: str) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        within = ".".join(path.relative_to(ROOT).parts[:-1])
        for name in sorted(imported(path.read_text(encoding="utf-8"), within)):
            if name == forbidden or name.startswith(forbidden + "."):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


def test_the_walk_finds_imports_wherever_they_are() -> None:
    source = "import os\ndef demo():\n    import tgtui.app\n    from tgtui import model\nfrom ..tui import x\n"
    assert imported(source, "tgdaemon.cli") >= {"os", "tgtui.app", "tgtui", "tgtui.model", "tgdaemon.tui.x"}


def test_nothing_in_tgdaemon_imports_tgtui() -> None:
    assert len(list((ROOT / "tgdaemon").rglob("*.py"))) > 50  # the walk sees the package
    assert offenders("tgdaemon", "tgtui") == []


def test_the_dashboard_does_not_import_the_command_line() -> None:
    assert offenders("tgtui", "tgdaemon.cli") == []
