"""The CLI as an operator meets it: a subprocess, real arguments, a real daemon or none.

Bad input gets a clear error: one line on stderr naming what is wrong, a
non-zero exit code (2 for usage and configuration, 1 for "it did not work"),
never a traceback.

Every command is a fresh interpreter, so independent commands run as one
batch (``Fleet.cli_batch``); each result is still checked on its own.
"""

from __future__ import annotations

import io
import json
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pgtest
import pytest
from daemon_proc import Fleet, fleet, no_traceback, one_line
from rich.console import Console
from rich.table import Table

from tgdaemon.cli import output
from tgdaemon.control.client import ControlClient
from tgdaemon.lifecycle.datadir import DB_NAME
from tgdaemon.store import MEASUREMENT_FIELDS
from tgdaemon.store.views import CSV_HEADER, measurement_rows
from tgdaemon.timeutil import iso
from tgdaemon.wire import Account, AccountPage

LONG_REASON = "sim card returned to the carrier after the March audit"


@pytest.fixture(scope="module", params=pgtest.STORES)
def live(request: pytest.FixtureRequest) -> Iterator[Fleet]:
    """One running daemon (10 accounts, #10 disabled with a long reason) shared by tests that only read or fail;
    once on the data dir's SQLite file, once on a PostgreSQL database."""
    with pgtest.store_url(request.param, request) as url, fleet(store=url) as f:
        f.start(accounts=10).wait_ready()
        result = f.cli("accounts", "disable", "10", "--reason", LONG_REASON, "--socket", str(f.socket_path))
        assert result.returncode == 0, result.stderr
        yield f


@pytest.fixture
def fl() -> Iterator[Fleet]:
    with fleet() as f:
        yield f


def error_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The one stderr line of a failed command, after checking the exit code and that nothing leaked."""
    assert result.returncode == code, f"{result.args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    no_traceback(result)
    assert result.stdout == "", f"{result.args}: {result.stdout}"
    return one_line(result.stderr)


def usage_error(result: subprocess.CompletedProcess[str]) -> str:
    """argparse errors: exit 2, a usage block, then one ``error:`` line."""
    assert result.returncode == 2, f"{result.args}: exit {result.returncode}\n{result.stderr}"
    no_traceback(result)
    errors = [ln for ln in result.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1, result.stderr
    return errors[0]


def assert_not_running(result: subprocess.CompletedProcess[str], socket_path: Path) -> None:
    line = error_line(result, 1)
    assert "tgdaemon is not running" in line, line
    assert str(socket_path) in line, line
    assert "tgdaemon run" in line, line  # how to start it


def test_without_a_daemon_admin_commands_say_so_in_one_line(fl: Fleet) -> None:
    missing = fl.root / "nothing.sock"
    stale = fl.root / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(stale))  # bound, never listening, closed: what a killed daemon leaves behind
    from_env = fl.root / "from-env.sock"
    default = Path(fl.env["XDG_RUNTIME_DIR"]) / "tgfleet" / "tgdaemon.sock"
    status, listing, stale_status, env_listing, default_status = fl.cli_batch(
        (("status", "--socket", str(missing)), None),
        (("accounts", "list", "--json", "--socket", str(missing)), None),
        (("status", "--socket", str(stale)), None),
        (("accounts", "list"), {"TGFLEET_SOCKET": str(from_env)}),  # the environment names the socket
        (("status",), None),  # nothing given: the platform's runtime dir
    )
    for result in (status, listing):
        assert_not_running(result, missing)
    assert_not_running(stale_status, stale)
    assert_not_running(env_listing, from_env)
    assert_not_running(default_status, default)


def test_socket_from_option_before_or_after_the_subcommand_or_from_env(live: Fleet) -> None:
    sock = str(live.socket_path)
    wrong = {"TGFLEET_SOCKET": str(live.root / "wrong.sock")}  # --socket wins over the environment
    results = live.cli_batch(
        (("--socket", sock, "status", "--json"), wrong),
        (("status", "--json", "--socket", sock), wrong),
        (("accounts", "--socket", sock, "list", "--json"), wrong),
        (("status", "--json"), {"TGFLEET_SOCKET": sock}),
    )
    for result in results:
        assert result.returncode == 0, f"{result.args}: {result.stderr}"
        no_traceback(result)
    pid = live.daemons[0].pid
    assert json.loads(results[0].stdout)["pid"] == pid
    assert json.loads(results[1].stdout)["pid"] == pid
    assert [a["id"] for a in json.loads(results[2].stdout)] == list(range(1, 11))
    assert json.loads(results[3].stdout)["pid"] == pid


def test_refusals_from_the_daemon_are_one_line(live: Fleet) -> None:
    sock = ("--socket", str(live.socket_path))
    missing, missing_enable, empty_reason, listing = live.cli_many(
        ("accounts", "disable", "99999", "--reason", "x", *sock),
        ("accounts", "enable", "99999", *sock),
        ("accounts", "disable", "1", "--reason", "", *sock),
        ("accounts", "list", "--state", "disabled", "--json", *sock),
    )
    assert "no such account" in error_line(missing, 1)
    assert "no such account" in error_line(missing_enable, 1)
    assert "--reason" in usage_error(empty_reason) and "blank" in usage_error(empty_reason)
    assert [a["id"] for a in json.loads(listing.stdout)] == [10]


def test_argument_errors_are_usage_errors(fl: Fleet) -> None:
    # argparse rejects these before any socket or config is touched: no daemon needed
    bare, no_reason, zero_id, bad_state, zero_accounts = fl.cli_many(
        (),
        ("accounts", "disable", "1"),
        ("accounts", "disable", "0", "--reason", "x"),
        ("accounts", "list", "--state", "sleeping"),
        ("run", "--simulate", "--accounts", "0"),
    )
    assert bare.returncode == 2 and "usage:" in bare.stderr and "accounts" in bare.stderr
    no_traceback(bare)
    assert "--reason" in usage_error(no_reason)
    assert "at least 1" in usage_error(zero_id)
    assert "sleeping" in usage_error(bad_state)
    assert "--accounts" in usage_error(zero_accounts)


def test_piped_human_output_is_not_cut_to_80_columns(live: Fleet) -> None:
    # stdout is a pipe and COLUMNS is unset, as in `tgdaemon accounts list | grep` or `> file`
    table, events = live.cli_many(("accounts", "list", "--socket", str(live.socket_path)),
                                  ("events", "--limit", "1", "--socket", str(live.socket_path)))
    assert table.returncode == 0, table.stderr
    lines = [ln for ln in table.stdout.splitlines() if ln.strip()]
    assert len(lines) == 11, table.stdout  # header + one line per account
    assert "ID" in lines[0].split() and "STATE" in lines[0].split()
    for n, line in enumerate(lines[1:], start=1):
        words = line.split()
        assert words[0] == str(n) and f"sim-{n:04d}" in words, line
        assert ("disabled" if n == 10 else "ready") in words, line
    assert LONG_REASON in lines[10]
    assert events.returncode == 0, events.stderr
    assert LONG_REASON in one_line(events.stdout)  # one event, one line


def rich_table_of(accounts: list[Account]) -> str:
    """The table as rich printed it before the CLI printed it itself (a pipe: no colour, never cut)."""
    table = Table(box=None, pad_edge=False)
    for name, justify in output.ACCOUNT_COLUMNS:
        table.add_column(name, justify=justify, no_wrap=True)
    for row in zip(*output.account_columns(accounts)):
        table.add_row(*row)
    console = Console(file=io.StringIO(), highlight=False, soft_wrap=True, width=100_000)
    console.print(table)
    return console.file.getvalue()  # type: ignore[attr-defined]


async def test_accounts_list_prints_what_rich_printed_and_json_as_before(live: Fleet) -> None:
    sock = ("--socket", str(live.socket_path))
    calls = [("accounts", "list", *sock), ("accounts", "list", "--json", *sock),
             ("accounts", "list", "--sort", "label", "--desc", "--limit", "4", *sock),
             ("accounts", "list", "--json", "--search", "sim-000", "--limit", "3", *sock),
             ("accounts", "list", "--state", "disabled", *sock)]
    results = live.cli_many(*calls)
    async with ControlClient(live.socket_path) as client:
        expected = [await client.call("GET", "/accounts", AccountPage, params=params) for params in (
            {"limit": 100}, {"limit": 100}, {"sort": "label", "desc": True, "limit": 4},
            {"q": "sim-000", "limit": 3}, {"state": "disabled", "limit": 100})]
        # Paged by the client's prefetching pages, 3 at a time: the same accounts in the same order.
        paged = [a async for page in client.account_pages(page=3, sort="label", desc=True) for a in page.accounts]
        cut = [a async for page in client.account_pages(page=3, limit=7) for a in page.accounts]
    for result in results:
        assert result.returncode == 0 and not result.stderr, result.stderr
    assert results[0].stdout == rich_table_of(expected[0].accounts)
    assert results[1].stdout == msgspec.json.format(msgspec.json.encode(expected[1].accounts), indent=2).decode() + "\n"
    assert results[2].stdout == rich_table_of(expected[2].accounts)
    assert [a["id"] for a in json.loads(results[3].stdout)] == [a.id for a in expected[3].accounts]
    assert results[4].stdout == rich_table_of(expected[4].accounts) and LONG_REASON in results[4].stdout
    full = (await live_accounts(live, sort="label", desc=True))
    assert [a.id for a in paged] == [a.id for a in full] and len(paged) == 10
    assert [a.id for a in cut] == list(range(1, 8))


async def live_accounts(live: Fleet, **params: object) -> list[Account]:
    async with ControlClient(live.socket_path) as client:
        return (await client.call("GET", "/accounts", AccountPage, params={**params, "limit": 1000})).accounts


EXPORT_ROWS = 25_000  # more than two of the store's pages


def test_quotas_export_streams_the_bytes_the_daemon_wrote_before(fl: Fleet) -> None:
    """``quotas export`` writes the daemon's answer as it comes: the same bytes as the Python formats made of
    every row (CSV with CRLF, JSON), and a missing quota is one line with nothing on stdout."""
    fl.start(accounts=3).wait_ready()
    sock = ("--socket", str(fl.socket_path))
    added = fl.cli("quotas", "add", "--name", "n", "--target", "@tgfleet_news", "--action", "post_stats",
                   "--quantity", "5", "--expires-in", "1d", *sock)
    assert added.returncode == 0, added.stderr
    qid = int(added.stdout)
    conn = sqlite3.connect(fl.data_dir / DB_NAME, timeout=30)  # beside the running daemon, as a second writer
    try:
        with conn:
            conn.executemany("INSERT INTO measurements (quota_id, task_id, post_id, observed_at, views, forwards)"
                             " VALUES (?, ?, ?, ?, ?, ?)",
                             [(qid, i, i % 7 or None, 1_700_000_000 + i / 3, i, 2**40 + i) for i in range(EXPORT_ROWS)])
        rows = [(iso(r[0]), *r[1:]) for r in conn.execute(
            f"SELECT {', '.join(MEASUREMENT_FIELDS)} FROM measurements WHERE quota_id = ? ORDER BY observed_at, id",
            (qid,))]
    finally:
        conn.close()
    results = [subprocess.run([sys.executable, "-m", "tgdaemon", "quotas", "export", str(q), "--format", fmt, *sock],
                              env=fl.env, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
               for q, fmt in ((qid, "csv"), (qid, "json"), (qid + 1, "csv"))]
    for result in results[:2]:
        assert result.returncode == 0, result.stderr
    assert results[0].stdout == CSV_HEADER + measurement_rows("csv", rows)
    assert results[1].stdout == b'{"measurements":[' + measurement_rows("json", rows) + b"]}\n"  # a text file's end
    assert len(json.loads(results[1].stdout)["measurements"]) == EXPORT_ROWS
    missing = results[2]
    assert missing.returncode == 1 and missing.stdout == b""
    assert b"no such quota" in missing.stderr and b"Traceback" not in missing.stderr
    assert len(missing.stderr.decode().strip().splitlines()) == 1


def run_args(fl: Fleet, config: Path, *, http: str = "127.0.0.1:0") -> tuple[str, ...]:
    return ("run", "--simulate", "--accounts", "5", "--config", str(config), "--data-dir", str(fl.data_dir),
            "--socket", str(fl.socket_path), "--http", http)


def test_bad_configuration_is_one_line_naming_the_key(fl: Fleet) -> None:
    unknown = fl.root / "unknown.toml"
    unknown.write_text("[daemon]\nlog_levle = \"debug\"\n")
    wrong_type = fl.root / "wrong-type.toml"
    wrong_type.write_text("[simulator]\naccounts = \"many\"\n")
    not_toml = fl.root / "broken.toml"
    not_toml.write_text("[daemon\n")
    bad_seed = fl.root / "bad-seed.toml"
    bad_seed.write_text("[simulator]\nseed = 1.5\n")
    admin_bad = fl.root / "admin.toml"
    admin_bad.write_text("[daemon]\nsockett = \"/tmp/x\"\n")
    results = fl.cli_batch(
        (run_args(fl, unknown), None),
        (run_args(fl, wrong_type), None),
        (run_args(fl, not_toml), None),
        (run_args(fl, fl.config), {"TGFLEET_SIMULATOR__ACCOUNTS": "lots"}),
        (("run", "--simulate", "--data-dir", str(fl.data_dir), "--socket", str(fl.socket_path)),
         {"TGFLEET_CONFIG": str(bad_seed)}),
        (("status", "--config", str(admin_bad)), None),  # admin commands read the config for the socket
        (run_args(fl, fl.config, http="notaport"), None),
        (run_args(fl, fl.config, http="127.0.0.1:99999"), None),
    )
    lines = [error_line(r, 2) for r in results]
    assert "daemon.log_levle" in lines[0] and "unknown key" in lines[0] and str(unknown) in lines[0], lines[0]
    assert "simulator.accounts" in lines[1] and "int" in lines[1], lines[1]
    assert str(not_toml) in lines[2] and "TOML" in lines[2], lines[2]
    assert "simulator.accounts" in lines[3] and "TGFLEET_" in lines[3], lines[3]
    assert "simulator.seed" in lines[4] and str(bad_seed) in lines[4], lines[4]
    assert "daemon.sockett" in lines[5] and "unknown key" in lines[5], lines[5]
    for line, value in zip(lines[6:], ("notaport", "127.0.0.1:99999")):
        assert "http" in line and "HOST:PORT" in line and repr(value) in line, line
    # refused before touching anything
    assert not fl.data_dir.exists() and not fl.socket_path.exists()


def test_run_http_port_in_use_fails_cleanly(live: Fleet, fl: Fleet) -> None:
    status = live.cli("status", "--json", "--socket", str(live.socket_path))
    taken = json.loads(status.stdout)["http"]
    daemon = fl.start(accounts=5, extra_args=("--http", taken))  # the later --http wins
    code = daemon.wait_exit()
    log = daemon.log()
    assert code == 1, log
    assert "Traceback" not in log
    last = [ln for ln in log.splitlines() if ln.strip()][-1]
    assert last.startswith("tgdaemon: ") and "cannot listen" in last and taken in last, last
    assert not fl.socket_path.exists(), "a daemon that failed to start left its socket behind"
