"""The one classification of Telegram errors (design section 6).

Setup tasks classify exceptions (Telethon's, or the simulator's, which raises the
same Telethon classes); provider reports carry raw codes such as ``FLOOD_WAIT_30``.
Both go through the same table, keyed by Telegram's canonical upper-case code
without its number, so a code can never mean one thing in a task and another in
a report. Nothing here looks at ``exc.request``: a 2FA request carries the
password, so the human line is built from the code and Telethon's description
only.
"""

from __future__ import annotations

import asyncio
import enum
import re
import time
from dataclasses import dataclass

from telethon.errors import RPCError
from telethon.errors.rpcerrorlist import rpc_errors_dict, rpc_errors_re

from tgdaemon.errors import TgfleetError


class ErrorClass(enum.StrEnum):
    WAIT = "wait"
    SPAM_LIMITED = "spam_limited"
    DEAD_ACCOUNT = "dead_account"
    TARGET = "target"
    INPUT = "input"
    TRANSIENT = "transient"
    PROXY = "proxy"  # the account's own proxy is dead: it waits for the proxy, never for another address


@dataclass(frozen=True, slots=True)
class Classified:
    kind: ErrorClass
    code: str  # canonical: upper-case, [A-Z0-9_], no trailing number
    seconds: int | None  # always an int for WAIT and PROXY, None otherwise
    message: str  # one short line, safe to log

    @property
    def wire(self) -> str:
        """The code as Telegram writes it (FLOOD_WAIT_120): what a report carries, and what
        ``classify_code`` reads back to this."""
        return f"{self.code}_{self.seconds}" if self.seconds else self.code


class TaskInputError(TgfleetError):
    """The task's own input is unusable (missing media file, no 2FA password...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class TaskWait(TgfleetError):
    """The task cannot be done before ``until`` (Unix seconds) for a reason of its own, not the account's:
    it waits without a cooldown of the account and without costing an attempt. Telegram's rule that a session
    younger than 24 hours may not end the others (FRESH_RESET_AUTHORISATION_FORBIDDEN) is one."""

    def __init__(self, code: str, until: float, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.until = until


class ProxyDead(TgfleetError):
    """The account's own proxy was found dead: the gateway does not connect through it (nor around it)."""

    def __init__(self, proxy_id: int, shown: str, seconds: float) -> None:
        super().__init__(f"proxy {proxy_id} ({shown}) is dead; the account waits for it")
        self.seconds = max(1, round(seconds))  # until the health checker's next finding


PROXY_DEAD = "PROXY_DEAD"  # ProxyDead's code; PROXY_DEAD_300 on the wire (a report), as a wait's

# Our own input codes (TaskInputError); setup tasks should use these names.
MEDIA_FILE_MISSING = "MEDIA_FILE_MISSING"
MEDIA_UNREADABLE = "MEDIA_UNREADABLE"
MEDIA_INVALID = "MEDIA_INVALID"
NO_2FA_PASSWORD = "NO_2FA_PASSWORD"
FFMPEG_MISSING = "FFMPEG_MISSING"

DEFAULT_WAIT = 60  # a wait code that arrived without its number
MAX_WAIT = 30 * 86400  # a garbage number must not overflow a datetime
MAX_CODE = 64

_K = ErrorClass
_TABLE: dict[str, ErrorClass] = {
    # Telegram states the seconds. SLOWMODE_WAIT is per chat, but the account
    # cannot act there before X anyway; PASSWORD/SESSION_TOO_FRESH gate 2FA changes.
    **dict.fromkeys(("FLOOD_WAIT", "FLOOD_PREMIUM_WAIT", "SLOWMODE_WAIT", "FLOOD_TEST_PHONE_WAIT",
                     "STORY_SEND_FLOOD_WEEKLY", "STORY_SEND_FLOOD_MONTHLY",
                     "PASSWORD_TOO_FRESH", "SESSION_TOO_FRESH"), _K.WAIT),
    # STORIES_TOO_MUCH (a plain 400 in Telethon): the account holds the maximum of
    # active stories. Nothing is wrong with the account and stories expire within
    # 24 h, so it is a WAIT of _FIXED_WAIT seconds. Not TRANSIENT: the backoff
    # (60 s..1 h) would burn all attempts before the limit frees and fail a healthy
    # task. Not SPAM_LIMITED: that would report the account as restricted.
    "STORIES_TOO_MUCH": _K.WAIT,
    # USER_BANNED_IN_CHANNEL is Telegram's account-wide spam restriction on
    # groups/channels (a per-chat ban is CHAT_WRITE_FORBIDDEN), hence spam-limited.
    **dict.fromkeys(("PEER_FLOOD", "USER_BANNED_IN_CHANNEL"), _K.SPAM_LIMITED),
    # AUTH_KEY_INVALID: the server refuses this session for good, like UNREGISTERED.
    # Telethon's AuthKeyNotFound (transport -404) stays transient: Telethon itself
    # says it can be temporary.
    **dict.fromkeys(("AUTH_KEY_UNREGISTERED", "AUTH_KEY_INVALID", "AUTH_KEY_DUPLICATED",
                     "SESSION_REVOKED", "SESSION_EXPIRED", "USER_DEACTIVATED",
                     "USER_DEACTIVATED_BAN", "PHONE_NUMBER_BANNED",
                     "FROZEN_METHOD_INVALID", "FROZEN_PARTICIPANT_MISSING"), _K.DEAD_ACCOUNT),
    # A session younger than 24 h may not end the account's other sessions: a wait, a day at most. The
    # terminate_other_sessions task knows its session's age and waits exactly (TaskWait), without a cooldown.
    "FRESH_RESET_AUTHORISATION_FORBIDDEN": _K.WAIT,
    # The channel/post is gone or unreachable for anyone: CHANNEL_BANNED is the
    # channel banned, not us; MSG_ID_INVALID is a deleted post; an invalid invite
    # hash is as dead as an expired one.
    **dict.fromkeys(("CHANNEL_PRIVATE", "CHANNEL_INVALID", "CHANNEL_BANNED",
                     "CHANNEL_PUBLIC_GROUP_NA", "USERNAME_NOT_OCCUPIED", "USERNAME_INVALID",
                     "USERNAME_PURCHASE_AVAILABLE", "INVITE_HASH_EXPIRED",
                     "INVITE_HASH_INVALID", "INVITE_HASH_EMPTY", "MSG_ID_INVALID", "MESSAGE_ID_INVALID"), _K.TARGET),
    # Telegram rejected what we sent: retrying the same file/name/password cannot help.
    **dict.fromkeys((MEDIA_FILE_MISSING, MEDIA_UNREADABLE, MEDIA_INVALID, NO_2FA_PASSWORD, FFMPEG_MISSING,
                     "MEDIA_EMPTY", "PHOTO_INVALID", "PHOTO_INVALID_DIMENSIONS",
                     "PHOTO_CROP_SIZE_SMALL", "PHOTO_EXT_INVALID", "PHOTO_FILE_MISSING",
                     "PHOTO_CROP_FILE_MISSING", "PHOTO_SAVE_FILE_INVALID", "IMAGE_PROCESS_FAILED",
                     "VIDEO_FILE_INVALID", "VIDEO_CONTENT_TYPE_INVALID", "FILE_PARTS_INVALID",
                     "STORY_PERIOD_INVALID", "FIRSTNAME_INVALID", "LASTNAME_INVALID",
                     "ABOUT_TOO_LONG", "PASSWORD_HASH_INVALID", "PRIVACY_KEY_INVALID",
                     "PRIVACY_VALUE_INVALID"), _K.INPUT),
    PROXY_DEAD: _K.PROXY,
    # Everything else (RPC_CALL_FAIL, TIMEOUT, NETWORK, 5xx, *_MIGRATE) is TRANSIENT.
}
_FIXED_WAIT = {"STORIES_TOO_MUCH": 86400, "FRESH_RESET_AUTHORISATION_FORBIDDEN": 86400}
# Telegram answers a frozen account's calls with FROZEN_* codes (FROZEN_METHOD_INVALID, FROZEN_PARTICIPANT_MISSING
# and whatever it adds): every one of them is the account frozen, a dead account until the freeze is lifted.
FROZEN_PREFIX = "FROZEN_"

# Telethon class -> code. Taken from Telethon's own tables because instances of
# generated classes carry their base's message ("FLOOD" for FloodWaitError).
_RPC_CODES: dict[type, str] = {cls: code.upper() for code, cls in rpc_errors_dict.items()}
_RPC_CODES.update({cls: re.sub(r"_?\(\\d\+\)", "", pattern) for pattern, cls in rpc_errors_re})

_NUMBERED = re.compile(r"(.+?)_(\d+)")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _sanitise(code: str) -> str:
    code = re.sub(r"[^A-Z0-9_]+", "_", str(code)[:256].upper()).strip("_")
    return code[:MAX_CODE].rstrip("_") or "UNKNOWN"


def _line(text: str, limit: int = 160) -> str:
    """First line of ``text``, whitespace collapsed, truncated."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _make(kind: ErrorClass, code: str, seconds: int | None, detail: str | None, limit: int = 160) -> Classified:
    head = f"{code} ({kind}{f', {seconds}s' if seconds is not None else ''})"
    return Classified(kind, code, seconds, _line(f"{head}: {detail}" if detail else head, limit))


def classify_code(code: str, message: str | None = None) -> Classified:
    """Classify a raw code ("FLOOD_WAIT_30", "peer_flood", garbage). Never raises."""
    raw = _sanitise(code)
    seconds: int | None = None
    if raw not in _TABLE and (m := _NUMBERED.fullmatch(raw)):
        raw, seconds = m[1], min(int(m[2]), MAX_WAIT)
    kind = _TABLE.get(raw, ErrorClass.DEAD_ACCOUNT if raw.startswith(FROZEN_PREFIX) else ErrorClass.TRANSIENT)
    if kind in (ErrorClass.WAIT, ErrorClass.PROXY):
        seconds = seconds if seconds is not None else _FIXED_WAIT.get(raw, DEFAULT_WAIT)
    else:
        seconds = None
    return _make(kind, raw, seconds, message)


def _rpc_code(exc: RPCError) -> str:
    if (code := _RPC_CODES.get(type(exc))) is not None:
        return code
    # A base class built by rpc_message_to_error for an unlisted message (e.g.
    # BadRequestError "STORIES_TOO_MUCH", or FloodError "FROZEN_METHOD_INVALID" on
    # Telethon 1.39) has the real message on the instance, not the class.
    if isinstance(own := vars(exc).get("message"), str) and own:
        return own
    return _CAMEL.sub("_", type(exc).__name__.removesuffix("Error"))


def classify(exc: BaseException) -> Classified:
    """Classify an exception from a task. Never raises; never reads ``exc.request``."""
    if isinstance(exc, TaskWait):
        seconds = max(0, min(int(exc.until - time.time()) + 1, MAX_WAIT))
        return _make(ErrorClass.WAIT, _sanitise(exc.code), seconds, str(exc), limit=600)
    if isinstance(exc, ProxyDead):
        return _make(ErrorClass.PROXY, PROXY_DEAD, min(exc.seconds, MAX_WAIT), str(exc))
    if isinstance(exc, TaskInputError):
        # Our own text, which names the file or source: long paths must survive into last_error.
        return _make(ErrorClass.INPUT, _sanitise(exc.code), None, str(exc), limit=600)
    if isinstance(exc, RPCError):
        # Telethon's str() is "<description> (caused by <RequestClassName>)".
        detail = str(exc).split(" (caused by ", 1)[0]
        result = classify_code(_rpc_code(exc), detail)
        told = getattr(exc, "seconds", None)
        # Only a WAIT takes .seconds: FrozenMethodInvalidError is a FloodError
        # without seconds, and it is a dead account, not a wait.
        if result.kind is ErrorClass.WAIT and isinstance(told, int):
            result = _make(ErrorClass.WAIT, result.code, max(0, min(told, MAX_WAIT)), detail)
        return result
    # Telethon's errors.TimeoutError is an RPCError (handled above); these are the
    # builtin one (asyncio.TimeoutError is the same class on 3.11) and the network.
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return _make(ErrorClass.TRANSIENT, "TIMEOUT", None, str(exc) or type(exc).__name__)
    if isinstance(exc, OSError):
        return _make(ErrorClass.TRANSIENT, "NETWORK", None, f"{type(exc).__name__}: {exc}")
    # Telethon's own non-RPC errors (TypeNotFoundError, InvalidBufferError...) may
    # quote raw payload bytes in str(): keep only their name.
    name = type(exc).__name__
    said = None if type(exc).__module__.startswith("telethon") else str(exc) or None
    return _make(ErrorClass.TRANSIENT, _sanitise(_CAMEL.sub("_", name)), None, said)


def is_frozen(code: str | None) -> bool:
    """Whether a classified code says the account is frozen (rather than otherwise dead)."""
    return bool(code) and str(code).startswith(FROZEN_PREFIX)


__all__ = ["Classified", "ErrorClass", "PROXY_DEAD", "ProxyDead", "TaskInputError", "TaskWait", "classify",
           "classify_code", "is_frozen",
           "MEDIA_FILE_MISSING", "MEDIA_UNREADABLE", "MEDIA_INVALID", "NO_2FA_PASSWORD"]
