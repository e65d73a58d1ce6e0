"""The CLI as an operator meets it: a subprocess, real arguments, a real daemon or none.

Bad input gets a clear error: one line on stderr naming what is wrong, a
non-zero exit code (2 for usage and configuration, 1 for "it did not work"),
never a traceback.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon_proc import Fleet, fleet, no_traceback, one_line


LONG_REASON = "sim card returned to the carrier after the March audit"


@pytest.fixture(scope="module")
def live() -> Iterator[Fleet]:
    """One running daemon (10 accounts, #10 disabled with a long reason) shared by tests that only read or fail."""
    with fleet() as f:
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
    assert result.stdout == "", result.stdout
    return one_line(result.stderr)


def usage_error(result: subprocess.CompletedProcess[str]) -> str:
    """argparse errors: exit 2, a usage block, then one ``error:`` line."""
    assert result.returncode == 2, result.stderr
    no_traceback(result)
    errors = [ln for ln in result.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1, result.stderr
    return errors[0]


def assert_not_running(line: str, socket_path: Path | str) -> None:
    assert "tgdaemon is not running" in line, line
    assert str(socket_path) in line, line
    assert "tgdaemon run" in line, line  # how to start it


# --- no daemon ------------------------------------------------------------------------------

ADMIN_COMMANDS = (("status",), ("accounts", "list", "--json"), ("accounts", "disable", "1", "--reason", "x"))


def test_admin_commands_without_a_daemon_say_so(fl: Fleet) -> None:
    missing = fl.root / "nothing.sock"
    results = fl.cli_many(*((*cmd, "--socket", str(missing)) for cmd in ADMIN_COMMANDS))
    for result in results:
        assert_not_running(error_line(result, 1), missing)


def test_stale_socket_file_reads_as_not_running(fl: Fleet) -> None:
    stale = fl.root / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(stale))  # bound, never listening, closed: what a killed daemon leaves behind
    assert_not_running(error_line(fl.cli("status", "--socket", str(stale)), 1), stale)


def test_default_socket_comes_from_the_runtime_dir(fl: Fleet) -> None:
    expected = Path(fl.env["XDG_RUNTIME_DIR"]) / "tgfleet" / "tgdaemon.sock"
    assert_not_running(error_line(fl.cli("status"), 1), expected)


def test_tgfleet_socket_env_is_honoured_without_a_daemon(fl: Fleet) -> None:
    env_sock = fl.root / "from-env.sock"
    assert_not_running(error_line(fl.cli("accounts", "list", env={"TGFLEET_SOCKET": str(env_sock)}), 1), env_sock)


# --- with a daemon --------------------------------------------------------------------------

def test_tgfleet_socket_env_reaches_the_daemon(live: Fleet) -> None:
    result = live.cli("status", "--json", env={"TGFLEET_SOCKET": str(live.socket_path)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["pid"] == live.daemons[0].pid


def test_socket_option_before_or_after_the_subcommand(live: Fleet) -> None:
    sock = str(live.socket_path)
    bogus = {"TGFLEET_SOCKET": str(live.root / "wrong.sock")}  # --socket wins over the environment
    results = live.cli_many(
        ("--socket", sock, "status", "--json"),
        ("status", "--json", "--socket", sock),
        ("accounts", "--socket", sock, "list", "--json"),
        env=bogus,
    )
    for result in results:
        assert result.returncode == 0, f"{result.args}: {result.stderr}"
        no_traceback(result)
    pids = {json.loads(r.stdout)["pid"] for r in results[:2]}
    assert pids == {live.daemons[0].pid}
    for result in results[2:]:
        assert [a["id"] for a in json.loads(result.stdout)] == list(range(1, 11))


def test_account_errors_from_the_daemon(live: Fleet) -> None:
    sock = ("--socket", str(live.socket_path))
    missing, missing_enable, empty_reason = live.cli_many(
        ("accounts", "disable", "99999", "--reason", "x", *sock),
        ("accounts", "enable", "99999", *sock),
        ("accounts", "disable", "1", "--reason", "", *sock),
    )
    assert "no such account" in error_line(missing, 1)
    assert "no such account" in error_line(missing_enable, 1)
    assert "reason" in error_line(empty_reason, 1)


def test_argument_errors_are_usage_errors(fl: Fleet) -> None:
    # argparse rejects these before any socket is touched: no daemon needed
    no_reason, zero_id, bad_state = fl.cli_many(
        ("accounts", "disable", "1"),
        ("accounts", "disable", "0", "--reason", "x"),
        ("accounts", "list", "--state", "sleeping"),
    )
    assert "--reason" in usage_error(no_reason)
    assert "at least 1" in usage_error(zero_id)
    assert "sleeping" in usage_error(bad_state)


def test_no_command_prints_help_and_exits_2(fl: Fleet) -> None:
    result = fl.cli()
    assert result.returncode == 2
    no_traceback(result)
    assert "usage:" in result.stderr and "accounts" in result.stderr


def test_piped_accounts_table_keeps_every_column(live: Fleet) -> None:
    result = live.cli("accounts", "list", "--socket", str(live.socket_path))  # stdout is a pipe, COLUMNS unset
    assert result.returncode == 0, result.stderr
    lines = [ln for ln in result.stdout.splitlines() if ln.strip()]
    assert len(lines) == 11, result.stdout  # header + one line per account
    assert "ID" in lines[0].split() and "STATE" in lines[0].split()
    for n, line in enumerate(lines[1:], start=1):
        words = line.split()
        assert words[0] == str(n) and f"sim-{n:04d}" in words, line
        assert ("disabled" if n == 10 else "ready") in words, line
    assert LONG_REASON in lines[10]


def test_piped_events_one_line_per_event(live: Fleet) -> None:
    sock = ("--socket", str(live.socket_path))
    result = live.cli("events", "--limit", "1", *sock)
    assert result.returncode == 0, result.stderr
    assert len([ln for ln in result.stdout.splitlines() if ln.strip()]) == 1, result.stdout


# --- tgdaemon run: configuration errors -----------------------------------------------------

def run_args(fl: Fleet, config: Path, *extra: str) -> tuple[str, ...]:
    return ("run", "--simulate", "--accounts", "5", "--config", str(config), "--data-dir", str(fl.data_dir),
            "--socket", str(fl.socket_path), "--http", "127.0.0.1:0", *extra)


def test_run_rejects_bad_config_in_one_line(fl: Fleet) -> None:
    unknown = fl.root / "unknown.toml"
    unknown.write_text("[daemon]\nlog_levle = \"debug\"\n")
    wrong_type = fl.root / "wrong-type.toml"
    wrong_type.write_text("[simulator]\naccounts = \"many\"\n")
    not_toml = fl.root / "broken.toml"
    not_toml.write_text("[daemon\n")
    results = fl.cli_many(*(run_args(fl, c) for c in (unknown, wrong_type, not_toml)))
    lines = [error_line(r, 2) for r in results]
    assert "daemon.log_levle" in lines[0] and "unknown key" in lines[0] and str(unknown) in lines[0]
    assert "simulator.accounts" in lines[1] and "int" in lines[1]
    assert str(not_toml) in lines[2] and "TOML" in lines[2]
    # refused before touching anything
    assert not fl.data_dir.exists() and not fl.socket_path.exists()


def test_run_rejects_bad_environment_and_tgfleet_config(fl: Fleet) -> None:
    bad = fl.root / "bad.toml"
    bad.write_text("[simulator]\nseed = 1.5\n")
    env_value = fl.cli(*run_args(fl, fl.config), env={"TGFLEET_SIMULATOR__ACCOUNTS": "lots"})
    env_config = fl.cli("run", "--simulate", "--data-dir", str(fl.data_dir), "--socket", str(fl.socket_path),
                        env={"TGFLEET_CONFIG": str(bad)})
    line = error_line(env_value, 2)
    assert "simulator.accounts" in line and "TGFLEET_" in line
    line = error_line(env_config, 2)
    assert "simulator.seed" in line and str(bad) in line
    assert not fl.data_dir.exists()


def test_admin_command_with_bad_config_names_the_key(fl: Fleet) -> None:
    bad = fl.root / "bad.toml"
    bad.write_text("[daemon]\nsockett = \"/tmp/x\"\n")
    line = error_line(fl.cli("status", "--config", str(bad)), 2)
    assert "daemon.sockett" in line and "unknown key" in line


@pytest.mark.parametrize("value", ["notaport", "127.0.0.1:99999"])
def test_run_rejects_bad_http_bind(fl: Fleet, value: str) -> None:
    result = fl.cli(*run_args(fl, fl.config)[:-2], "--http", value)
    line = error_line(result, 2)
    assert "http" in line and "HOST:PORT" in line and repr(value) in line
    assert not fl.socket_path.exists()


def test_run_bad_numbers_are_usage_errors(fl: Fleet) -> None:
    assert "--accounts" in usage_error(fl.cli("run", "--simulate", "--accounts", "0"))


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
