"""Import of every session format, --dry-run, --save-2fa, set-device, show and export, end to end: the real
CLI as a subprocess against a real daemon on the real Telethon gateway, whose clients' network is tgscript's
(tests/test_onboarding.py's FleetGateway: an import check's get_me answers with the user of the session's
auth key). The files are made by the tests (tests/test_sessionfiles.py's helpers, tests/tdata_writer.py).
The simulator takes no imports (it seeds its own accounts: test_onboarding checks that refusal), so the
import path runs on this gateway, as the existing import tests do.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import sqlite3
import stat
import tomllib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pgtest
import pytest
import tdata_writer as tdw
import tgscript as ts
from conftest import STOP_TIMEOUT, build_config, start_in_process
from daemon_proc import fleet, isolated_env, no_traceback, one_line
from telethon.sessions import SQLiteSession, StringSession
from telethon.tl import functions
from test_onboarding import (
    FleetGateway,
    Tg,
    assert_no_secret,
    one_error,
    secrets_of,
    user_for,
)
from test_sessionfiles import pyrogram_file, pyrogram_string, telethon_file

from tgdaemon.config import TwoFAConfig
from tgdaemon.control.client import ControlClient
from tgdaemon.errors import ApiError
from tgdaemon.gateway.base import AccountRef
from tgdaemon.lifecycle.daemon import Daemon
from tgdaemon.sessionfiles.dcs import PRODUCTION
from tgdaemon.setup.secrets import PasswordSource
from tgdaemon.store import Device, mask_phone

HASH = "b18441a1ff607e10a989891a5462e627"
OTHER_HASH = "fedcba9876543210fedcba9876543210"
PASSWORD = "sidecar 2FA: tr0ub4dor&3"
FLEET = {"device_model": "fleet-box", "system_version": "Linux 6.1", "app_version": "tgfleet 9", "lang_code": "en",
         "system_lang_code": "en-GB"}


@pytest.fixture
def fleet_factory(tmp_path: Path, short_dir: Path, caplog: pytest.LogCaptureFixture) -> Callable[..., Any]:
    """``async with fleet_factory(password_file=...) as tg``: test_onboarding's daemon, with a password file."""
    caplog.set_level(logging.DEBUG)
    env = isolated_env(tmp_path)

    @contextlib.asynccontextmanager
    async def start(password_file: Path | None = None) -> AsyncIterator[Tg]:
        section = {"api_id": ts.API_ID, "api_hash": ts.API_HASH, "connect_timeout_seconds": 2.0,
                   "call_timeout_seconds": 2.0, "request_retries": 0, **FLEET}
        setup = {"2fa": {"password_file": str(password_file)}} if password_file else {}
        cfg = build_config(tmp_path, short_dir / "f.sock", telegram=section, setup=setup)
        gw = FleetGateway(cfg.telegram)
        daemon = Daemon(cfg, gw, install_signal_handlers=False)
        task = await start_in_process(daemon)
        client = ControlClient(cfg.socket_path(), timeout=10)
        try:
            yield Tg(daemon, client, gw, cfg.socket_path(), env)
        finally:
            await client.close()
            daemon.stop()
            assert await asyncio.wait_for(task, STOP_TIMEOUT) == 0
            gw.assert_clean()
            assert not [s.name for s in gw.all_senders if s.is_connected()]

    return start


@pytest.fixture
def secret_dir(tmp_path: Path) -> Path:
    path = tmp_path / "secrets"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
async def tg(fleet_factory: Callable[..., Any], secret_dir: Path) -> AsyncIterator[Tg]:
    async with fleet_factory(secret_dir / "2fa.toml") as daemon:
        yield daemon


def presented(sender: ts.ScriptedSender) -> tuple[Any, ...]:
    [init] = sender.init_requests
    return (init.api_id, init.device_model, init.system_version, init.app_version, init.lang_code,
            init.system_lang_code)


def pair(root: Path, phone: str, key: bytes, *, password: str | None = PASSWORD, **extra: Any) -> Path:
    """A Telethon .session with its account-shop sidecar."""
    root.mkdir(parents=True, exist_ok=True)
    session = telethon_file(root / f"{phone.lstrip('+')}.session", key, (2, PRODUCTION[2], 443))
    sidecar = {"phone": phone.lstrip("+"), "app_id": 611335, "app_hash": HASH, "device": "Pixel 7",
               "sdk": "Android 14", "app_version": "10.9.1", "lang_pack": "de", "system_lang_pack": "de-DE", **extra}
    if password:
        sidecar["twoFA"] = password
    session.with_suffix(".json").write_text(json.dumps(sidecar))
    return session


class Files:
    """One session of every format, each with its own key and Telegram user."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.keys = {name: os.urandom(256) for name in ("pair", "pyro_file", "pyro_string", "tdata")}
        self.users = {name: user_for(f"+1555777{n:04d}", 6000 + n, first=name)
                      for n, name in enumerate(self.keys, 1)}
        self.pair = pair(root, "+15557770001", self.keys["pair"])
        self.pyro_file = pyrogram_file(root / "pyro.session", self.keys["pyro_file"], dc_id=4, api_id=94575)
        self.pyro_strings = root / "pyro.txt"
        self.pyro_strings.write_text(pyrogram_string(">BI?256sQ?", self.keys["pyro_string"], dc_id=5,
                                                     api_id=94575) + "\tpyro-string\n")
        self.tdata = root / "Desk"
        tdw.write_tdata(self.tdata / "tdata", [tdw.Account(6004, 1, {1: self.keys["tdata"]})])

    def paths(self) -> list[str]:
        return [str(p) for p in (self.pair, self.pyro_file, self.pyro_strings, self.tdata)]

    def secrets(self) -> list[str]:
        return [s for key in self.keys.values() for s in secrets_of(key)]


def known(tg: Tg, files: Files) -> None:
    for name, key in files.keys.items():
        tg.gw.keys[key] = files.users[name]


# -- import -----------------------------------------------------------------------------------------


async def test_every_format_imports_and_each_check_presents_the_device_its_files_name(
        tg: Tg, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    files = Files(tmp_path / "in")
    known(tg, files)

    result = await tg.cli("accounts", "import", *files.paths())

    assert result.code == 0, str(result)
    assert result.out.strip().splitlines()[-1] == "imported 4, skipped 0", str(result)
    assert result.err.splitlines() == [f"a 2FA password in {files.pair.with_suffix('.json')} was not saved: pass "
                                       "--save-2fa to add it to the password file"], str(result)
    accounts = {a["label"]: a for a in await tg.client.all_accounts()}
    assert set(accounts) == {mask_phone("+15557770001"), "pyro", "pyro-string", "Desk"}
    expected = {  # label: (key name, dc, what the check and the account present)
        mask_phone("+15557770001"): ("pair", 2, (611335, "Pixel 7", "Android 14", "10.9.1", "de", "de-DE")),
        "pyro": ("pyro_file", 4, (94575, *FLEET.values())),
        "pyro-string": ("pyro_string", 5, (94575, *FLEET.values())),
        "Desk": ("tdata", 1, (ts.API_ID, *FLEET.values())),
    }
    checks = {bytes(s.auth_key.key): s for s in tg.gw.checks}
    for label, (name, dc_id, device) in expected.items():
        account_id = accounts[label]["id"]
        stored = await tg.store.load_session(account_id)
        assert (stored.dc_id, stored.server, stored.port, stored.auth_key) == (
            dc_id, PRODUCTION[dc_id], 443, files.keys[name]), label
        row = await tg.account_row(account_id)
        assert (row["phone"], row["tg_user_id"]) == (f"+{files.users[name].phone}", files.users[name].id)
        sender = checks[files.keys[name]]
        assert presented(sender) == device, label  # the check presents what the account will
        assert (sender.connection._ip, sender.connection._port) == (stored.server, 443)
    own = (await tg.store.client_params(accounts[mask_phone("+15557770001")]["id"])).device
    assert own == Device(611335, HASH, "Pixel 7", "Android 14", "10.9.1", "de", "de-DE")

    # The sidecar's password went nowhere; the api_hash is only ever shown masked.
    said = result.out + result.err + await tg.everything_said() + caplog.text
    assert PASSWORD not in said and PASSWORD.encode() not in tg.db_bytes()
    assert HASH not in said and HASH[:8] not in said
    assert not (tmp_path / "secrets" / "2fa.toml").exists()
    assert_no_secret(said, files.secrets(), "the CLI, the API or the log")


async def test_save_2fa_adds_a_sidecars_password_to_the_private_password_file(
        tg: Tg, tmp_path: Path, secret_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    key, other_key = os.urandom(256), os.urandom(256)
    tg.gw.keys[key] = user_for("+15558880001", 8801)
    tg.gw.keys[other_key] = user_for("+15558880002", 8802)
    first = pair(tmp_path / "in", "+15558880001", key)
    second = pair(tmp_path / "in2", "+15558880002", other_key, password='q"uote\\ ✓')

    result = await tg.cli("accounts", "import", "--save-2fa", str(first), str(second))

    assert result.code == 0 and "imported 2, skipped 0" in result.out, str(result)
    path = secret_dir / "2fa.toml"
    assert f"{first}: 2FA password added to {path} for {mask_phone('+15558880001')}" in result.out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert tomllib.loads(path.read_text()) == {"+15558880001": PASSWORD, "+15558880002": 'q"uote\\ ✓'}
    source = PasswordSource(TwoFAConfig(password_file=str(path)))  # what ensure_2fa will read
    assert await source.password_for(1, "+15558880001") == PASSWORD
    said = result.out + result.err + await tg.everything_said() + caplog.text
    assert PASSWORD not in said and PASSWORD.encode() not in tg.db_bytes()
    assert "was not saved" not in result.err


async def test_save_2fa_without_a_password_file_is_one_line_and_imports_nothing(
        fleet_factory: Callable[..., Any], tmp_path: Path) -> None:
    async with fleet_factory(None) as tg:
        key = os.urandom(256)
        tg.gw.keys[key] = user_for("+15558880003", 8803)
        result = await tg.cli("accounts", "import", "--save-2fa", str(pair(tmp_path / "in", "+15558880003", key)))
        assert "[setup.2fa] password_file is not set" in one_error(result)
        assert await tg.count("accounts") == 0 and tg.gw.checks == []


# -- dry run ----------------------------------------------------------------------------------------


async def test_dry_run_lists_what_would_happen_and_writes_nothing(tg: Tg, tmp_path: Path) -> None:
    files = Files(tmp_path / "in")
    known(tg, files)
    before = await tg.cli("accounts", "import", str(files.pyro_file))
    assert before.code == 0, str(before)
    dup_phone = pair(tmp_path / "dup", "+15557770002", os.urandom(256), password=None)  # pyro's user's phone
    broken = tmp_path / "in" / "broken.session"
    broken.write_bytes(b"SQLite format 3\x00" + bytes(2000))
    bad_json = pair(tmp_path / "bad", "+15550000009", os.urandom(256))
    bad_json.with_suffix(".json").write_text("{not json")
    async def state() -> tuple[Any, ...]:  # the node's own events (taking the account) may come at any time
        trail = [e for e in await tg.client.events(limit=1000) if e["kind"].startswith("account.")]
        return await tg.count("accounts"), await tg.count("sessions"), trail, len(tg.gw.account_less())

    before_dry = await state()

    result = await tg.cli("accounts", "import", "--dry-run", *files.paths(), str(dup_phone), str(broken),
                          str(bad_json))

    lines = result.out.strip().splitlines()
    assert result.code == 1, str(result)  # something is broken
    assert f"would import {files.pair} as {mask_phone('+15557770001')} (telethon-session, own device, 2FA password " \
           "not saved)" in lines
    assert f"would import {files.pyro_strings}:1 as pyro-string (pyrogram-string, own device)" in lines
    assert f"would import {files.tdata / 'tdata'} as Desk (tdata)" in lines
    assert f"duplicate {files.pyro_file}: that session is already account 1 (pyro)" in lines
    assert f"duplicate {dup_phone}: that phone number is already account 1 (pyro)" in lines
    assert any(line.startswith(f"broken {broken}: ") for line in lines), str(result)
    assert f"broken {bad_json.with_suffix('.json')}: not valid JSON (line 1, column 2)" in lines
    assert lines[-1] == "would import 3, duplicates 2, broken 2; nothing written"
    assert "Traceback" not in result.err
    # Nothing written, nowhere connected.
    assert await state() == before_dry
    assert not (tmp_path / "secrets" / "2fa.toml").exists()

    clean = await tg.cli("accounts", "import", "--dry-run", str(files.pyro_file), str(files.pyro_strings))
    assert clean.code == 0 and clean.out.strip().splitlines()[-1] == (
        "would import 1, duplicates 1, broken 0; nothing written"), str(clean)


async def test_a_tdata_passcode_comes_from_the_prompt(tg: Tg, tmp_path: Path) -> None:
    key = os.urandom(256)
    tdw.write_tdata(tmp_path / "Locked", [tdw.Account(7001, 2, {2: key})], passcode="s3same")
    tg.gw.keys[key] = user_for("+15559990001", 7001)
    without = await tg.cli("accounts", "import", str(tmp_path / "Locked"))
    assert without.code == 1 and f"skipped {tmp_path / 'Locked'}: it has a local passcode: pass --passcode" \
        in without.err, str(without)
    wrong = await tg.cli("accounts", "import", "--passcode", str(tmp_path / "Locked"), stdin="nope\n")
    assert f"skipped {tmp_path / 'Locked'}: wrong passcode" in wrong.err, str(wrong)
    right = await tg.cli("accounts", "import", "--passcode", str(tmp_path / "Locked"), stdin="s3same\n")
    assert right.code == 0 and "imported 1, skipped 0" in right.out, str(right)
    assert (await tg.store.load_session(1)).auth_key == key
    assert "s3same" not in right.out + right.err.replace("tdata passcode: ", "")


# -- device parameters ------------------------------------------------------------------------------


async def test_set_device_and_show_keep_the_api_hash_masked_and_the_next_client_presents_it(
        tg: Tg, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    files = Files(tmp_path / "in")
    known(tg, files)
    assert (await tg.cli("accounts", "import", "--no-check", str(files.pyro_file), str(files.tdata))).code == 0

    result = await tg.cli("accounts", "set-device", "1", "2", "--api-id", "2040", "--api-hash", OTHER_HASH,
                          "--device-model", "Desktop", "--system-version", "Windows 11")
    assert result.code == 0, str(result)
    assert result.out.splitlines() == [
        "account 1: own api_id 2040, api_hash fedc…, device_model Desktop, system_version Windows 11",
        "account 2: own api_id 2040, api_hash fedc…, device_model Desktop, system_version Windows 11",
        "device set on 2 account(s); each presents it from its next connection"]
    shown = await tg.cli("accounts", "show", "1")
    assert shown.code == 0, str(shown)
    rows = [line.split(None, 1) for line in shown.out.splitlines()[2:]]
    table = {name: rest.split() for name, rest in rows}
    assert table["api_id"] == ["2040", str(ts.API_ID), "2040"]
    assert table["api_hash"] == ["fedc…", ts.API_HASH[:4] + "…", "fedc…"]
    assert table["device_model"] == ["Desktop", "fleet-box", "Desktop"]
    assert table["app_version"] == ["-", "tgfleet", "9", "tgfleet", "9"]
    api = await tg.client.request("GET", "/accounts/1/device")
    assert api["own"]["api_hash_masked"] == "fedc…" and api["effective"]["api_id"] == 2040
    assert api["default"]["api_hash_masked"] == ts.API_HASH[:4] + "…"
    assert "api_hash" not in api["own"]
    as_json = json.loads((await tg.cli("accounts", "show", "1", "--json")).out)
    assert as_json["device"]["own"]["device_model"] == "Desktop"

    # Its next connection presents the new device (set-device let the old client go).
    for _ in range(400):  # the node takes an imported account at its next heartbeat; bounded at 20 s
        if tg.gw.gate.allows(1):
            break
        await asyncio.sleep(0.05)
    sender = tg.gw.next_sender(1)
    sender.expect(functions.users.GetUsersRequest, [sender.me])
    await tg.gw.get_me(AccountRef(1))
    assert presented(sender) == (2040, "Desktop", "Windows 11", "tgfleet 9", "en", "en-GB")

    reset = await tg.cli("accounts", "set-device", "1", "--reset")
    assert reset.code == 0 and "account 1: own none" in reset.out, str(reset)
    assert (await tg.store.client_params(1)).device == Device()
    assert (await tg.store.client_params(2)).device.api_hash == OTHER_HASH

    bad_hash = await tg.cli("accounts", "set-device", "1", "--api-hash", "xyz")
    assert bad_hash.code == 2 and "not an api_hash" in bad_hash.err and "Traceback" not in bad_hash.err
    nothing = await tg.cli("accounts", "set-device", "1")
    assert nothing.code == 2 and nothing.err.strip() == "tgdaemon: nothing to set: give --api-id, --device-model, ..." \
        " or --reset"
    missing = await tg.cli("accounts", "set-device", "1", "99", "--lang-code", "fr")
    assert one_error(missing) == "tgdaemon: account 99: no such account"
    assert (await tg.store.client_params(1)).device == Device()  # nothing written for account 1 either
    with pytest.raises(ApiError) as err:
        await tg.client.request("POST", "/accounts/device", body={"ids": [1], "device": {"api_hash": "short"}})
    assert err.value.status == 400 and "short" not in str(err.value)

    said = await tg.everything_said() + caplog.text + result.out + shown.out
    assert OTHER_HASH not in said and OTHER_HASH[:8] not in said
    kinds = [e["message"] for e in await tg.client.events(account_id=1) if e["kind"] == "account.device"]
    assert kinds == ["device reset to the [telegram] defaults",
                     "device set: api_id, api_hash, device_model, system_version"]


# -- export -----------------------------------------------------------------------------------------


async def test_export_writes_private_files_that_load_in_telethon_and_import_back(
        tg: Tg, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    files = Files(tmp_path / "in")
    known(tg, files)
    assert (await tg.cli("accounts", "import", str(files.pair), str(files.tdata))).code == 0
    ids = {a["label"]: a["id"] for a in await tg.client.all_accounts()}
    pair_id, desk_id = ids[mask_phone("+15557770001")], ids["Desk"]
    out = tmp_path / "out"

    results = {}
    for fmt in ("telethon-string", "telethon-session", "pyrogram"):
        results[fmt] = await tg.cli("accounts", "export", "1", "2", "--format", fmt, "--to", str(out / fmt))
        assert results[fmt].code == 0, str(results[fmt])
        assert results[fmt].out.strip().splitlines()[-1] == f"exported 2 account(s) as {fmt} to {out / fmt}"
        assert stat.S_IMODE((out / fmt).stat().st_mode) == 0o700
        for path in (out / fmt).iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    pair_label = mask_phone("+15557770001").replace("*", "_")
    string_file = out / "telethon-string" / f"{pair_label}.txt"
    text, label = string_file.read_text().rstrip("\n").split("\t")
    loaded = StringSession(text)
    assert (loaded.dc_id, loaded.server_address, loaded.auth_key.key, label) == (
        2, PRODUCTION[2], files.keys["pair"], mask_phone("+15557770001"))
    desk = SQLiteSession(str(out / "telethon-session" / "Desk"))
    assert (desk.dc_id, desk.server_address, desk.port, desk.auth_key.key) == (1, PRODUCTION[1], 443, files.keys["tdata"])
    desk.close()
    with contextlib.closing(sqlite3.connect(out / "pyrogram" / f"{pair_label}.session")) as conn:
        assert conn.execute("SELECT dc_id, api_id, test_mode, auth_key, user_id, is_bot FROM sessions").fetchall() == [
            (2, 611335, 0, files.keys["pair"], files.users["pair"].id, 0)]  # its own api_id
    with contextlib.closing(sqlite3.connect(out / "pyrogram" / "Desk.session")) as conn:
        assert conn.execute("SELECT api_id FROM sessions").fetchall() == [(ts.API_ID,)]  # [telegram]'s

    # Every exported file imports back as the very same session (so, a duplicate of its account).
    for fmt in results:
        back = await tg.cli("accounts", "import", "--dry-run", *(str(p) for p in sorted((out / fmt).iterdir())))
        assert back.code == 0, str(back)
        assert back.out.strip().splitlines()[-1] == "would import 0, duplicates 2, broken 0; nothing written"
        assert f"that session is already account {pair_id} ({mask_phone('+15557770001')})" in back.out, fmt
        assert f"that session is already account {desk_id} (Desk)" in back.out, fmt

    # Never over a file; an account without a session, or not there: one line, nothing written.
    before = {p: p.read_bytes() for p in (out / "pyrogram").iterdir()}
    again = await tg.cli("accounts", "export", str(desk_id), "--format", "pyrogram", "--to", str(out / "pyrogram"))
    assert one_error(again) == f"tgdaemon: {out / 'pyrogram' / 'Desk.session'} exists; nothing exported (export " \
                               "to another folder, or move it away)"
    assert {p: p.read_bytes() for p in (out / "pyrogram").iterdir()} == before
    missing = await tg.cli("accounts", "export", str(pair_id), "9", "--format", "pyrogram", "--to", str(out / "x"))
    assert one_error(missing) == "tgdaemon: account 9: no such account" and not (out / "x").exists()

    exported = [e for e in await tg.client.events(limit=1000) if e["kind"] == "account.exported"]
    assert len(exported) == 6 and {e["account_id"] for e in exported} == {1, 2}  # none for the refused ones
    said = "".join(r.out + r.err for r in results.values()) + await tg.everything_said() + caplog.text
    assert_no_secret(said, files.secrets(), "the export's output, the API or the log")
    assert base64.b64encode(files.keys["pair"]).decode() not in json.dumps(exported)


# -- a simulator daemon subprocess, on both stores ------------------------------------------------------


@pytest.mark.parametrize("store_kind", pgtest.STORES)
def test_a_simulator_daemon_sets_and_shows_devices_and_refuses_what_it_cannot_do(
        request: pytest.FixtureRequest, store_kind: str, tmp_path: Path) -> None:
    """A real daemon subprocess on SQLite and on PostgreSQL: set-device and show work on simulated accounts;
    export (they have no session) and import (the simulator seeds its own) are one line each, nothing done."""
    with pgtest.store_url(store_kind, request) as url, fleet(store=url) as f:
        f.start(accounts=5).wait_ready()
        sock = ("--socket", str(f.socket_path))
        done = f.cli("accounts", "set-device", "2", "3", "--api-id", "611335", "--api-hash", HASH,
                     "--device-model", "Pixel 7", "--lang-code", "de", *sock)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[-1] == "device set on 2 account(s); each presents it from its next connection"
        shown = json.loads(f.cli("accounts", "show", "3", "--json", *sock).stdout)
        assert shown["account"]["id"] == 3
        assert shown["device"]["own"] == {"api_id": 611335, "api_hash_masked": "b184…", "device_model": "Pixel 7",
                                          "system_version": None, "app_version": None, "lang_code": "de",
                                          "system_lang_code": None}
        assert shown["device"]["default"]["api_id"] is None  # the simulator has no [telegram] app
        assert shown["device"]["effective"]["device_model"] == "Pixel 7"
        events = f.cli("events", "--account", "2", "--json", *sock).stdout
        assert "device set: api_id, api_hash, device_model, lang_code" in events

        out = tmp_path / "out"
        refused = f.cli("accounts", "export", "2", "--format", "telethon-string", "--to", str(out), *sock)
        assert refused.returncode == 1 and refused.stdout == "", refused.stdout
        assert one_line(refused.stderr) == "tgdaemon: account 2 (sim-0002) has no session to export"
        assert not out.exists()
        key = os.urandom(256)
        strings = tmp_path / "s.txt"
        strings.write_text(pyrogram_string(">BI?256sQ?", key) + "\n")
        imported = f.cli("accounts", "import", "--dry-run", str(strings), *sock)
        assert imported.returncode == 1 and "simulator" in one_line(imported.stderr), imported.stderr
        for result in (done, refused, imported):
            no_traceback(result)
            assert HASH not in result.stdout + result.stderr
        assert all(HASH not in d.log() for d in f.daemons)
