"""Account health and sessions end to end: a real ``tgdaemon run --simulate`` subprocess and the real CLI.

The simulated world decides each account's health from the seed (simworld.health_state: frozen, limited
until a date, limited with no end, dead, or fine) and its sessions (simworld.initial_sessions), so what the
daemon must find is computed here from the same world and compared account by account.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest
from daemon_proc import Fleet, fleet, no_traceback, one_line

from tgdaemon import config
from tgdaemon.classify import classify, classify_code
from tgdaemon.gateway.simulator import Simulator
from tgdaemon.gateway.simworld import initial_sessions
from tgdaemon.lifecycle.datadir import DB_NAME

ACCOUNTS = 30
WORLD = """
[health]
spambot = true
spambot_wait_seconds = 1
{extra}
[simulator]
frozen_fraction = 0.15
limited_fraction = 0.25
dead_fraction = 0.1
flood_wait_rate = 0
peer_flood_rate = 0
transient_rate = 0
"""
EXPECTED_HEALTH = {"ok": "ok", "limited": "limited", "hard_limited": "limited", "frozen": "frozen"}


def world(f: Fleet) -> Simulator:
    """The daemon's simulated world, as this process builds it from the same config."""
    cfg = config.load(f.config, env={}, overrides={"simulator": {"accounts": ACCOUNTS}})
    return Simulator(cfg.simulator)


def expected(sim: Simulator) -> dict[int, str]:
    """Account id (seeding order) -> the health a check must find."""
    return {n: "dead" if a.dead is not None else EXPECTED_HEALTH[sim.health(a.tg_user_id)]
            for n, a in enumerate(sim.accounts, start=1)}


def cli_json(f: Fleet, *args: str) -> Any:
    result = f.cli(*args, "--json", "--socket", str(f.socket_path))
    no_traceback(result)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def fl() -> Iterator[Fleet]:
    with fleet() as f:
        f.config.write_text(WORLD.format(extra=""))
        yield f


def test_accounts_check_finds_each_accounts_health_and_disables_the_frozen_and_dead(fl: Fleet) -> None:
    sim = world(fl)
    want = expected(sim)
    assert {"ok", "limited", "frozen", "dead"} <= set(want.values()), want  # the world has every case
    fl.start(accounts=ACCOUNTS).wait_ready()

    results = cli_json(fl, "accounts", "check", "--all")

    assert [r["account_id"] for r in results] == list(range(1, ACCOUNTS + 1))
    assert {r["account_id"]: (r["outcome"], r["health"]) for r in results} == {
        n: ("checked", health) for n, health in want.items()}
    by_id = {r["account_id"]: r for r in results}
    for n, account in enumerate(sim.accounts, start=1):
        detail, state = by_id[n]["detail"], sim.health(account.tg_user_id)
        if account.dead is not None:
            code = classify(account.dead(request=None)).code
            assert list(detail) == ["error"] and detail["error"].startswith(f"{code} (dead_account)"), detail
        elif state == "frozen":
            assert set(detail) == {"frozen_since", "frozen_until", "appeal_url"} and detail["frozen_since"]
        else:
            assert detail["sessions"] == len(initial_sessions(sim.cfg.seed, account, 0.0)), account.label
            assert detail["spambot"] == ("free" if state == "ok" else "limited"), account.label
            assert bool(detail.get("limited_until")) == (state == "limited"), (account.label, detail)

    listed = {a["id"]: a for a in cli_json(fl, "accounts", "list")}
    for n, health in want.items():
        a = listed[n]
        assert a["health"] == health and a["health_checked_at"] is not None
        assert a["health_detail"] == by_id[n]["detail"]
        if health == "frozen":
            assert a["state"] == "disabled" and a["disabled_reason"].startswith("FROZEN (since ")
        elif health == "dead":
            assert a["state"] == "disabled" and a["disabled_reason"] == a["last_error_code"]
            assert classify_code(a["disabled_reason"]).kind == "dead_account"
        else:
            assert a["state"] == "ready", a
    limited = [a["id"] for a in cli_json(fl, "accounts", "list", "--health", "limited")]
    assert limited == [n for n, h in want.items() if h == "limited"]

    # one line per account for people; bad arguments are one line and exit 2; an unknown account, exit 1
    ok_ids = [str(n) for n, h in want.items() if h == "ok"][:2]
    human, none, unknown = fl.cli_many(("accounts", "check", *ok_ids, "--socket", str(fl.socket_path)),
                                       ("accounts", "check", "--socket", str(fl.socket_path)),
                                       ("accounts", "check", "9999", "--socket", str(fl.socket_path)))
    lines = human.stdout.splitlines()
    assert human.returncode == 0 and len(lines) == 2, human.stdout + human.stderr
    for line, n in zip(lines, ok_ids, strict=True):
        assert line.startswith(f"{n} sim-") and ": ok (" in line and "@SpamBot: free" in line, line
    assert none.returncode == 2 and "IDs or --all" in one_line(none.stderr)
    assert unknown.returncode == 1 and one_line(unknown.stderr) == "tgdaemon: account 9999: no such account"
    for result in (human, none, unknown):
        no_traceback(result)


def test_accounts_sessions_lists_the_accounts_authorizations_with_its_own_marked(fl: Fleet) -> None:
    sim = world(fl)
    want = expected(sim)
    fl.start(accounts=ACCOUNTS).wait_ready()
    n = next(n for n, h in want.items() if h == "ok" and len(initial_sessions(sim.cfg.seed, sim.accounts[n - 1],
                                                                                0.0)) > 2)
    account = sim.accounts[n - 1]
    made = initial_sessions(sim.cfg.seed, account, 0.0)

    sessions = cli_json(fl, "accounts", "sessions", str(n))

    assert [(s["device_model"], s["app_name"], s["app_version"], s["platform"], s["country"]) for s in sessions] == [
        (s.device_model, s.app_name, s.app_version, s.platform, s.country) for s in made]
    assert [s["current"] for s in sessions] == [True] + [False] * (len(made) - 1)
    assert all(s["created"] and s["active"] for s in sessions)
    human = fl.cli("accounts", "sessions", str(n), "--socket", str(fl.socket_path))
    assert human.returncode == 0, human.stderr
    rows = [line for line in human.stdout.splitlines() if line.strip()]
    assert rows[0].split()[:3] == ["DEVICE", "APP", "PLATFORM"]
    assert rows[1].startswith("*") and "tgfleet" in rows[1]
    assert rows[-1] == f"* this daemon's own session; {len(made) - 1} others"

    frozen = next(n for n, h in want.items() if h == "frozen")  # account methods refuse a frozen account
    refused = fl.cli("accounts", "sessions", str(frozen), "--socket", str(fl.socket_path))
    assert refused.returncode == 1 and "FROZEN_METHOD_INVALID" in one_line(refused.stderr)
    no_traceback(refused)
    [frozen_now] = [a for a in cli_json(fl, "accounts", "list") if a["id"] == frozen]
    assert frozen_now["state"] == "disabled" and frozen_now["disabled_reason"] == "FROZEN_METHOD_INVALID"


def checked_at(f: Fleet) -> dict[int, float | None]:
    db = sqlite3.connect(f.data_dir / DB_NAME, timeout=10)
    try:
        return dict(db.execute("SELECT id, health_checked_at FROM accounts").fetchall())
    finally:
        db.close()


def test_the_scheduled_check_takes_every_account_of_the_node_and_again_after_the_interval() -> None:
    with fleet() as f:
        f.config.write_text(WORLD.format(extra="interval_hours = 0.001"))  # 3.6 s; the node looks every 0.36 s
        want = expected(world(f))
        f.start(accounts=ACCOUNTS).wait_ready()
        first: dict[int, float | None] = {}
        for _ in range(300):  # bounded: 30 s
            first = checked_at(f)
            if all(first.values()):
                break
            time.sleep(0.1)
        assert all(first.values()), first
        listed = {a["id"]: a["health"] for a in cli_json(f, "accounts", "list")}
        assert listed == want
        live = [n for n, h in want.items() if h in ("ok", "limited")]  # disabled ones are not checked again
        again: dict[int, float | None] = {}
        for _ in range(300):
            again = checked_at(f)
            if all(again[n] > first[n] for n in live):  # type: ignore[operator]
                break
            time.sleep(0.1)
        assert all(again[n] > first[n] for n in live), (first, again)  # type: ignore[operator]
        assert all(again[n] == first[n] for n in want if n not in live)
