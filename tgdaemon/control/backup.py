"""``POST /v1/backup``: an online copy of the database, written by the daemon to a path the operator names.

The path is checked before anything is written: absolute (the CLI resolves
it; the daemon's working directory is nobody's business), its directory
existing, not taken unless ``force``, and never one of the live data dir's
own files, which a ``--force`` would otherwise replace under the running
daemon.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated

import msgspec
from aiohttp import web

from tgdaemon.errors import ApiError, BackupError, BackupExists
from tgdaemon.httpjson import json_response, read_body
from tgdaemon.lifecycle.datadir import DB_NAME, LOCK_NAME
from tgdaemon.runtime import RUNTIME
from tgdaemon.wire import BackupWritten

log = logging.getLogger(__name__)
LIVE_FILES = (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal", LOCK_NAME)


class BackupBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    path: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    force: bool = False


def check_target(raw: str, data_dir: Path, *, force: bool) -> Path:
    """The target as given, once it is known to be a place a backup may go; else a 400/409 naming it."""
    try:
        return _check_target(raw, data_dir, force=force)
    except OSError as exc:  # a name too long, a directory the daemon may not search, …
        raise ApiError(f"backup {raw}: {exc.strerror or exc}", code="invalid_path") from None


def _check_target(raw: str, data_dir: Path, *, force: bool) -> Path:
    if "\x00" in raw:
        raise ApiError("backup path: must not contain a NUL byte", code="invalid_path")
    target = Path(raw)
    if not target.is_absolute():
        raise ApiError(f"backup {raw}: the path must be absolute", code="invalid_path")
    if not target.parent.is_dir():
        raise ApiError(f"backup {target}: directory {target.parent} does not exist", code="invalid_path")
    live = {(data_dir / name).resolve() for name in LIVE_FILES}
    if target.resolve() in live:
        raise ApiError(f"backup {target}: that is one of the running daemon's own files in {data_dir};"
                       " write the backup somewhere else", code="invalid_path")
    if target.is_dir():
        raise ApiError(f"backup {target}: that is a directory; name the file to write", code="invalid_path")
    if not force and (target.exists() or target.is_symlink()):
        raise ApiError(str(BackupExists.at(target)), status=409, code="backup_exists")
    return target


async def backup(request: web.Request) -> web.Response:
    body = await read_body(request, BackupBody)
    rt = request.config_dict[RUNTIME]
    target = check_target(body.path, rt.cfg.data_dir(), force=body.force)
    started = time.monotonic()
    try:
        size = await rt.store.backup(target, replace=body.force)
    except BackupExists as exc:
        raise ApiError(str(exc), status=409, code="backup_exists") from None
    except BackupError as exc:
        raise ApiError(str(exc), status=409, code="backup_failed") from None
    seconds = time.monotonic() - started
    log.info("backup written to %s: %d bytes in %.2f s", target, size, seconds)
    return json_response(BackupWritten(path=str(target), bytes=size, seconds=round(seconds, 3)), status=201)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/backup", backup)
