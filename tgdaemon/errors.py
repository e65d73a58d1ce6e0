"""Operator-facing errors.

Each class's docstring is its default message, so a raise site only adds the
particulars. The CLI prints ``str(exc)`` on one line and exits with
``exit_code``: an operator mistake never shows a traceback.
"""

from __future__ import annotations


class TgfleetError(Exception):
    """tgfleet failed."""

    exit_code = 1

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(TgfleetError):
    """The configuration is invalid."""

    exit_code = 2


class UsageError(TgfleetError):
    """The command line is invalid."""

    exit_code = 2


class DaemonNotRunning(TgfleetError):
    """tgdaemon is not running."""


class AlreadyRunning(TgfleetError):
    """Another tgdaemon already runs on this data directory."""


class StoreError(TgfleetError):
    """The database cannot be used."""


class StoreUnavailable(StoreError):
    """The database cannot be written (disk full or an I/O error); the daemon is stopping."""


class StoreDisconnected(StoreUnavailable):
    """The database cannot be reached; the daemon waits for it to return."""


class NotFound(TgfleetError):
    """No such object."""


class Conflict(TgfleetError):
    """The request conflicts with the current state."""


class ApiError(TgfleetError):
    """The daemon refused the request."""

    def __init__(self, message: str | None = None, *, status: int = 400, code: str = "bad_request") -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        """2 when the daemon found the request itself wrong (a 400: a bad argument), else 1."""
        return 2 if self.status == 400 else 1


class BackupError(TgfleetError):
    """The backup could not be written."""


class BackupExists(BackupError):
    """The backup's target already exists."""

    @classmethod
    def at(cls, target: object) -> BackupExists:
        return cls(f"backup {target}: the file exists; choose another name, or pass --force to replace it")


class NotOwned(TgfleetError):
    """this node does not own the account now (another node does, or its lease is closing): nothing was sent"""
