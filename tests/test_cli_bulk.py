"""Several ids and filters on the command line against a real daemon: ``accounts disable --state … --search …``
acts on what ``accounts list`` shows with the same options, ``--dry-run`` prints what would change and changes
nothing, a filterless action needs ``--all``, and an unknown id among several is "no such account"."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from daemon_proc import Fleet, fleet, no_traceback, one_line

ACCOUNTS = 30


@pytest.fixture(scope="module")
def live() -> Iterator[Fleet]:
    with fleet() as f:
        quiet = {f"TGFLEET_SIMULATOR__{k}": "0" for k in ("FLOOD_WAIT_RATE", "PEER_FLOOD_RATE", "TRANSIENT_RATE")}
        f.start(accounts=ACCOUNTS, env=quiet).wait_ready()
        yield f


def accounts(live: Fleet, *args: str) -> list[dict[str, object]]:
    result = live.cli("accounts", "list", "--json", *args, "--socket", str(live.socket_path))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_filter_acts_on_what_the_listing_shows_and_a_dry_run_only_says_so(live: Fleet) -> None:
    sock = ("--socket", str(live.socket_path))
    shown = [a["id"] for a in accounts(live, "--state", "ready", "--search", "sim-001")]
    assert len(shown) == 10
    dry = live.cli("accounts", "disable", "--state", "ready", "--search", "sim-001", "--reason", "maintenance",
                   "--dry-run", *sock)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0].split() == ["ID", "LABEL"]
    assert [int(line.split()[0]) for line in lines[1:-1]] == shown
    assert lines[-1] == "would disable 10 accounts"
    assert not [a for a in accounts(live) if a["state"] == "disabled"]  # the dry run wrote nothing

    done = live.cli("accounts", "disable", "--state", "ready", "--search", "sim-001", "--reason", "maintenance", *sock)
    assert (done.returncode, done.stdout) == (0, "disabled 10 accounts\n"), done.stderr
    disabled = accounts(live, "--state", "disabled")
    assert [a["id"] for a in disabled] == shown and {a["disabled_reason"] for a in disabled} == {"maintenance"}

    again = live.cli("accounts", "disable", *map(str, shown[:3]), "1", "--reason", "x", *sock)
    assert (again.returncode, again.stdout) == (0, "disabled 1 account; 3 already disabled\n"), again.stderr
    enabled = live.cli("accounts", "enable", "--state", "disabled", "--json", *sock)
    answer = json.loads(enabled.stdout)
    assert (answer["action"], answer["dry_run"], answer["matched"], answer["changed"]) == ("enable", False, 11, 11)
    live.cli("accounts", "enable", "--all", *sock)
    assert not [a for a in accounts(live) if a["state"] == "disabled"]


def test_a_dry_run_of_every_account_and_a_filterless_action_that_needs_all(live: Fleet) -> None:
    sock = ("--socket", str(live.socket_path))
    bare, everyone, as_json = live.cli_many(("accounts", "disable", "--reason", "r", *sock),
                                            ("accounts", "disable", "--all", "--reason", "r", "--dry-run", *sock),
                                            ("accounts", "retry", "--all", "--dry-run", "--json", *sock))
    assert (bare.returncode, bare.stdout) == (2, ""), bare
    no_traceback(bare)
    assert "--all" in one_line(bare.stderr)
    assert everyone.returncode == 0 and everyone.stdout.splitlines()[-1] == f"would disable {ACCOUNTS} accounts"
    plan = json.loads(as_json.stdout)
    assert (plan["dry_run"], plan["matched"]) == (True, ACCOUNTS)
    assert plan["tasks"] == 0 and plan["changed"] == len(plan["would_change"])
    assert not [a for a in accounts(live) if a["state"] == "disabled"]


def test_an_unknown_id_among_several_is_no_such_account_and_nothing_changes(live: Fleet) -> None:
    sock = ("--socket", str(live.socket_path))
    results = live.cli_many(("accounts", "disable", "2", "99999", "3", "--reason", "r", *sock),
                            ("accounts", "enable", "2", "99999", *sock), ("accounts", "retry", "99999", "4", *sock),
                            ("quotas", "pause", "99998", "99999", *sock))
    for result, thing in zip(results, ("account 99999", "account 99999", "account 99999", "quota 99998"),
                             strict=True):
        assert (result.returncode, result.stdout) == (1, ""), result
        no_traceback(result)
        assert one_line(result.stderr) == f"tgdaemon: {thing}: no such {thing.split()[0]}"
    assert [a["state"] for a in accounts(live, "--search", "sim-0002")] != ["disabled"]
