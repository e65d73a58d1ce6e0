"""``nodes list``, ``accounts pin|unpin``, and the nodes in ``status`` and ``accounts list``: the CLI as a
subprocess against real daemon subprocesses.

One daemon per store (the data dir's SQLite file, a PostgreSQL database); then
two daemons on one PostgreSQL database, where any node answers for both and a
node that stopped is named as such.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pgtest
import pytest
from daemon_proc import DaemonProc, Fleet, fleet, no_traceback, one_line

ACCOUNTS = 8
WAIT_SECONDS = 30.0
NODES = {"TGFLEET_NODES__HEARTBEAT_SECONDS": "0.5", "TGFLEET_NODES__DEAD_AFTER_SECONDS": "2",
         "TGFLEET_NODES__LEASE_SECONDS": "3"}


def node_env(name: str) -> dict[str, str]:
    return {"TGFLEET_DAEMON__NODE_NAME": name, **NODES}


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    no_traceback(result)
    return result.stdout


def failed(result: subprocess.CompletedProcess[str]) -> str:
    """The one stderr line of a refused command (exit 1, nothing on stdout)."""
    assert result.returncode == 1, f"{result.args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    no_traceback(result)
    assert result.stdout == ""
    return one_line(result.stderr)


def until(f: Fleet, daemon: DaemonProc, args: tuple[str, ...], check: Any, what: str) -> Any:
    """Run ``args`` (a --json command) until ``check(its JSON)`` holds; bounded in count and time."""
    deadline = time.monotonic() + WAIT_SECONDS
    for _ in range(200):
        data = json.loads(ok(f.cli(*args)))
        if check(data):
            return data
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    pytest.fail(f"never {what}: {data}\n--- daemon log:\n{daemon.log()}", pytrace=False)


@pytest.fixture(scope="module", params=pgtest.STORES)
def one(request: pytest.FixtureRequest) -> Iterator[tuple[Fleet, DaemonProc]]:
    """One daemon, node "solo", owning its accounts."""
    with pgtest.store_url(request.param, request) as url, fleet(store=url) as f:
        daemon = f.start(accounts=ACCOUNTS, env=node_env("solo")).wait_ready()
        sock = ("--socket", str(f.socket_path))
        until(f, daemon, ("accounts", "list", "--json", *sock),
              lambda rows: [a["owner"] for a in rows] == ["solo"] * ACCOUNTS, "every account owned by solo")
        yield f, daemon


def test_nodes_list_and_status_name_the_node(one: tuple[Fleet, DaemonProc]) -> None:
    f, daemon = one
    sock = ("--socket", str(f.socket_path))
    listed, table, status, status_json = f.cli_many(("nodes", "list", "--json", *sock), ("nodes", "list", *sock),
                                                    ("status", *sock), ("status", "--json", *sock))
    [node] = json.loads(ok(listed))
    assert (node["name"], node["alive"], node["leader"], node["accounts"], node["pid"]) == (
        "solo", True, True, ACCOUNTS, daemon.pid)
    assert node["stopped_at"] is None and node["http"] == json.loads(ok(status_json))["http"]

    lines = [ln for ln in ok(table).splitlines() if ln.strip()]
    assert lines[0].split() == ["NAME", "HOST", "PID", "STATE", "LEADER", "ACCOUNTS", "HEARTBEAT", "VERSION", "HTTP"]
    words = lines[1].split()
    assert words[:2] == ["solo", "*"] and str(daemon.pid) in words and "alive" in words and "leader" in words
    assert str(ACCOUNTS) in words and re.search(r" (just now|\d+s ago) ", lines[1]), lines[1]
    assert lines[2] == "* solo: the node that answered" and len(lines) == 3

    text = ok(status)
    assert re.match(r"tgdaemon \S+  node solo  pid \d+ ", text), text
    assert f"nodes  solo alive leader {ACCOUNTS} accounts" in text.splitlines(), text
    assert json.loads(ok(status_json))["node"] == "solo"


def test_pin_unpin_and_the_owner_column(one: tuple[Fleet, DaemonProc]) -> None:
    f, daemon = one
    sock = ("--socket", str(f.socket_path))
    pinned = ok(f.cli("accounts", "pin", "2", "3", "3", *sock, "--node", "solo"))
    assert pinned == "2 of 2 account(s) newly pinned to solo\n"
    listing, typo, missing = f.cli_many(("accounts", "list", *sock), ("accounts", "pin", "1", "--node", "sol", *sock),
                                        ("accounts", "pin", "99999", "--node", "solo", *sock))
    lines = [ln for ln in ok(listing).splitlines() if ln.strip()]
    assert "OWNER" in lines[0].split()
    assert all("solo" in ln.split() for ln in lines[1:]), lines
    assert [n for n, ln in enumerate(lines[1:], start=1) if "solo (pinned)" in ln] == [2, 3]
    line = failed(typo)
    assert line.startswith("tgdaemon: node 'sol': no such node") and "solo" in line and "nodes list" in line
    assert "account 99999" in failed(missing)

    unpinned = f.cli("accounts", "unpin", "2", "3", "4", *sock)
    assert ok(unpinned) == "2 of 3 account(s) unpinned; the fleet places them again\n"
    rows = json.loads(ok(f.cli("accounts", "list", "--json", *sock)))
    assert [a["pinned_node"] for a in rows] == [None] * ACCOUNTS and {a["owner"] for a in rows} == {"solo"}


def test_argument_mistakes_are_usage_errors() -> None:
    with fleet() as f:  # no daemon: argparse refuses these first
        no_node, no_ids, zero, bare = f.cli_many(("accounts", "pin", "1"), ("accounts", "unpin"),
                                                 ("accounts", "pin", "0", "--node", "a"), ("nodes",))
    for result, needle in ((no_node, "--node"), (no_ids, "ID"), (zero, "at least 1")):
        assert result.returncode == 2, result.stderr
        no_traceback(result)
        assert needle in one_line("\n".join(ln for ln in result.stderr.splitlines() if "error:" in ln))
    assert bare.returncode == 2 and "list" in bare.stdout  # the help of `nodes`, as `accounts` prints its own


def test_two_nodes_on_one_postgresql(request: pytest.FixtureRequest) -> None:
    """Either node lists both; a pin through one node moves the account to the other; a stopped node is named
    stopped, and a pin to it is taken with a note that its accounts wait for it."""
    with pgtest.store_url("postgresql", request) as url, fleet(store=url) as f:
        a = f.start(accounts=ACCOUNTS, env=node_env("a")).wait_ready()
        b_sock = f.root / "b.sock"
        b = f.start(accounts=ACCOUNTS, data_dir=f.root / "data-b", socket_path=b_sock, env=node_env("b")).wait_ready()
        on_a, on_b = ("--socket", str(f.socket_path)), ("--socket", str(b_sock))

        def names(nodes: list[dict[str, Any]]) -> dict[str, tuple[bool, int]]:
            return {n["name"]: (n["alive"], n["accounts"]) for n in nodes}

        seen = until(f, a, ("nodes", "list", "--json", *on_b),
                     lambda ns: {k: v[0] for k, v in names(ns).items()} == {"a": True, "b": True}
                     and sum(v[1] for v in names(ns).values()) == ACCOUNTS, "both nodes alive, every account owned")
        assert sum(n["leader"] for n in seen) == 1
        status_a, status_b = (json.loads(ok(r)) for r in f.cli_many(("status", "--json", *on_a),
                                                                   ("status", "--json", *on_b)))
        assert (status_a["node"], status_b["node"]) == ("a", "b")
        assert [n["name"] for n in status_a["nodes"]] == [n["name"] for n in status_b["nodes"]] == ["a", "b"]

        assert ok(f.cli("accounts", "pin", "1", "2", "--node", "b", *on_a)) == (
            "2 of 2 account(s) newly pinned to b\n")
        until(f, a, ("accounts", "list", "--json", *on_b),
              lambda rows: [(x["owner"], x["pinned_node"]) for x in rows[:2]] == [("b", "b")] * 2,
              "accounts 1 and 2 owned by b, where they are pinned")

        assert b.stop() == 0, b.log()
        until(f, a, ("nodes", "list", "--json", *on_a),
              lambda ns: {n["name"]: (n["alive"], n["stopped_at"] is not None) for n in ns} == {
                  "a": (True, False), "b": (False, True)}, "b stopped")
        table = ok(f.cli("nodes", "list", *on_a))
        assert re.search(r"^b +\S+ +\d+ +stopped ", table, re.M), table
        late = f.cli("accounts", "pin", "3", "--node", "b", *on_a)
        assert ok(late) == "1 of 1 account(s) newly pinned to b\n"
        note = one_line(late.stderr)
        assert note.startswith("tgdaemon: note: node b is stopped") and "unpin" in note
