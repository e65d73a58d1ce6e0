"""The CLI as a script meets it: --json on every command, exit codes, the errors of bad arguments, help on every
option, --version, and completion scripts that bash, zsh and fish load.

One daemon (SQLite, the simulator) serves the whole module; the commands of a test run as one batch.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from daemon_proc import Fleet, fleet, no_traceback, one_line

from tgdaemon.cli import root_parser

QUOTA = ("--target", "@tgfleet_news", "--action", "post_stats", "--quantity", "5", "--expires-in", "1d")


@pytest.fixture(scope="module")
def live() -> Iterator[Fleet]:
    """A daemon with 6 accounts, a quota (id 1), a provider ``old`` to revoke and setup tasks (setup:1 among them)."""
    with fleet() as f:
        # No injected faults: every command here must end as its row says, whatever the order of the calls.
        quiet = {f"TGFLEET_SIMULATOR__{k}": "0" for k in ("FLOOD_WAIT_RATE", "PEER_FLOOD_RATE", "TRANSIENT_RATE")}
        f.start(accounts=6, env=quiet).wait_ready()
        sock = ("--socket", str(f.socket_path))
        for result in f.cli_many(("quotas", "add", "--name", "first", *QUOTA, *sock),
                                 ("providers", "add", "old", *sock), ("setup", "dispatch", *sock)):
            assert result.returncode == 0, result.stderr
        yield f


Leaves = dict[tuple[str, ...], argparse.ArgumentParser]


def leaf_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Leaves:
    """Every runnable command (a group's actions, not the group) and its parser."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {path: parser}
    found: Leaves = {}
    for name, child in subs[0].choices.items():
        found |= leaf_commands(child, (*path, name))
    return found


def json_error(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    """A failed --json command's stderr: exactly one JSON object, whose code is the exit code; nothing on stdout
    but the answer, if the command has one to give before failing."""
    no_traceback(result)
    error = json.loads(one_line(result.stderr))
    assert set(error) <= {"error", "code", "reason"} and error["error"], error
    assert error["code"] == result.returncode != 0, (error, result.returncode)
    return error


def invocations(live: Fleet, tmp: Path) -> dict[tuple[str, ...], tuple[tuple[str, ...], int]]:
    """For every command: arguments that run it under --json against the live daemon, and the exit code they
    must end with (a command that cannot succeed here, such as ``run`` or ``demo``, is run to one of its errors)."""
    broken = tmp / "broken.txt"
    broken.write_text("not a session string\n")
    node = json.loads(live.cli("status", "--json", "--socket", str(live.socket_path)).stdout)["node"]
    return {
        ("run",): (("--config", str(tmp / "missing.toml")), 2),
        ("demo",): (("--accounts", "0"), 2),
        ("status",): ((), 0),
        ("accounts", "list"): (("--limit", "3"), 0),
        ("accounts", "disable"): (("6", "--reason", "json test"), 0),
        ("accounts", "enable"): (("5",), 0),
        ("accounts", "login"): (("+15550001234",), 1),  # the simulator refuses logins (409)
        ("accounts", "import"): (("--dry-run", str(broken)), 1),
        ("accounts", "set-device"): (("4", "--device-model", "Pixel 7"), 0),
        ("accounts", "show"): (("1",), 0),
        ("accounts", "export"): (("1", "--format", "telethon-string", "--to", str(tmp / "out")), 1),
        ("accounts", "retry"): (("1",), 0),
        ("accounts", "assign"): (("2", "--executor", "local"), 0),
        ("accounts", "pin"): (("3", "--node", node), 0),
        ("accounts", "unpin"): (("2",), 0),
        ("accounts", "check"): (("1",), 0),
        ("accounts", "sessions"): (("2",), 0),
        ("setup", "dispatch"): ((), 0),
        ("tasks", "list"): ((), 0),
        ("tasks", "show"): (("setup:1",), 0),
        ("tasks", "retry"): (("--status", "failed", "--queue", "media", "--dry-run"), 0),
        ("quotas", "add"): (("--name", "second", *QUOTA), 0),
        ("quotas", "list"): ((), 0),
        ("quotas", "pause"): (("1",), 0),
        ("quotas", "resume"): (("1",), 0),
        ("quotas", "export"): (("1",), 0),
        ("providers", "add"): (("new",), 0),
        ("providers", "list"): ((), 0),
        ("providers", "revoke"): (("old",), 0),
        ("nodes", "list"): ((), 0),
        ("proxies", "add"): (("socks5://user:pw@127.0.0.1:9",), 0),
        ("proxies", "list"): ((), 0),
        ("proxies", "check"): (("99999",), 1),  # no such proxy
        ("proxies", "remove"): (("99999",), 1),
        ("accounts", "set-proxy"): (("3", "none"), 0),
        ("backup",): ((str(tmp / "b.sqlite3"),), 0),
        ("events",): (("--limit", "5"), 0),
        ("store", "copy"): (("--from", "nosuch://x", "--to", f"sqlite://{tmp / 'copy.sqlite3'}"), 2),
        ("completion",): (("bash",), 0),
    }


def test_json_on_every_command_parses_and_exit_codes_match(live: Fleet, tmp_path: Path) -> None:
    table = invocations(live, tmp_path)
    assert set(table) == set(leaf_commands(root_parser())), "a command without a --json case here"
    sock = ("--socket", str(live.socket_path))
    calls = [(*words, *args, "--json", *(() if words[0] in ("run", "demo", "store", "completion") else sock))
             for words, (args, _) in table.items()]
    for (words, (_, code)), result in zip(table.items(), live.cli_many(*calls), strict=True):
        assert result.returncode == code, f"{words}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        if code == 0:
            no_traceback(result)
            json.loads(result.stdout)
            assert result.stdout.endswith("\n")
            assert '"error"' not in result.stderr, result.stderr
        else:
            json_error(result)
            if result.stdout:  # an answer, then the error: import --dry-run lists what it found broken
                assert json.loads(result.stdout)["broken"], result.stdout


def test_json_errors_before_or_after_the_command_are_one_object(live: Fleet) -> None:
    sock = ("--socket", str(live.socket_path))
    usage, missing, daemon_400, bare, group = live.cli_many(
        ("--json", "accounts", "disable", "1"),  # argparse: --reason missing
        ("accounts", "show", "99999", "--json", *sock),  # the daemon's 404
        ("quotas", "add", "--name", "x", "--target", "not a link!", "--action", "post_stats", "--quantity", "1",
         "--expires-in", "1d", "--json", *sock),  # the daemon's 400: a bad argument, exit 2
        ("--json",),
        ("accounts", "--json"),
    )
    assert "--reason" in str(json_error(usage)["error"]) and usage.returncode == 2
    assert json_error(missing) == {"error": "account 99999: no such account", "code": 1, "reason": "not_found"}
    refused = json_error(daemon_400)
    assert refused["code"] == 2 and refused["reason"] == "invalid_target", refused
    assert json_error(bare)["code"] == 2 and json_error(group)["code"] == 2


def test_bad_arguments_exit_2_with_one_line(live: Fleet) -> None:
    sock = ("--socket", str(live.socket_path))
    add = ("quotas", "add", "--name", "q", "--target", "@tgfleet_news", "--quantity", "1", *sock)
    blank, spaces, bare_seconds, bare_interval, last_n, not_a_link, to_a_file = live.cli_many(
        ("accounts", "disable", "1", "--reason", "", *sock),
        ("accounts", "disable", "1", "--reason", "   ", *sock),
        (*add, "--action", "post_stats", "--expires-in", "90"),
        (*add, "--action", "post_stats", "--expires-in", "1d", "--interval", "60"),
        (*add, "--action", "channel_stats", "--last-n", "5", "--expires-in", "1d"),
        ("quotas", "add", "--name", "q", "--target", "not a link!", "--action", "post_stats", "--quantity", "1",
         "--expires-in", "1d", *sock),
        ("accounts", "export", "1", "--format", "pyrogram", "--to", str(live.config), *sock),
    )
    for result, words in ((blank, ("--reason", "blank")), (spaces, ("--reason", "blank")),
                          (bare_seconds, ("--expires-in", "'90'", "90s", "90d")),
                          (bare_interval, ("--interval", "60s"))):
        assert result.returncode == 2, result.stderr
        no_traceback(result)
        line = [ln for ln in result.stderr.splitlines() if "error:" in ln]
        assert len(line) == 1 and all(w in line[0] for w in words), result.stderr
    for result, text in ((last_n, "--last-n applies to post_stats only, not channel_stats"),
                         (not_a_link, "not a public link"), (to_a_file, f"--to {live.config}: not a folder")):
        assert result.returncode == 2 and result.stdout == "", result.stderr
        assert text in one_line(result.stderr)
    quotas = json.loads(live.cli("quotas", "list", "--json", *sock).stdout)
    assert "q" not in [q["name"] for q in quotas]  # nothing was added by a refused command


def test_unknown_ids_say_no_such_thing(live: Fleet) -> None:
    sock = ("--socket", str(live.socket_path))
    account_calls = [("tasks", "list", "--account", "99999"), ("events", "--account", "99999"),
                     ("accounts", "show", "99999"), ("accounts", "enable", "99999"),
                     ("accounts", "disable", "99999", "--reason", "r"), ("accounts", "retry", "99999"),
                     ("accounts", "sessions", "99999"), ("accounts", "check", "99999"),
                     ("accounts", "set-device", "99999", "--device-model", "X"),
                     ("accounts", "assign", "99999", "--executor", "local"), ("accounts", "unpin", "99999"),
                     ("accounts", "export", "99999", "--format", "telethon-string", "--to", str(live.root / "x"))]
    quota_calls = [("quotas", "pause", "99999"), ("quotas", "resume", "99999"), ("quotas", "export", "99999")]
    results = live.cli_many(*[(*c, *sock) for c in account_calls + quota_calls])
    for call, result in zip(account_calls + quota_calls, results, strict=True):
        thing = "quota" if call[0] == "quotas" else "account"
        assert result.returncode == 1 and result.stdout == "", f"{call}: {result.returncode} {result.stdout}"
        no_traceback(result)
        line = one_line(result.stderr)
        assert f"no such {thing}" in line and "99999" in line, f"{call}: {line}"


def test_tasks_commands_refuse_bad_arguments_and_unknown_tasks(live: Fleet) -> None:
    sock = ("--socket", str(live.socket_path))
    filtered, unknown, everything, both, bad_key, bad_queue, listed, shown = live.cli_many(
        ("tasks", "list", "--kind", "setup", "--status", "pending", "--queue", "fast", "--json", *sock),
        ("tasks", "show", "setup:99999", *sock),
        ("tasks", "retry", "--kind", "setup", *sock),
        ("tasks", "retry", "setup:1", "--status", "failed", *sock),
        ("tasks", "show", "queued:1", *sock),
        ("tasks", "retry", "--queue", "slow", *sock),
        ("tasks", "list", "--type", "update_name", *sock),
        ("tasks", "show", "setup:1", *sock),
    )
    assert filtered.returncode == 0, filtered.stderr
    rows = json.loads(filtered.stdout)
    assert rows and {(t["kind"], t["status"], t["queue"]) for t in rows} == {("setup", "pending", "fast")}
    assert unknown.returncode == 1 and "task setup:99999: no such task" in one_line(unknown.stderr)
    for result, text in ((everything, "it never retries every task"), (both, "ids or a filter, not both"),
                         (bad_key, "not a task: 'queued:1'"), (bad_queue, "queue: expected fast, media")):
        assert result.returncode == 2 and result.stdout == "", (result.returncode, result.stderr)
        no_traceback(result)
        assert text in result.stderr.strip().splitlines()[-1], result.stderr
    assert listed.returncode == 0 and "update_name" in listed.stdout and "fast:" in listed.stdout
    assert shown.returncode == 0 and "setup:1" in shown.stdout, shown.stderr


def test_quotas_add_compound_durations_duplicate_names_and_the_json_export_newline(live: Fleet) -> None:
    sock = ("--socket", str(live.socket_path))
    added = live.cli("quotas", "add", "--name", "first", "--target", "@tgfleet_news", "--action", "post_stats",
                     "--quantity", "5", "--interval", "1h30m", "--expires-in", "2d12h", "--json", *sock)
    assert added.returncode == 0, added.stderr
    quota = json.loads(added.stdout)
    assert quota["name"] == "first" and quota["interval_seconds"] == 5400
    note = one_line(added.stderr)  # the name was taken by the fixture's quota 1: said, and added all the same
    assert note == f"tgdaemon: note: quota {quota['id']} is named 'first', as quota 1 already is", note
    listed, exported, as_json = live.cli_many(("quotas", "list", "--json", *sock),
                                              ("quotas", "export", str(quota["id"]), "--format", "json", *sock),
                                              ("quotas", "export", str(quota["id"]), "--json", *sock))
    by_id = {q["id"]: q for q in json.loads(listed.stdout)}
    assert by_id[quota["id"]]["expires_at"] == quota["expires_at"] and by_id[1]["name"] == "first"
    for result in (exported, as_json):
        assert result.returncode == 0 and result.stdout.endswith("]}\n"), result.stdout
        # the local executor may have measured the new quota already: its rows, whatever their number
        assert all(set(m) >= {"observed_at", "post_id", "task_id"} for m in json.loads(result.stdout)["measurements"])


def test_an_expired_quota_is_listed_expired_and_pause_or_resume_is_refused(live: Fleet) -> None:
    sock = ("--socket", str(live.socket_path))
    added = live.cli("quotas", "add", "--name", "brief", *QUOTA[:-2], "--expires-in", "1s", "--json", *sock)
    assert added.returncode == 0, added.stderr
    qid = json.loads(added.stdout)["id"]
    for _ in range(50):  # bounded: its second runs out while we look
        [quota] = [q for q in json.loads(live.cli("quotas", "list", "--json", *sock).stdout) if q["id"] == qid]
        if quota["state"] == "expired":
            break
        time.sleep(0.1)
    assert (quota["state"], quota["paused"]) == ("expired", False), quota
    pause, resume, as_json, table, listed = live.cli_many(
        ("quotas", "pause", str(qid), *sock), ("quotas", "resume", str(qid), *sock),
        ("quotas", "pause", str(qid), "--json", *sock), ("quotas", "list", *sock), ("quotas", "list", "--json", *sock))
    for result, verb in ((pause, "pause"), (resume, "resume")):
        assert (result.returncode, result.stdout) == (1, ""), result
        no_traceback(result)
        assert one_line(result.stderr).endswith(
            f"quota {qid} expired at {quota['expires_at']}: there is nothing to {verb}"), result.stderr
    error = json_error(as_json)
    assert (error["code"], error["reason"]) == (1, "conflict") and "nothing to pause" in str(error["error"]), error
    [row] = [line.split() for line in table.stdout.splitlines() if line.split()[:1] == [str(qid)]]
    assert row[1:3] == ["brief", "expired"], table.stdout
    assert [(q["state"], q["paused"]) for q in json.loads(listed.stdout) if q["id"] == qid] == [("expired", False)]


def test_version_from_the_installed_metadata(tmp_path: Path) -> None:
    installed = metadata.version("tgfleet")
    for prog in ("tgdaemon", "tgtui"):
        result = subprocess.run([sys.executable, "-m", prog, "--version"], capture_output=True, text=True, timeout=60,
                                stdin=subprocess.DEVNULL, check=False)
        assert result.returncode == 0 and result.stdout == f"{prog} {installed}\n", result


def test_every_option_and_argument_has_help() -> None:
    parser = root_parser()
    missing = [f"{' '.join(words)} {action.option_strings or action.dest}"
               for words, leaf in leaf_commands(parser).items() for action in leaf._actions
               if not action.help or action.help == argparse.SUPPRESS]
    assert missing == []
    assert len(leaf_commands(parser)) > 30  # the walk reached the actions of every group


LOAD = {  # each shell reads the script and then has a completion for tgdaemon (bash and fish: it completes `acc`)
    "bash": ["bash", "-c", 'source "$0" && complete -p tgdaemon && COMP_WORDS=(tgdaemon acc) COMP_CWORD=1'
                           ' COMP_LINE="tgdaemon acc" COMP_POINT=12 && _shtab_tgdaemon tgdaemon acc tgdaemon'
                           ' && echo "${COMPREPLY[@]}"'],
    "zsh": ["zsh", "-c", 'autoload -Uz compinit && compinit -u -d "$0.zcompdump" && eval "$(<$0)"'
                         ' && print -r -- $_comps[tgdaemon]'],
    "fish": ["fish", "-c", 'source $argv[1]; and complete -C "tgdaemon acc"', "--"],
}


@pytest.mark.parametrize("shell", sorted(LOAD))
def test_completion_scripts_load_in_their_shell(shell: str, tmp_path: Path) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed here (`which {shell}` finds nothing)")
    made = subprocess.run([sys.executable, "-m", "tgdaemon", "completion", shell], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, check=False)
    assert made.returncode == 0 and made.stderr == "", made.stderr
    script = tmp_path / f"tgdaemon.{shell}"
    script.write_text(made.stdout)
    assert "accounts" in made.stdout and "quotas" in made.stdout
    loaded = subprocess.run([*LOAD[shell], str(script)], capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL, check=False, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert loaded.returncode == 0 and loaded.stderr == "", (loaded.returncode, loaded.stdout, loaded.stderr)
    expected = {"bash": ["complete -o bashdefault -F _shtab_tgdaemon tgdaemon", "accounts"],
                "zsh": ["_shtab_tgdaemon"], "fish": ["accounts\tlist, check, disable"]}[shell]
    assert all(any(line.startswith(e) for line in loaded.stdout.splitlines()) for e in expected), loaded.stdout
