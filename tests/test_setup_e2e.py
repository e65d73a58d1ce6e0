"""Issue 4, crash safety: a real ``tgdaemon run --simulate`` subprocess killed mid-run, and stopped mid-run.

The simulator answers in 50-150 ms, so tasks are in flight when the signal
lands. What happened is read from the data dir's SQLite file (the events table,
in id order) with the daemon's own schema; the simulated Telegram lives in the
daemon's memory, so a restarted daemon meets a fresh one, and its tasks must
still converge.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_proc import Fleet, fleet
from PIL import Image
from test_setup import check_intervals

from tgdaemon.lifecycle.datadir import DB_NAME

ACCOUNTS = 20
TYPES = {"ensure_2fa", "update_name", "privacy_phone_hidden", "privacy_last_seen_everybody", "set_photo_jpg",
         "story_image"}
LIMITS = {"fast": 6, "media": 6}
SLOW = {"TGFLEET_SIMULATOR__LATENCY_MIN_MS": "50", "TGFLEET_SIMULATOR__LATENCY_MAX_MS": "150"}


def config(root: Path) -> str:
    jpg, png = root / "avatar.jpg", root / "story.png"
    Image.new("RGB", (640, 480), "teal").save(jpg, "JPEG")
    Image.new("RGB", (720, 1280), "navy").save(png, "PNG")
    return f"""
[setup]
enabled = true
[setup.retry]
backoff_seconds = [0.1]
max_attempts = 50
[setup.queues]
fast_concurrency = {LIMITS["fast"]}
media_concurrency = {LIMITS["media"]}
[setup.profile]
first_name = "Fleet"
last_name = "Crash"
[setup.media]
default_jpg_path = "{jpg}"
story_image_path = "{png}"
[limits]
flood_wait_jitter_seconds = 0
peer_flood_cooldown_seconds = 1
[simulator]
dead_fraction = 0.0
flood_wait_rate = 0.02
flood_wait_max_seconds = 1
peer_flood_rate = 0.005
transient_rate = 0.03
"""


@pytest.fixture
def fl() -> Iterator[Fleet]:
    with fleet() as f:
        f.config.write_text(config(f.root))
        yield f


def query(f: Fleet, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    db = sqlite3.connect(f.data_dir / DB_NAME, timeout=10)
    db.row_factory = sqlite3.Row
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def tasks(f: Fleet) -> list[sqlite3.Row]:
    return query(f, "SELECT id, account_id, task_type, status, attempts FROM account_tasks ORDER BY id")


def events(f: Fleet) -> list[dict[str, Any]]:
    rows = query(f, "SELECT id, kind, account_id, task_id, data_json FROM events WHERE kind LIKE 'setup.%' ORDER BY id")
    return [{**dict(r), "data": json.loads(r["data_json"])} for r in rows]


def wait_db(f: Fleet, check: Any, what: str, timeout: float = 25.0) -> Any:
    """Poll the data dir until ``check(tasks)`` is truthy; bounded in count and in time."""
    deadline = time.monotonic() + timeout
    last: Any = None
    for _ in range(int(timeout / 0.05) + 1):
        rows = tasks(f)
        if last := check(rows):
            return last
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}; statuses: "
                f"{sorted(r['status'] for r in tasks(f))}")


def mid_run(rows: list[sqlite3.Row]) -> list[sqlite3.Row] | None:
    """Some tasks done, some in flight, most still to do: the rows, else None."""
    done = sum(r["status"] == "done" for r in rows)
    running = sum(r["status"] == "running" for r in rows)
    return rows if rows and len(rows) // 6 <= done <= len(rows) // 2 and running >= 2 else None


def expected_accounts(f: Fleet) -> set[int]:
    return {r["id"] for r in query(f, "SELECT id FROM accounts WHERE is_probe = 0")}


def test_kill_9_mid_run_then_restart_loses_nothing(fl: Fleet) -> None:
    first = fl.start(accounts=ACCOUNTS, env=SLOW).wait_ready()
    wait_db(fl, mid_run, "a run with some tasks done and some running")
    first.proc.send_signal(signal.SIGKILL)
    assert first.wait_exit() == -signal.SIGKILL

    at_kill = tasks(fl)
    running = {r["id"] for r in at_kill if r["status"] == "running"}
    done_before = {r["id"] for r in at_kill if r["status"] == "done"}
    assert running, "nothing was in flight when the daemon was killed"
    assert done_before and len(done_before) < len(at_kill)
    last_event = max(e["id"] for e in events(fl))
    # the lock rows of the killed tasks are still there: only recovery (or their expiry) frees them
    held = {r["holder"] for r in query(fl, "SELECT holder FROM account_locks")}
    assert held == {f"setup:{t}" for t in running}

    second = fl.start(accounts=ACCOUNTS, env=SLOW).wait_ready()
    final = wait_db(fl, lambda rows: rows if rows and all(r["status"] == "done" for r in rows) else None,
                    "every task done after the restart")
    assert second.stop() == 0

    # no task lost: every account that should converge has exactly one of each required task, all done
    by_account: dict[int, set[str]] = {}
    for r in final:
        by_account.setdefault(r["account_id"], set()).add(r["task_type"])
    assert by_account == dict.fromkeys(expected_accounts(fl), TYPES)
    assert len(final) == len(at_kill) == (ACCOUNTS - 1) * len(TYPES)

    log = events(fl)
    # each task left running went back to retry, with one setup.recovered event each, and ran again
    recovered = [e["task_id"] for e in log if e["kind"] == "setup.recovered"]
    assert sorted(recovered) == sorted(running)
    after = [e for e in log if e["id"] > last_event]
    restarted = {e["task_id"] for e in after if e["kind"] == "setup.started"}
    assert running <= restarted
    # what was done stayed done: never started again
    assert not done_before & restarted
    # never two tasks of one account at once, never more per queue than its limit, across the kill
    spans = check_intervals(log, LIMITS)
    assert spans.still_running == {}
    assert fl.daemons[1].log().count("Traceback") == 0


def test_sigterm_mid_run_exits_0_and_leaves_nothing_running(fl: Fleet) -> None:
    daemon = fl.start(accounts=ACCOUNTS, env=SLOW).wait_ready()
    snapshot = wait_db(fl, mid_run, "a run with some tasks done and some running")
    in_flight = {r["id"] for r in snapshot if r["status"] == "running"}
    assert daemon.stop(signal.SIGTERM) == 0
    assert "Traceback" not in daemon.log()

    after = {r["id"]: r for r in tasks(fl)}
    assert [r["id"] for r in after.values() if r["status"] == "running"] == []
    assert all(after[t]["status"] in ("done", "retry") for t in in_flight)
    assert query(fl, "SELECT holder FROM account_locks WHERE holder LIKE 'setup:%'") == []
    spans = check_intervals(events(fl), LIMITS)
    assert spans.still_running == {}
    # a clean stop leaves nothing for the next start to recover
    assert [e for e in events(fl) if e["kind"] == "setup.recovered"] == []
