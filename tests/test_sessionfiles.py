"""Reading the session formats operators hold, and writing them back (tgdaemon/sessionfiles), on files the
tests make themselves: Pyrogram SQLite files with Pyrogram's own schema (versions 2 and 3), Pyrogram
string sessions packed with Pyrogram's struct layouts, Telethon ``.session`` files written by Telethon
with ``.json`` sidecars in the spellings account shops use, and ``tdata`` folders from tests/tdata_writer.py.
Every corrupt variant is one line naming the file and the problem, never an exception."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import stat
import struct
import tomllib
from pathlib import Path

import pytest
import tdata_writer as tdw
from telethon.crypto import AuthKey
from telethon.sessions import SQLiteSession, StringSession

from tgdaemon.config import TwoFAConfig
from tgdaemon.sessionfiles import label_for
from tgdaemon.sessionfiles.dcs import PRODUCTION, TEST
from tgdaemon.sessionfiles.detect import read_paths
from tgdaemon.sessionfiles.export import Exported, file_names, write
from tgdaemon.sessionfiles.tdata import file_part
from tgdaemon.setup.secrets import PasswordFileError, PasswordSource, add_password
from tgdaemon.store import Device

HASH = "b18441a1ff607e10a989891a5462e627"

# Pyrogram's schema as pyrogram/storage/sqlite_storage.py creates it: version 3 (2.x) has api_id second;
# version 2 (1.x) has no api_id at all.
PYROGRAM_V3 = """
CREATE TABLE sessions (dc_id INTEGER PRIMARY KEY, api_id INTEGER, test_mode INTEGER, auth_key BLOB,
    date INTEGER NOT NULL, user_id INTEGER, is_bot INTEGER);
CREATE TABLE peers (id INTEGER PRIMARY KEY, access_hash INTEGER, type INTEGER NOT NULL, username TEXT,
    phone_number TEXT, last_update_on INTEGER NOT NULL DEFAULT (CAST(STRFTIME('%s', 'now') AS INTEGER)));
CREATE TABLE version (number INTEGER PRIMARY KEY);
"""
PYROGRAM_V2 = PYROGRAM_V3.replace("api_id INTEGER, ", "")


def pyrogram_file(path: Path, key: bytes | None, *, dc_id: int = 4, api_id: int | None = 94575, test_mode: int = 0,
                  user_id: int = 5551, is_bot: int = 0, version: int = 3) -> Path:
    with sqlite3.connect(path) as conn:
        conn.executescript(PYROGRAM_V3 if version == 3 else PYROGRAM_V2)
        conn.execute("INSERT INTO version VALUES (?)", (version,))
        if version == 3:
            conn.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (dc_id, api_id, test_mode, key, 1700000000, user_id, is_bot))
        else:
            conn.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?)",
                         (dc_id, test_mode, key, 1700000000, user_id, is_bot))
    conn.close()
    return path


def pyrogram_string(layout: str, key: bytes, *, dc_id: int = 2, api_id: int = 94575, test_mode: bool = False,
                    user_id: int = 5551, is_bot: bool = False) -> str:
    """Packed with the struct layouts of pyrogram/storage/storage.py, encoded as Pyrogram does."""
    if layout == ">BI?256sQ?":
        packed = struct.pack(layout, dc_id, api_id, test_mode, key, user_id, is_bot)
    else:
        packed = struct.pack(layout, dc_id, test_mode, key, user_id, is_bot)
    return base64.urlsafe_b64encode(packed).decode().rstrip("=")


def telethon_file(path: Path, key: bytes, dc: tuple[int, str, int] = (2, "149.154.167.51", 443)) -> Path:
    session = SQLiteSession(str(path.with_suffix("")))
    session.set_dc(*dc)
    session.auth_key = AuthKey(key)
    session.save()
    session.close()
    return path


def one(paths: list[Path], **kw: object) -> object:
    found, problems = read_paths(paths, **kw)  # type: ignore[arg-type]
    assert problems == [] and len(found) == 1, problems
    return found[0]


def problem(paths: list[Path], **kw: object) -> str:
    found, problems = read_paths(paths, **kw)  # type: ignore[arg-type]
    assert found == [] and len(problems) == 1, (found, problems)
    assert "\n" not in problems[0] and "Traceback" not in problems[0]
    return problems[0]


# -- Pyrogram ---------------------------------------------------------------------------------------


def test_pyrogram_files_of_both_schema_versions(tmp_path: Path) -> None:
    k3, k2, kt = os.urandom(256), os.urandom(256), os.urandom(256)
    v3 = one([pyrogram_file(tmp_path / "new.session", k3)])
    assert (v3.kind, v3.dc_id, v3.server, v3.port, v3.auth_key, v3.label) == (
        "pyrogram-session", 4, PRODUCTION[4], 443, k3, "new")
    assert v3.device == Device(api_id=94575)  # the app the key was made with
    v2 = one([pyrogram_file(tmp_path / "old.session", k2, dc_id=5, version=2)])
    assert (v2.dc_id, v2.server, v2.auth_key, v2.device) == (5, PRODUCTION[5], k2, Device())
    test = one([pyrogram_file(tmp_path / "test.session", kt, dc_id=2, test_mode=1)])
    assert test.server == TEST[2]  # test mode: Telegram's test data centres


def test_broken_pyrogram_files_are_one_line_each(tmp_path: Path) -> None:
    assert "no auth key" in problem([pyrogram_file(tmp_path / "empty.session", None)])
    assert "a bot's session" in problem([pyrogram_file(tmp_path / "bot.session", os.urandom(256), is_bot=1)])
    assert "DC 9 is not a Telegram data centre" in problem([pyrogram_file(tmp_path / "dc.session", os.urandom(256),
                                                                          dc_id=9)])
    good = pyrogram_file(tmp_path / "cut.session", os.urandom(256)).read_bytes()
    cut = tmp_path / "cut.session"
    cut.write_bytes(good[:len(good) // 3])
    line = problem([cut])
    assert line.startswith(f"{cut}: ") and "SQLite" in line
    other = tmp_path / "other.session"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (x)")
    conn.close()
    assert problem([other]) == f"{other}: an SQLite file, but neither a Telethon nor a Pyrogram session (no sessions table)"
    odd = pyrogram_file(tmp_path / "odd.session", os.urandom(256))
    with sqlite3.connect(odd) as conn:  # SQLite keeps any type in any column
        conn.execute("UPDATE sessions SET api_id = 'ninety'")
    conn.close()
    assert problem([odd]) == f"{odd}: cannot be read as a session (ValueError)"


def test_pyrogram_string_sessions_in_all_three_layouts(tmp_path: Path) -> None:
    keys = [os.urandom(256) for _ in range(4)]
    lines = [pyrogram_string(">B?256sI?", keys[0], dc_id=1),  # 351 characters
             pyrogram_string(">B?256sQ?", keys[1], dc_id=3, user_id=2**40) + "\told-64",  # 356
             pyrogram_string(">BI?256sQ?", keys[2], dc_id=5),  # 362, Pyrogram 2.x
             pyrogram_string(">BI?256sQ?", keys[3], dc_id=1, test_mode=True)]
    assert [len(line.split("\t")[0]) for line in lines] == [351, 356, 362, 362]
    path = tmp_path / "pyro.txt"
    path.write_text("\n".join(["# Pyrogram exports", *lines, ""]))
    found, problems = read_paths([path])
    assert problems == []
    assert [(f.source, f.kind, f.dc_id, f.server, f.auth_key) for f in found] == [
        (f"{path}:2", "pyrogram-string", 1, PRODUCTION[1], keys[0]), (f"{path}:3", "pyrogram-string", 3, PRODUCTION[3], keys[1]),
        (f"{path}:4", "pyrogram-string", 5, PRODUCTION[5], keys[2]), (f"{path}:5", "pyrogram-string", 1, TEST[1], keys[3])]
    assert [f.label for f in found] == ["pyro-2", "old-64", "pyro-4", "pyro-5"]
    assert [f.device.api_id for f in found] == [None, None, 94575, 94575]


def test_broken_string_sessions_are_skipped_lines(tmp_path: Path) -> None:
    good = pyrogram_string(">BI?256sQ?", os.urandom(256))
    telethon = StringSession()
    telethon.set_dc(2, "149.154.167.51", 443)
    telethon.auth_key = AuthKey(os.urandom(256))
    path = tmp_path / "mixed.txt"
    path.write_text("\n".join([good[:200], pyrogram_string(">BI?256sQ?", os.urandom(256), is_bot=True),
                               pyrogram_string(">BI?256sQ?", bytes(256)), "garbage", telethon.save()[:-10],
                               telethon.save()]) + "\n")
    found, problems = read_paths([path])
    assert [f.source for f in found] == [f"{path}:6"]
    assert [p.split(": ", 1)[0] for p in problems] == [f"{path}:{n}" for n in range(1, 6)]
    assert "a bot's session" in problems[1] and "without an auth key" in problems[2]
    assert "neither a Telethon nor a Pyrogram string session" in problems[3]


# -- Telethon + sidecar -----------------------------------------------------------------------------


def test_a_telethon_session_with_its_sidecar_in_an_account_shops_spelling(tmp_path: Path) -> None:
    key = os.urandom(256)
    session = telethon_file(tmp_path / "15551234567.session", key, (4, "149.154.167.92", 443))
    (tmp_path / "15551234567.json").write_text(json.dumps({
        "session_file": "15551234567", "phone": "15551234567", "user_id": 777, "app_id": 2040, "app_hash": HASH,
        "sdk": "Windows 10", "app_version": "4.16.8 x64", "device": "Desktop", "lang_pack": "en",
        "system_lang_pack": "en-US", "twoFA": "hunter2", "first_name": "Ann", "avatar": None}))
    found = one([session])
    assert (found.kind, found.dc_id, found.server, found.auth_key) == ("telethon-session", 4, "149.154.167.92", key)
    assert found.device == Device(2040, HASH, "Desktop", "Windows 10", "4.16.8 x64", "en", "en-US")
    assert (found.phone, found.password, found.sidecar) == ("+15551234567", "hunter2", str(tmp_path / "15551234567.json"))
    assert found.label == "+155******67"  # a file named by its phone: the label is masked like a phone
    assert "hunter2" not in repr(found) and HASH not in repr(found) and key.hex()[:32] not in repr(found)
    # The pair named by its .json, or both named (a shell glob): read once.
    assert one([tmp_path / "15551234567.json"]).auth_key == key
    found, problems = read_paths([session, tmp_path / "15551234567.json"])
    assert len(found) == 1 and problems == []


@pytest.mark.parametrize("sidecar", [
    {"api_id": "611335", "api_hash": HASH.upper(), "device_model": "Pixel 7", "system_version": "Android 14",
     "app_version": "10.9.1", "lang_code": "de", "system_lang_code": "de-DE", "phone": "+49 151 2345-6789",
     "password": "pw"},
    {"apiId": 611335, "apiHash": HASH.upper(), "deviceModel": "Pixel 7", "systemVersion": "Android 14",
     "appVersion": "10.9.1", "langCode": "de", "systemLangCode": "de-DE", "phone_number": 4915123456789, "2fa": "pw"},
])
def test_the_common_spellings_of_a_sidecar(tmp_path: Path, sidecar: dict[str, object]) -> None:
    session = telethon_file(tmp_path / "acc.session", os.urandom(256))
    (tmp_path / "acc.json").write_text(json.dumps(sidecar))
    found = one([session])
    assert found.device == Device(611335, HASH.upper(), "Pixel 7", "Android 14", "10.9.1", "de", "de-DE")
    assert (found.phone, found.password, found.label) == ("+4915123456789", "pw", "acc")


@pytest.mark.parametrize(("content", "expected"), [
    (b'{"app_id": 2040, "app_hash": "abc"', "not valid JSON (line 1, column 35)"),
    (b"[1, 2]", "a JSON object was expected, not list"),
    (b'{"app_id": "twenty"}', "app_id: not an api_id (a whole number)"),
    (b'{"app_hash": "not-a-hash-at-all"}', "app_hash: not an api_hash (32 hexadecimal digits)"),
    (b'{"phone": "call me"}', "phone: not a phone number in international format"),
    (b'{"device": {"model": "x"}}', "device: text or a number expected, not dict"),
    (b'\xff\xfe{}', "not UTF-8 text: not a JSON sidecar"),
    (json.dumps({"twoFA": "x" * 257}).encode(), "twoFA: a 2FA password longer than 256 characters, or with a NUL in it"),
])
def test_a_bad_sidecar_makes_its_session_broken(tmp_path: Path, content: bytes, expected: str) -> None:
    """Importing it without its device would present another one: the pair is refused, naming the sidecar."""
    session = telethon_file(tmp_path / "acc.session", os.urandom(256))
    (tmp_path / "acc.json").write_bytes(content)
    assert problem([session]) == f"{tmp_path / 'acc.json'}: {expected}"


def test_a_sidecar_alone_and_a_telethon_file_without_a_key(tmp_path: Path) -> None:
    alone = tmp_path / "lonely.json"
    alone.write_text("{}")
    assert problem([alone]) == f"{alone}: a sidecar without its .session file (lonely.session)"
    keyless = SQLiteSession(str(tmp_path / "keyless"))
    keyless.save()
    keyless.close()
    assert "has no auth key (never signed in?)" in problem([tmp_path / "keyless.session"])
    assert problem([tmp_path / "nowhere.session"]) == f"{tmp_path / 'nowhere.session'}: no such file or folder"


def test_a_pyrogram_file_takes_its_sidecar_and_keeps_its_own_api_id_when_the_sidecar_has_none(tmp_path: Path) -> None:
    session = pyrogram_file(tmp_path / "p.session", os.urandom(256))
    (tmp_path / "p.json").write_text(json.dumps({"device": "Galaxy S23", "sdk": "Android 13"}))
    assert one([session]).device == Device(api_id=94575, device_model="Galaxy S23", system_version="Android 13")


def test_the_same_session_twice_is_kept_once(tmp_path: Path) -> None:
    key = os.urandom(256)
    a = telethon_file(tmp_path / "a.session", key)
    b = tmp_path / "b.txt"
    s = StringSession()
    s.set_dc(2, "149.154.167.51", 443)
    s.auth_key = AuthKey(key)
    b.write_text(s.save() + "\n")
    found, problems = read_paths([a, b])
    assert [f.source for f in found] == [str(a)] and problems == [f"{b}:1: the same session as {a}"]


def test_labels_from_phone_named_files_are_masked() -> None:
    assert label_for("79001234567") == "+790******67"
    assert label_for("+15551234567") == "+155******67"
    assert label_for("alpha") == "alpha" and label_for("123") == "123"


# -- tdata ------------------------------------------------------------------------------------------


def test_the_data_name_of_the_first_account_is_the_one_real_folders_have() -> None:
    """Every Telegram Desktop tdata folder has D877F783D5D3EF8C (the first account's files): both the reader
    and the test writer must derive it."""
    assert file_part("data") == tdw.to_file_part("data") == "D877F783D5D3EF8C"
    assert file_part("data#2") == tdw.to_file_part("data#2") != "D877F783D5D3EF8C"


def test_a_tdata_folder_with_two_accounts_wide_and_legacy_ids(tmp_path: Path) -> None:
    main, other, second = os.urandom(256), os.urandom(256), os.urandom(256)
    tdw.write_tdata(tmp_path / "Alice" / "tdata", [
        tdw.Account(5_000_000_001, 4, {2: other, 4: main}),
        tdw.Account(4242, 1, {1: second}, index=1, wide_ids=False)])
    found, problems = read_paths([tmp_path / "Alice"], prefix="td-")  # the Telegram folder, or its tdata
    assert problems == []
    assert [(f.source, f.label, f.kind, f.dc_id, f.server, f.port, f.auth_key) for f in found] == [
        (str(tmp_path / "Alice" / "tdata"), "td-Alice", "tdata", 4, PRODUCTION[4], 443, main),
        (f"{tmp_path / 'Alice' / 'tdata'}#2", "td-Alice-2", "tdata", 1, PRODUCTION[1], 443, second)]
    assert [f.auth_key for f in read_paths([tmp_path / "Alice" / "tdata"])[0]] == [main, second]


def test_a_tdata_passcode_right_wrong_and_missing(tmp_path: Path) -> None:
    key = os.urandom(256)
    folder = tmp_path / "locked"
    tdw.write_tdata(folder, [tdw.Account(77, 2, {2: key})], passcode="correct horse ✓")
    assert problem([folder]) == f"{folder}: it has a local passcode: pass --passcode"
    assert problem([folder], passcode="wrong") == f"{folder}: wrong passcode"
    assert one([folder], passcode="correct horse ✓").auth_key == key


def test_tdata_files_stored_as_older_copies_are_read(tmp_path: Path) -> None:
    key = os.urandom(256)
    tdw.write_tdata(tmp_path / "t", [tdw.Account(1, 3, {3: key})], suffix="1")
    assert one([tmp_path / "t"]).auth_key == key


def test_damaged_tdata_folders_are_one_line_each(tmp_path: Path) -> None:
    def folder(name: str, *accounts: tdw.Account) -> tuple[Path, bytes]:
        path = tmp_path / name
        local = tdw.write_tdata(path, list(accounts) or [tdw.Account(1, 2, {2: os.urandom(256)})])
        return path, local

    empty = tmp_path / "empty"
    empty.mkdir()
    assert problem([empty]) == f"{empty}: a folder, but not Telegram Desktop's tdata (no key_datas in it)"

    cut, _ = folder("cut")
    (cut / "key_datas").write_bytes((cut / "key_datas").read_bytes()[:60])
    assert problem([cut]) == f"{cut / 'key_datas'}: damaged (its checksum does not match), or cut short"

    flipped, _ = folder("flipped")
    raw = bytearray((flipped / "key_datas").read_bytes())
    raw[40] ^= 0xFF
    (flipped / "key_datas").write_bytes(bytes(raw))
    assert "damaged (its checksum does not match)" in problem([flipped])

    header, _ = folder("header")
    (header / "key_datas").write_bytes(b"NOPE" + (header / "key_datas").read_bytes()[4:])
    assert "not a Telegram Desktop file (no TDF$ header)" in problem([header])

    no_mtp, _ = folder("no-mtp")
    (no_mtp / "D877F783D5D3EF8Cs").unlink()
    assert problem([no_mtp]) == f"{no_mtp}: no D877F783D5D3EF8Cs file"

    signed_out, local = folder("signed-out")
    tdw.write_account(signed_out, tdw.Account(1, 2, {4: os.urandom(256)}), local)  # no key for its main DC 2
    assert "no auth key for its main DC 2 (signed out?)" in problem([signed_out])

    wrong_block, local = folder("block")
    tdw.write_account(wrong_block, tdw.Account(1, 2, {2: os.urandom(256)}), local, block=0x4C)
    assert "not an MTP authorization (block 0x4c)" in problem([wrong_block])

    other_key, _ = folder("other-key")
    tdw.write_account(other_key, tdw.Account(1, 2, {2: os.urandom(256)}), os.urandom(256))
    assert "damaged (it does not decrypt with the folder's key)" in problem([other_key])


def test_one_unreadable_account_does_not_hide_the_others(tmp_path: Path) -> None:
    good = os.urandom(256)
    path = tmp_path / "two"
    tdw.write_tdata(path, [tdw.Account(1, 2, {2: good}), tdw.Account(2, 2, {2: os.urandom(256)}, index=1)])
    (path / (tdw.to_file_part("data#2") + "s")).unlink()
    found, problems = read_paths([path])
    assert [f.auth_key for f in found] == [good]
    assert problems == [f"{path}: no {tdw.to_file_part('data#2')}s file"]


# -- export -----------------------------------------------------------------------------------------


def exported(n: int, label: str, server: str = "149.154.167.91", dc_id: int = 4) -> Exported:
    return Exported(n, label, dc_id, server, 443, os.urandom(256), user_id=9000 + n, api_id=611335)


def test_file_names_come_from_labels_made_safe_and_unique() -> None:
    sessions = [exported(1, "alpha"), exported(2, "a/b c"), exported(3, "dup"), exported(4, "DUP"),
                exported(5, "../.."), exported(6, "+155*****67")]
    assert file_names(sessions, "telethon-session") == [
        "alpha.session", "a_b_c.session", "dup-3.session", "DUP-4.session", "account-5.session", "+155_____67.session"]


@pytest.mark.parametrize("fmt", ["telethon-string", "telethon-session", "pyrogram"])
def test_exported_files_are_private_load_in_their_tool_and_import_back(tmp_path: Path, fmt: str) -> None:
    session = exported(3, "alpha")
    path = tmp_path / file_names([session], fmt)[0]
    write(path, fmt, session)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    if fmt == "telethon-string":
        text, label = path.read_text().rstrip("\n").split("\t")
        loaded = StringSession(text)
        assert label == "alpha"
    elif fmt == "telethon-session":
        loaded = SQLiteSession(str(path.with_suffix("")))
    if fmt != "pyrogram":
        assert (loaded.dc_id, loaded.server_address, loaded.port, loaded.auth_key.key) == (
            4, "149.154.167.91", 443, session.auth_key)
    else:
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT number FROM version").fetchall() == [(3,)]
            assert conn.execute("SELECT dc_id, api_id, test_mode, auth_key, user_id, is_bot FROM sessions").fetchall() \
                == [(4, 611335, 0, session.auth_key, 9003, 0)]
            assert {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")} == {
                "sessions", "peers", "version"}
        conn.close()
    back = one([path])
    assert (back.dc_id, back.port, back.auth_key, back.label) == (4, 443, session.auth_key, "alpha")
    with pytest.raises(FileExistsError):  # never over a file
        write(path, fmt, exported(4, "alpha"))
    assert one([path]).auth_key == session.auth_key


def test_a_pyrogram_export_of_a_test_dc_session_says_test_mode(tmp_path: Path) -> None:
    session = exported(1, "t", server=TEST[2], dc_id=2)
    write(tmp_path / "t.session", "pyrogram", session)
    with sqlite3.connect(tmp_path / "t.session") as conn:
        assert conn.execute("SELECT test_mode FROM sessions").fetchall() == [(1,)]
    conn.close()
    assert one([tmp_path / "t.session"]).server == TEST[2]


# -- the password file ------------------------------------------------------------------------------


async def test_add_password_makes_a_private_toml_table_the_setup_task_reads(tmp_path: Path) -> None:
    path = tmp_path / "2fa.toml"
    tricky = 'qu"ote \\ back\nline\ttab ✓'
    assert add_password(path, "+15551230001", "first") is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert add_password(path, "12", tricky) is True
    assert add_password(path, "+15551230001", "first") is False  # already there, as it is
    with pytest.raises(PasswordFileError, match=r"has another password for \+15551230001; left as it is") as err:
        add_password(path, "+15551230001", "second")
    assert "second" not in str(err.value) and "first" not in str(err.value)
    assert tomllib.loads(path.read_text()) == {"+15551230001": "first", "12": tricky}
    source = PasswordSource(TwoFAConfig(enable=True, password_file=str(path)))
    assert await source.password_for(12, None) == tricky
    assert await source.password_for(99, "+15551230001") == "first"
    assert not list(tmp_path.glob(".2fa.toml.*"))  # no temporary file left behind


def test_add_password_refuses_a_file_others_can_read_or_one_that_is_not_toml(tmp_path: Path) -> None:
    path = tmp_path / "2fa.toml"
    path.write_text('"+15551230001" = "x"\n')
    os.chmod(path, 0o644)
    with pytest.raises(PasswordFileError, match="readable by others"):
        add_password(path, "12", "pw")
    os.chmod(path, 0o600)
    path.write_text("not = [toml")
    with pytest.raises(PasswordFileError, match=r"cannot read it as TOML \(TOMLDecodeError\)"):
        add_password(path, "12", "pw")
    assert path.read_text() == "not = [toml"
