"""End to end: a real ``tgdaemon run --simulate`` subprocess, its real Unix socket, the real CLI.

No mocks: every check goes through the same doors an operator uses (the admin
commands, signals, the data dir, sd_notify's datagram socket). The operator's day
runs on both stores: the data dir's SQLite file and a PostgreSQL database.
"""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pgtest
import pytest
from daemon_proc import DaemonProc, Fleet, fleet, no_traceback, one_line, socket_answers

STATES = {"ready", "busy", "cooldown", "disabled", "inactive"}
ACCOUNT_FIELDS = {"id", "label", "phone_masked", "state", "is_probe", "executor", "cooldown_until",
                  "cooldown_reason", "disabled_reason", "setup", "last_error_code"}
DB_NAME = "tgfleet.sqlite3"


@pytest.fixture
def fl() -> Iterator[Fleet]:
    with fleet() as f:
        yield f


@pytest.fixture
def fl_on_each_store(daemon_store: str | None) -> Iterator[Fleet]:
    """A fleet whose daemons run on the data dir's SQLite file, then on a fresh PostgreSQL database."""
    with fleet(store=daemon_store) as f:
        yield f


class Notifications:
    """The receiving end of sd_notify: an AF_UNIX datagram socket drained by a thread, as systemd would."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.received: list[str] = []
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._drain, name="notify-drain", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._closing.is_set():
            try:
                self.received.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def lines(self) -> list[str]:
        return [line for message in list(self.received) for line in message.split("\n")]

    def wait_for(self, line: str, daemon: DaemonProc, timeout: float = 15.0) -> int:
        """Until ``line`` has arrived (bounded); returns the index of its message."""
        deadline = time.monotonic() + timeout
        while True:
            for i, message in enumerate(list(self.received)):
                if line in message.split("\n"):
                    return i
            if time.monotonic() > deadline:
                pytest.fail(f"no {line} from sd_notify within {timeout:.0f} s; got {self.received}\n{daemon.log()}")
            time.sleep(0.02)

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=5)
        self.sock.close()


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


EVENTS_SQL = "SELECT kind, account_id, message FROM events ORDER BY id"


def db_events(fl: Fleet, request: pytest.FixtureRequest) -> list[tuple[Any, ...]]:
    """The audit trail, read straight from the database once the daemon is gone."""
    if fl.store is not None:
        server: pgtest.PgServer = request.getfixturevalue("pg_server")
        return server.query(pgtest.database_of(fl.store), EVENTS_SQL)
    conn = sqlite3.connect(f"file:{fl.data_dir / DB_NAME}?mode=ro", uri=True)
    try:
        return [tuple(r) for r in conn.execute(EVENTS_SQL)]
    finally:
        conn.close()


def assert_db_closed_cleanly(fl: Fleet, request: pytest.FixtureRequest) -> None:
    """After a graceful stop: SQLite's WAL is checkpointed (absent or empty) and the file opens;
    PostgreSQL has no session of the daemon's left."""
    if fl.store is not None:
        server: pgtest.PgServer = request.getfixturevalue("pg_server")
        database = pgtest.database_of(fl.store)
        left = server.query(database, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                      " AND application_name = 'tgdaemon'")
        assert left == [(0,)], f"{left[0][0]} sessions of the daemon are still open on {database}"
        return
    wal = fl.data_dir / f"{DB_NAME}-wal"
    assert not wal.exists() or wal.stat().st_size == 0, f"{wal} still holds {wal.stat().st_size} bytes"
    conn = sqlite3.connect(f"file:{fl.data_dir / DB_NAME}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


def test_lifecycle_status_accounts_events_signals_restart(fl_on_each_store: Fleet,
                                                         request: pytest.FixtureRequest) -> None:
    """The operator's day: start under systemd-style notify, look, disable, enable, stop, restart, stop."""
    fl = fl_on_each_store
    notify = Notifications(fl.root / "notify")
    try:
        daemon = fl.start(env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "2000000"})
        ready_at = notify.wait_for("READY=1", daemon)
        # READY=1 is a promise: the control socket answers from that moment on
        assert socket_answers(fl.socket_path), "READY=1 was sent before the control socket answered"
        notify.wait_for("WATCHDOG=1", daemon)  # WATCHDOG_USEC=2 s: a ping every second
        assert "STOPPING=1" not in notify.lines()

        # -- status and listing
        status, rows = cli_round(fl, ("status", "--json"), ("accounts", "list", "--json"))
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
        assert status["accounts"]["disabled"] == 0
        store_url = fl.store or f"sqlite://{fl.data_dir / DB_NAME}"
        assert status["store"] == {"kind": "postgresql" if fl.store else "sqlite", "url": store_url, "down": None,
                               "down_since": None}
        assert status["database"]["rows"]["accounts"] == 50

        assert len(rows) == 50
        for row in rows:
            assert ACCOUNT_FIELDS <= set(row), ACCOUNT_FIELDS - set(row)
            assert row["state"] in STATES
            assert set(row["setup"]) >= {"done", "total"}
            assert row["phone_masked"] and "*" in row["phone_masked"]
        assert len({r["id"] for r in rows}) == 50
        probes = [r for r in rows if r["is_probe"]]
        assert 1 <= len(probes) <= 5, f"{len(probes)} probes of 50 (configured fraction 5%)"

        # -- disable two accounts (one is enabled again, one stays disabled across the restart)
        target, kept = [r for r in rows if not r["is_probe"] and r["state"] == "ready"][:2]
        aid = str(target["id"])
        reason, kept_reason = "operator test: sim e2e", "kept across restarts"
        out, _ = cli_round(fl, ("accounts", "disable", aid, "--reason", reason),
                           ("accounts", "disable", str(kept["id"]), "--reason", kept_reason))
        assert "disabled" in out and reason in out

        disabled, status, events, human_events = cli_round(
            fl, ("accounts", "list", "--state", "disabled", "--json"), ("status", "--json"),
            ("events", "--account", aid, "--json"), ("events",))
        assert sorted((r["id"], r["state"], r["disabled_reason"]) for r in disabled) == \
               [(target["id"], "disabled", reason), (kept["id"], "disabled", kept_reason)]
        assert status["accounts"]["disabled"] == 2
        assert any(e["kind"] == "account.disabled" and reason in e["message"] for e in events), events
        assert all(e["account_id"] == target["id"] for e in events)
        assert reason in human_events and kept_reason in human_events

        # -- enable one
        out = cli_ok(fl, "accounts", "enable", aid)
        assert "enabled" in out and "state ready" in out, out
        disabled, events = cli_round(fl, ("accounts", "list", "--state", "disabled", "--json"),
                                     ("events", "--account", aid, "--json"))
        assert [r["id"] for r in disabled] == [kept["id"]]
        assert [e["kind"] for e in events][:2] == ["account.enabled", "account.disabled"]  # newest first

        # -- SIGTERM: clean exit, socket gone, database closed, STOPPING=1 announced
        assert daemon.stop(signal.SIGTERM) == 0, daemon.log()
        assert not fl.socket_path.exists(), "the socket file outlived the daemon"
        assert "Traceback" not in daemon.log()
        stopping_at = notify.wait_for("STOPPING=1", daemon)
        assert stopping_at > ready_at
    finally:
        notify.close()
    assert_db_closed_cleanly(fl, request)
    trail = [(kind, account) for kind, account, _ in db_events(fl, request)]
    assert trail.index(("account.disabled", target["id"])) < trail.index(("account.enabled", target["id"]))
    assert ("account.disabled", kept["id"]) in trail

    # -- restart on the same data dir, without --accounts: nothing is reseeded (another size is refused: test_worlds)
    again = fl.start(accounts=None).wait_ready()
    rows_again, events_again = cli_round(fl, ("accounts", "list", "--json"), ("events", "--limit", "500", "--json"))
    key = lambda r: (r["id"], r["label"], r["phone_masked"], r["is_probe"])
    assert [key(r) for r in rows_again] == [key(r) for r in rows]
    by_id = {r["id"]: r for r in rows_again}
    assert (by_id[kept["id"]]["state"], by_id[kept["id"]]["disabled_reason"]) == ("disabled", kept_reason)
    assert (by_id[target["id"]]["state"], by_id[target["id"]]["disabled_reason"]) == ("ready", None)
    assert [r["id"] for r in rows_again if r["state"] == "disabled"] == [kept["id"]]
    kinds = [(e["kind"], e["account_id"]) for e in events_again]
    assert sum(k == "fleet.seeded" for k, _ in kinds) == 1, kinds
    assert {("account.disabled", target["id"]), ("account.enabled", target["id"]),
            ("account.disabled", kept["id"])} <= set(kinds)

    # -- SIGINT stops it just as cleanly
    assert again.stop(signal.SIGINT) == 0, again.log()
    assert not fl.socket_path.exists()
    assert "Traceback" not in again.log()
    assert_db_closed_cleanly(fl, request)


def test_second_daemons_are_refused_and_leave_the_first_alone(fl: Fleet) -> None:
    first = fl.start(accounts=10).wait_ready()
    other_socket = fl.root / "other.sock"
    # all three at once: same data dir + other socket, same data dir + same socket, other data dir + same socket
    same_dir = fl.start(accounts=10, socket_path=other_socket)
    same_both = fl.start(accounts=10)
    same_socket = fl.start(accounts=10, data_dir=fl.root / "data2")
    codes = [d.wait_exit() for d in (same_dir, same_both, same_socket)]
    assert all(code != 0 for code in codes), codes

    for refused in (same_dir, same_both):
        line = one_line(refused.log())  # the data dir lock is taken before anything is logged
        assert line.startswith("tgdaemon: ") and "another tgdaemon" in line and "running" in line, line
        assert str(first.pid) in line, line
    assert not other_socket.exists()

    assert "Traceback" not in same_socket.log()
    last = [ln for ln in same_socket.log().splitlines() if ln.strip()][-1]
    assert last.startswith("tgdaemon: ") and "in use by another tgdaemon" in last, last

    # the first daemon still answers on its socket, which nobody removed
    assert fl.socket_path.exists() and socket_answers(fl.socket_path)
    assert cli_json(fl, "status")["pid"] == first.pid
    assert first.stop() == 0, first.log()


def test_too_long_socket_path_says_why(fl: Fleet) -> None:
    daemon = fl.start(accounts=5, socket_path=fl.root / ("s" * 120))
    assert daemon.wait_exit() != 0
    last = [ln for ln in daemon.log().splitlines() if ln.strip()][-1]
    assert "Traceback" not in daemon.log()
    assert last.startswith("tgdaemon: ") and "None" not in last and "too long" in last.lower(), last


def http_status_over_socket(path: Path, timeout: float) -> int:
    """GET /v1/status on the control socket by hand; the HTTP status code, or 0 when nothing came back in time."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        try:
            conn.connect(str(path))
            conn.sendall(b"GET /v1/status HTTP/1.1\r\nHost: tgdaemon\r\nConnection: close\r\n\r\n")
            head = conn.recv(64)
        except TimeoutError:
            return 0
    return int(head.split()[1]) if head.startswith(b"HTTP/1.1 ") else 0


def test_a_slow_notify_reader_does_not_freeze_the_daemon(fl: Fleet) -> None:
    notify_path = fl.root / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as stalled:  # bound, never read
        stalled.bind(str(notify_path))
        daemon = fl.start(accounts=5, env={"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "100000"})
        daemon.wait_ready()
        time.sleep(0.8)  # 16 watchdog pings at 50 ms: more than the queue holds
        assert daemon.returncode is None, daemon.log()
        assert http_status_over_socket(fl.socket_path, timeout=3.0) == 200, "the daemon stopped answering"


def test_sigterm_while_starting_is_a_graceful_stop(fl: Fleet) -> None:
    """The socket answers before the daemon has seeded its fleet and started its side tasks; a SIGTERM
    in that window (a quick `systemctl restart`) must stop it gracefully, not kill it with the signal."""
    daemon = fl.start(accounts=60000)  # seeding 60,000 accounts keeps the window open for a second or more
    deadline = time.monotonic() + 30
    while not daemon.socket_path.exists():
        assert daemon.returncode is None, daemon.log()
        assert time.monotonic() < deadline, "the socket never appeared"
        time.sleep(0.01)
    assert "tgdaemon ready" not in daemon.log()  # still starting: the window this test is about
    assert daemon.stop(timeout=20) == 0, daemon.log()
    assert "tgdaemon stopped" in daemon.log()
