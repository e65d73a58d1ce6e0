"""End to end: a real ``tgdaemon run --simulate`` subprocess, its real Unix socket, the real CLI.

No mocks: every check goes through the same doors an operator uses (the admin
commands, signals, the data dir, sd_notify's datagram socket).
"""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon_proc import Fleet, fleet, no_traceback, one_line, socket_answers

STATES = {"ready", "busy", "cooldown", "disabled", "inactive"}
ACCOUNT_FIELDS = {"id", "label", "phone_masked", "state", "is_probe", "executor", "cooldown_until",
                  "cooldown_reason", "disabled_reason", "setup", "last_error_code"}
DB_NAME = "tgfleet.sqlite3"


@pytest.fixture
def fl() -> Iterator[Fleet]:
    with fleet() as f:
        yield f


WIDE = {"COLUMNS": "400"}  # a wide "terminal": how piped human output wraps is test_cli's business


def _checked(result: Any) -> Any:
    assert result.returncode == 0, f"{result.args}: exit {result.returncode}: {result.stderr}"
    no_traceback(result)
    return result


def cli_json(fl: Fleet, *args: str) -> Any:
    return json.loads(_checked(fl.cli(*args, "--socket", str(fl.socket_path), "--json")).stdout)


def cli_ok(fl: Fleet, *args: str) -> str:
    return _checked(fl.cli(*args, "--socket", str(fl.socket_path), env=WIDE)).stdout


def cli_round(fl: Fleet, *calls: tuple[str, ...]) -> list[Any]:
    """Independent commands run at once; a call ending in --json is decoded, others give stdout."""
    results = fl.cli_many(*((*c, "--socket", str(fl.socket_path)) for c in calls), env=WIDE)
    return [json.loads(_checked(r).stdout) if "--json" in c else _checked(r).stdout for c, r in zip(calls, results)]


def db_events(data_dir: Path) -> list[tuple[str, int | None, str]]:
    """The audit trail, read straight from the database file once the daemon is gone."""
    conn = sqlite3.connect(f"file:{data_dir / DB_NAME}?mode=ro", uri=True)
    try:
        return [tuple(r) for r in conn.execute("SELECT kind, account_id, message FROM events ORDER BY id")]
    finally:
        conn.close()


def assert_db_closed_cleanly(data_dir: Path) -> None:
    """After a graceful stop the WAL is checkpointed (absent or empty) and the database opens."""
    wal = data_dir / f"{DB_NAME}-wal"
    assert not wal.exists() or wal.stat().st_size == 0, f"{wal} still holds {wal.stat().st_size} bytes"
    conn = sqlite3.connect(f"file:{data_dir / DB_NAME}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


def test_status_list_disable_enable_then_sigterm(fl: Fleet) -> None:
    daemon = fl.start().wait_ready()

    status, rows, none_disabled = cli_round(fl, ("status", "--json"), ("accounts", "list", "--json"),
                                            ("accounts", "list", "--state", "disabled", "--json"))
    assert set(status["accounts"]) == STATES
    assert sum(status["accounts"].values()) == 50
    assert all(isinstance(n, int) and n >= 0 for n in status["accounts"].values())
    assert isinstance(status["tasks"], dict) and status["tasks"], status["tasks"]
    assert all(isinstance(counts, dict) for counts in status["tasks"].values())
    assert isinstance(status["version"], str) and status["version"]
    assert isinstance(status["uptime_seconds"], (int, float)) and status["uptime_seconds"] >= 0
    channels = status["simulator"]["channels"]
    assert isinstance(channels, list) and channels and all(isinstance(c, str) and c for c in channels)
    assert status["pid"] == daemon.pid

    assert len(rows) == 50
    for row in rows:
        assert ACCOUNT_FIELDS <= set(row), ACCOUNT_FIELDS - set(row)
        assert row["state"] in STATES
        assert set(row["setup"]) >= {"done", "total"}
        assert row["phone_masked"] and "*" in row["phone_masked"]
    assert len({r["id"] for r in rows}) == 50
    probes = [r for r in rows if r["is_probe"]]
    assert 1 <= len(probes) <= 5, f"{len(probes)} probes of 50 (configured fraction 5%)"
    assert none_disabled == []

    target = next(r for r in rows if not r["is_probe"] and r["state"] == "ready")
    aid = str(target["id"])
    reason = "operator test: sim e2e"
    out = cli_ok(fl, "accounts", "disable", aid, "--reason", reason)
    assert "disabled" in out and reason in out

    disabled, status, events, human_events = cli_round(
        fl, ("accounts", "list", "--state", "disabled", "--json"), ("status", "--json"),
        ("events", "--account", aid, "--json"), ("events",))
    assert [(r["id"], r["state"], r["disabled_reason"]) for r in disabled] == [(target["id"], "disabled", reason)]
    assert status["accounts"]["disabled"] == 1
    assert any(e["kind"] == "account.disabled" and reason in e["message"] for e in events), events
    assert reason in human_events

    out = cli_ok(fl, "accounts", "enable", aid)
    assert "enabled" in out
    none_disabled, after, events = cli_round(
        fl, ("accounts", "list", "--state", "disabled", "--json"), ("accounts", "list", "--json"),
        ("events", "--account", aid, "--json"))
    assert none_disabled == []
    after_by_id = {r["id"]: r for r in after}
    assert after_by_id[target["id"]]["state"] != "disabled" and after_by_id[target["id"]]["disabled_reason"] is None
    assert [e["kind"] for e in events][:2] == ["account.enabled", "account.disabled"]  # newest first

    assert daemon.stop(signal.SIGTERM) == 0, daemon.log()
    assert not fl.socket_path.exists(), "the socket file outlived the daemon"
    assert "Traceback" not in daemon.log()
    assert_db_closed_cleanly(fl.data_dir)
    trail = [(kind, account) for kind, account, _ in db_events(fl.data_dir)]
    assert ("account.disabled", target["id"]) in trail and ("account.enabled", target["id"]) in trail
    assert trail.index(("account.disabled", target["id"])) < trail.index(("account.enabled", target["id"]))


def test_sigint_stops_gracefully(fl: Fleet) -> None:
    daemon = fl.start(accounts=10).wait_ready()
    assert daemon.stop(signal.SIGINT) == 0, daemon.log()
    assert not fl.socket_path.exists()
    assert "Traceback" not in daemon.log()
    assert_db_closed_cleanly(fl.data_dir)


def test_second_daemon_on_same_data_dir_refuses(fl: Fleet) -> None:
    first = fl.start(accounts=10).wait_ready()
    other_socket = fl.root / "other.sock"
    second = fl.start(accounts=10, socket_path=other_socket)
    code = second.wait_exit()
    assert code != 0
    line = one_line(second.log())
    assert "another tgdaemon" in line and "running" in line and str(first.pid) in line, line
    assert not other_socket.exists()
    # the first daemon is untouched
    assert socket_answers(fl.socket_path)
    assert cli_json(fl, "status")["pid"] == first.pid
    assert first.stop() == 0


def test_second_daemon_same_data_dir_and_socket_refuses(fl: Fleet) -> None:
    first = fl.start(accounts=10).wait_ready()
    second = fl.start(accounts=10)
    assert second.wait_exit() != 0
    assert "another tgdaemon" in one_line(second.log())
    assert socket_answers(fl.socket_path), "the refused daemon removed the running daemon's socket"
    assert cli_json(fl, "status")["pid"] == first.pid


def test_second_daemon_on_same_socket_keeps_the_first_reachable(fl: Fleet) -> None:
    first = fl.start(accounts=10).wait_ready()
    second = fl.start(accounts=10, data_dir=fl.root / "data2")
    assert second.wait_exit() != 0
    lines = [ln for ln in second.log().splitlines() if ln.strip()]
    assert "in use by another tgdaemon" in lines[-1]
    assert "Traceback" not in second.log()
    assert fl.socket_path.exists() and socket_answers(fl.socket_path)
    assert cli_json(fl, "status")["pid"] == first.pid


def test_too_long_socket_path_says_why(fl: Fleet) -> None:
    daemon = fl.start(accounts=5, socket_path=fl.root / ("s" * 120))
    assert daemon.wait_exit() != 0
    last = [ln for ln in daemon.log().splitlines() if ln.strip()][-1]
    assert "Traceback" not in daemon.log()
    assert "None" not in last and "too long" in last.lower(), last


def test_restart_keeps_accounts_and_events(fl: Fleet) -> None:
    first = fl.start().wait_ready()
    before = cli_json(fl, "accounts", "list")
    cli_ok(fl, "accounts", "disable", "7", "--reason", "kept across restarts")
    assert first.stop() == 0

    # a different --accounts must not reseed an existing data dir
    second = fl.start(accounts=60).wait_ready()
    after, events, status = cli_round(fl, ("accounts", "list", "--json"), ("events", "--limit", "500", "--json"),
                                      ("status", "--json"))
    assert [(r["id"], r["label"], r["phone_masked"], r["is_probe"]) for r in after] == \
           [(r["id"], r["label"], r["phone_masked"], r["is_probe"]) for r in before]
    assert {r["id"]: r["disabled_reason"] for r in after}[7] == "kept across restarts"
    assert sum(e["kind"] == "fleet.seeded" for e in events) == 1, [e["kind"] for e in events]
    assert any(e["kind"] == "account.disabled" and e["account_id"] == 7 for e in events)
    assert status["accounts"]["disabled"] == 1
    assert second.stop() == 0


def test_sd_notify_ready_watchdog_stopping(fl: Fleet) -> None:
    notify_path = fl.root / "notify"
    received: list[str] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(notify_path))
        sock.settimeout(0.5)

        def wait_for(message: str, timeout: float = 15.0) -> None:
            deadline = time.monotonic() + timeout
            while not any(message in m.split("\n") for m in received):
                if time.monotonic() > deadline:
                    pytest.fail(f"no {message} within {timeout:.0f} s; got {received}\n{daemon.log()}")
                if daemon.returncode is not None and message != "STOPPING=1":
                    pytest.fail(f"daemon exited ({daemon.returncode}) before {message}\n{daemon.log()}")
                try:
                    received.append(sock.recv(4096).decode())
                except TimeoutError:
                    pass

        daemon = fl.start(accounts=10, env={"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "2000000"})
        wait_for("READY=1")
        # READY=1 is a promise: the control socket answers from that moment on
        assert socket_answers(fl.socket_path)
        assert cli_json(fl, "status")["pid"] == daemon.pid
        ready_at = next(i for i, m in enumerate(received) if "READY=1" in m.split("\n"))
        wait_for("WATCHDOG=1")
        daemon.proc.send_signal(signal.SIGTERM)
        wait_for("STOPPING=1")
        assert daemon.wait_exit() == 0, daemon.log()
    assert not any("STOPPING=1" in m for m in received[:ready_at + 1])
    assert not fl.socket_path.exists()
