"""The data dir and its lock: one daemon per data dir, because SQLite has one writer here."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from tgdaemon.errors import AlreadyRunning, StoreError

LOCK_NAME = "tgdaemon.lock"
DB_NAME = "tgfleet.sqlite3"


class DataDirLock:
    """An flock on ``data_dir/tgdaemon.lock``, held for the daemon's life; the kernel frees it on a crash."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(f"data dir {self.data_dir}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise AlreadyRunning(
                f"another tgdaemon (pid {holder}) is already running on data dir {self.data_dir}; "
                "stop it first or use another --data-dir"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:  # a full disk: say so in one line, like every other write failure
            os.close(fd)
            raise StoreError(f"data dir {self.data_dir}: cannot write {LOCK_NAME}: {exc.strerror}") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.ftruncate(fd, 0)
            finally:
                os.close(fd)  # closing is what frees the flock: never skipped
