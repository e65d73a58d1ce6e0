"""``accounts export``: each account's session as a file another tool opens, mode 600, never over one
that exists.

* ``telethon-string``: ``LABEL.txt``, the string session, a tab and the label (what ``accounts import``
  reads back, label and all);
* ``telethon-session``: ``LABEL.session``, written by Telethon's own SQLiteSession;
* ``pyrogram``: ``LABEL.session`` with Pyrogram's schema (version 3), its api_id, test mode and user id.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from tgdaemon.sessionfiles import pyrogram_session, telethon_session, telethon_string
from tgdaemon.sessionfiles.dcs import is_test
from tgdaemon.sessionfiles.pyrogram_string import PyrogramSession

SUFFIX = {"telethon-string": ".txt", "telethon-session": ".session", "pyrogram": ".session"}
UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


@dataclass(frozen=True)
class Exported:
    account_id: int
    label: str
    dc_id: int
    server: str
    port: int
    auth_key: bytes = field(repr=False)
    user_id: int | None = None
    api_id: int | None = None


def file_names(sessions: list[Exported], fmt: str) -> list[str]:
    """One name per session, from its label (made safe for a file name), unique among them: a label that
    is not (or two accounts with one label) gets the account id added."""
    stems = [UNSAFE.sub("_", s.label).strip("._") or f"account-{s.account_id}" for s in sessions]
    taken = {stem.lower() for stem in stems if sum(x.lower() == stem.lower() for x in stems) == 1}
    return [(stem if stem.lower() in taken else f"{stem}-{s.account_id}") + SUFFIX[fmt]
            for stem, s in zip(stems, sessions, strict=True)]


def create_private(path: Path) -> int:
    """A new file, mode 600 from its first moment; FileExistsError when there is one."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def write(path: Path, fmt: str, session: Exported) -> None:
    """``path`` is created here (refused when it exists); a writer's failure removes what it began."""
    os.close(create_private(path))  # SQLite opens an empty file as a new database, keeping its mode
    try:
        if fmt == "telethon-string":
            text = telethon_string.write(session.dc_id, session.server, session.port, session.auth_key)
            path.write_text(f"{text}\t{session.label}\n", encoding="utf-8")
        elif fmt == "telethon-session":
            telethon_session.write(path, session.dc_id, session.server, session.port, session.auth_key)
        else:
            pyrogram_session.write(path, PyrogramSession(session.dc_id, session.api_id, is_test(session.server),
                                                         session.auth_key, session.user_id, False))
        os.chmod(path, 0o600)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
