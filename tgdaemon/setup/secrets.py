"""Where 2FA passwords come from: a file only the daemon's user can read, or a command.

A password lives in memory only as long as the task that sets it; it is never
stored in the database, logged, put in an event or an API answer, and the
errors raised here name the source, never the password.

The password file is one TOML table for the whole fleet, one password per
account, keyed by the account's phone (``"+15551234567" = "..."``) or, for
an account whose phone is not known, its id (``"12" = "..."``); the phone is
looked for first. ``accounts import --save-2fa`` adds the passwords found in
sidecars to it (``add_password``), never changing one that is there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import stat
import tomllib
from pathlib import Path

from tgdaemon.classify import NO_2FA_PASSWORD, TaskInputError
from tgdaemon.config import TwoFAConfig

COMMAND_TIMEOUT = 15.0


class PasswordSource:
    def __init__(self, cfg: TwoFAConfig) -> None:
        self.cfg = cfg

    async def password_for(self, account_id: int, phone: str | None) -> str:
        if self.cfg.password_file:
            found = self._from_file(Path(self.cfg.password_file).expanduser(), account_id, phone)
        elif self.cfg.password_command:
            found = await self._from_command(account_id, phone)
        else:
            raise TaskInputError(NO_2FA_PASSWORD, "setup.2fa.enable is on but neither password_file nor "
                                                  "password_command is configured")
        if not found:
            raise TaskInputError(NO_2FA_PASSWORD, f"no 2FA password for account {account_id} in the configured "
                                                  "secret source")
        return found

    def _from_file(self, path: Path, account_id: int, phone: str | None) -> str | None:
        """A TOML table of ``"<phone>" = "<password>"`` or ``"<account id>" = "<password>"``."""
        try:
            info = path.stat()
            if stat.S_IMODE(info.st_mode) & 0o077:
                raise TaskInputError(NO_2FA_PASSWORD, f"password_file {path} is readable by others "
                                                      f"(mode {stat.S_IMODE(info.st_mode):o}); chmod 600 it")
            if info.st_uid != os.geteuid():
                raise TaskInputError(NO_2FA_PASSWORD, f"password_file {path} is not owned by the daemon's user")
            table = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TaskInputError(NO_2FA_PASSWORD, f"password_file {path}: no such file") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            # Never the exception text of a parse error: it can quote the file's content.
            raise TaskInputError(NO_2FA_PASSWORD, f"password_file {path}: cannot read it as TOML "
                                                  f"({type(exc).__name__})") from None
        for key in (phone, str(account_id)):
            value = table.get(key) if key else None
            if isinstance(value, str) and value:
                return value
        return None

    async def _from_command(self, account_id: int, phone: str | None) -> str | None:
        """The first line the command prints; it gets the account as TGFLEET_ACCOUNT_ID and TGFLEET_PHONE."""
        env = {**os.environ, "TGFLEET_ACCOUNT_ID": str(account_id), "TGFLEET_PHONE": phone or ""}
        try:
            proc = await asyncio.create_subprocess_exec(
                *shlex.split(self.cfg.password_command), env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
            out, _ = await asyncio.wait_for(proc.communicate(), COMMAND_TIMEOUT)
        except (OSError, ValueError) as exc:
            raise TaskInputError(NO_2FA_PASSWORD, f"password_command cannot run: {type(exc).__name__}") from None
        except TimeoutError:
            proc.kill()
            raise TaskInputError(NO_2FA_PASSWORD, f"password_command took longer than {COMMAND_TIMEOUT:.0f} s") from None
        if proc.returncode != 0:
            raise TaskInputError(NO_2FA_PASSWORD, f"password_command exited with {proc.returncode}")
        lines = out.decode(errors="replace").splitlines()
        return lines[0].strip() if lines else None


class PasswordFileError(Exception):
    """The password file cannot take a password; the message names the file and the key, never a password."""


def toml_string(text: str) -> str:
    """A TOML basic string of ``text``: quotes, backslashes and control characters escaped, the rest as is."""
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def add_password(path: Path, key: str, password: str) -> bool:
    """Add ``"key" = "password"`` to the password file, made mode 600 when it is not there; False when the
    key has this password already. The file is replaced whole (a new file, then a rename), so a crash
    leaves the old one or the new one, never half of one."""
    try:
        info = path.stat()
    except FileNotFoundError:
        text, table = "", {}
    else:
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise PasswordFileError(f"password_file {path} is readable by others "
                                    f"(mode {stat.S_IMODE(info.st_mode):o}); chmod 600 it")
        if info.st_uid != os.geteuid():
            raise PasswordFileError(f"password_file {path} is not owned by the daemon's user")
        try:
            text = path.read_text(encoding="utf-8")
            table = tomllib.loads(text)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise PasswordFileError(f"password_file {path}: cannot read it as TOML ({type(exc).__name__})") from None
    if key in table:
        if table[key] == password:
            return False
        raise PasswordFileError(f"password_file {path} has another password for {key}; left as it is")
    new = text + ("" if not text or text.endswith("\n") else "\n") + f"{toml_string(key)} = {toml_string(password)}\n"
    if tomllib.loads(new).get(key) != password:  # what the setup task will read back
        raise PasswordFileError(f"password_file {path}: the password for {key} would not read back; not added")
    temp = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(new)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return True
