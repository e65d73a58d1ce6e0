"""The CLI's tables say times as the dashboard does (``in 23h``, ``3m ago``, ``never``), and ``--json`` keeps
the daemon's ISO times; against a real daemon subprocess on the simulator."""

from __future__ import annotations

import json
import re

from daemon_proc import fleet

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def test_tables_say_times_against_now_and_json_keeps_them_whole() -> None:
    with fleet() as f:
        f.start(accounts=3).wait_ready()
        sock = ("--socket", str(f.socket_path))
        added = f.cli("quotas", "add", "--name", "times", "--target", "@tgfleet_news", "--action", "post_stats",
                      "--quantity", "5", "--expires-in", "1d", "--interval", "2h", *sock)
        assert added.returncode == 0, added.stderr
        f.cli("quotas", "pause", added.stdout.strip(), *sock)  # no next run to race with the listing
        listed, as_json, provider = f.cli_many(("quotas", "list", *sock), ("quotas", "list", "--json", *sock),
                                               ("providers", "add", "prov-t", *sock))
        assert provider.returncode == 0, provider.stderr
        assert listed.returncode == as_json.returncode == 0, listed.stderr + as_json.stderr
        row = next(line for line in listed.stdout.splitlines() if " times " in line)
        assert re.search(r" in 23h( \d+m)? ", row), row  # EXPIRES: in 23h 59m, never an ISO time in the table
        assert not ISO.search(listed.stdout)
        [quota] = [q for q in json.loads(as_json.stdout) if q["name"] == "times"]
        assert ISO.fullmatch(quota["expires_at"]) and ISO.fullmatch(quota["created_at"])

        shown = f.cli("providers", "list", *sock)
        assert shown.returncode == 0, shown.stderr
        line = next(line for line in shown.stdout.splitlines() if line.startswith("prov-t"))
        assert re.search(r"^prov-t +(just now|\d+s ago) +never *$", line), line
        raw = json.loads(f.cli("providers", "list", "--json", *sock).stdout)
        assert ISO.fullmatch(raw[0]["created_at"]) and raw[0]["last_seen_at"] is None
