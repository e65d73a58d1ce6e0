"""Which format a path is, and reading it: the one entry point of ``accounts import``.

* a folder: Telegram Desktop's ``tdata`` (or a folder with one inside);
* an SQLite file: Telethon's ``.session`` or Pyrogram's, told apart by the columns of ``sessions``,
  with the ``.json`` sidecar beside it when there is one;
* a ``.json`` file: the sidecar of the ``.session`` beside it (that pair is read once however it is named);
* any other file: text, one Telethon or Pyrogram string session a line, optionally followed by a tab and
  a label; empty lines and lines starting with ``#`` are skipped.

A corrupt file, line or folder is a problem line, never an exception.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from tgdaemon.sessionfiles import (
    Broken,
    Found,
    label_for,
    pyrogram_session,
    pyrogram_string,
    sidecar,
    tdata,
    telethon_session,
    telethon_string,
)
from tgdaemon.sessionfiles.dcs import address
from tgdaemon.sessionfiles.sqlitefile import is_sqlite, session_columns
from tgdaemon.store import Device

MAX_TEXT_FILE = 64 * 1024 * 1024


def read_paths(paths: Iterable[Path], prefix: str = "", passcode: str | None = None,
               ) -> tuple[list[Found], list[str]]:
    """Every session in ``paths``, and a problem line for each thing that could not be read. A session
    found twice (the same auth key) is kept once; the second is a problem naming the first."""
    found: list[Found] = []
    problems: list[str] = []
    seen_files: set[Path] = set()
    seen_keys: dict[bytes, str] = {}
    for path in paths:
        items, bad = read_path(path, prefix, passcode, seen_files)
        problems.extend(bad)
        for item in items:
            if (first := seen_keys.get(item.auth_key)) is not None:
                problems.append(f"{item.source}: the same session as {first}")
                continue
            seen_keys[item.auth_key] = item.source
            found.append(item)
    return found, problems


def read_path(path: Path, prefix: str = "", passcode: str | None = None, seen: set[Path] | None = None,
              ) -> tuple[list[Found], list[str]]:
    seen = set() if seen is None else seen
    try:
        if path.is_dir():
            return _tdata(path, prefix, passcode)
        if path.suffix.lower() == ".json":
            session = path.with_suffix(".session")
            if not session.is_file():
                return [], [f"{path}: a sidecar without its .session file ({session.name})"]
            path = session
        if path.resolve() in seen:
            return [], []  # the pair was named twice (session.json and session.session): read once
        seen.add(path.resolve())
        with path.open("rb") as f:
            head = f.read(16)
        if is_sqlite(head):
            return [_sqlite(path, prefix)], []
        return _lines(path, prefix)
    except FileNotFoundError:
        return [], [f"{path}: no such file or folder"]
    except OSError as exc:
        return [], [f"{path}: cannot read: {exc.strerror}"]
    except Broken as exc:
        return [], [str(exc)]
    except Exception as exc:  # the operator's files are anything: a value of a type no format has, say
        return [], [f"{path}: cannot be read as a session ({type(exc).__name__})"]


def _sqlite(path: Path, prefix: str) -> Found:
    columns = session_columns(path)
    extra = _sidecar(path)
    label = prefix + label_for(path.stem)
    if telethon_session.COLUMNS <= columns:
        dc_id, server, port, key = telethon_session.read(path)
        return _found(str(path), label, "telethon-session", dc_id, server, port, key, extra)
    if pyrogram_session.COLUMNS <= columns:
        return _pyrogram(str(path), label, "pyrogram-session", pyrogram_session.read(path, columns), extra)
    raise Broken(f"{path}: an SQLite file, but neither a Telethon nor a Pyrogram session"
                 + (" (no sessions table)" if not columns else ""))


def _sidecar(path: Path) -> tuple[sidecar.Sidecar, str] | None:
    side = sidecar.path_for(path)
    return (sidecar.read(side), str(side)) if side.is_file() else None


def _found(source: str, label: str, kind: str, dc_id: int, server: str, port: int, key: bytes,
           extra: tuple[sidecar.Sidecar, str] | None, device: Device = Device()) -> Found:
    if extra is None:
        return Found(source, label, kind, dc_id, server, port, key, device)
    side, side_path = extra
    own = side.device if side.device.api_id is not None else replace(side.device, api_id=device.api_id)
    return Found(source, label, kind, dc_id, server, port, key, own, side.phone, side.password, side_path)


def _pyrogram(source: str, label: str, kind: str, session: pyrogram_string.PyrogramSession,
              extra: tuple[sidecar.Sidecar, str] | None) -> Found:
    if session.is_bot:
        raise Broken(f"{source}: a bot's session (tgfleet runs user accounts)")
    where = address(session.dc_id, session.test_mode)
    if where is None:
        raise Broken(f"{source}: DC {session.dc_id} is not a Telegram data centre"
                     + (" (test mode)" if session.test_mode else ""))
    return _found(source, label, kind, session.dc_id, *where, session.auth_key, extra, Device(api_id=session.api_id))


def _lines(path: Path, prefix: str) -> tuple[list[Found], list[str]]:
    if path.stat().st_size > MAX_TEXT_FILE:
        return [], [f"{path}: larger than {MAX_TEXT_FILE} bytes: not a file of string sessions"]
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        return [], [f"{path}: neither a session file nor a text file of string sessions"]
    items, problems = [], []
    for number, line in enumerate(lines, 1):
        text, _, label = line.strip().partition("\t")
        text, label = text.strip(), prefix + (label.strip() or f"{path.stem}-{number}")
        if not text or text.startswith("#"):
            continue
        source = f"{path}:{number}"
        try:
            if telethon_string.looks_like(text):
                items.append(_found(source, label, "telethon-string", *telethon_string.read(text), None))
            elif pyrogram_string.looks_like(text):
                items.append(_pyrogram(source, label, "pyrogram-string", pyrogram_string.read(text), None))
            else:
                raise Broken("neither a Telethon nor a Pyrogram string session")
        except Broken as exc:
            problems.append(str(exc) if str(exc).startswith(source) else f"{source}: {exc}")
    if not items and not problems:
        problems.append(f"{path}: no sessions in it")
    return items, problems


def _tdata(path: Path, prefix: str, passcode: str | None) -> tuple[list[Found], list[str]]:
    folder = tdata.find(path)
    if folder is None:
        return [], [f"{path}: a folder, but not Telegram Desktop's tdata (no key_datas in it)"]
    accounts, problems = tdata.read(folder, passcode)
    name = label_for((folder.parent if folder.name == "tdata" else folder).name or "tdata")
    items = []
    for account in accounts:
        source = str(folder) if account.index == 0 else f"{folder}#{account.index + 1}"
        where = address(account.dc_id)
        if where is None:
            problems.append(f"{source}: DC {account.dc_id} is not a Telegram data centre")
            continue
        label = prefix + (name if account.index == 0 else f"{name}-{account.index + 1}")
        items.append(Found(source, label, "tdata", account.dc_id, *where, account.auth_key))
    return items, problems
