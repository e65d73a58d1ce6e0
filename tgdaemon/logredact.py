"""One redaction step over every line the daemon logs.

Secrets reach a log by routes nobody writes on purpose: a parser error that
quotes the raw header line, a library's debug output, a repr in a traceback.
So redaction is not left to each call site: ``install`` wraps the formatter
of every root handler, and what it redacts is the final text, message and
exception together, after every ``%`` argument and traceback is in it.

What it removes: provider tokens (``tgf_…``), ``Authorization`` and
``Bearer`` values, long hex/base64 blobs and long byte literals (auth keys
look like these), values of ``password=``/``secret=``-style fields, the
password of a ``scheme://user:password@host`` URL (a proxy's), phone
numbers beyond the masked form, and the exact secrets registered here (the
configured proxy password and secret, every account proxy's password or
secret this process has handled, the api_hash, the database password
from ``[store] password_file`` or PGPASSWORD, a 2FA password while a task
holds it). ``aiohttp.server``'s report of a malformed request, which
quotes the bytes it could not parse, is cut to one line without them.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType

from aiohttp.http_exceptions import HttpProcessingError

from tgdaemon.config import Config
from tgdaemon.store.views import mask_phone

REDACTED = "[redacted]"
MIN_SECRET = 4  # a registered secret shorter than this would blank ordinary words; the patterns still apply
BAD_REQUEST_BURST = 20  # lines about malformed requests written at once; past that, ...
BAD_REQUEST_RATE = 1.0  # ... one per second, and the ones left out are counted in the next

_TOKEN = re.compile(r"tgf_[A-Za-z0-9_-]{4,}")
_AUTHORIZATION = re.compile(r"(?i)\b((?:proxy-)?authorization['\"]?\s*[:=]\s*)(['\"]?)[^\r\n'\"]*")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s'\",;]+")
_FIELD_WORDS = ("password", "passwd", "secret", "api_hash", "auth_key")
_FIELD = re.compile(r"(?i)\b((?:new_|current_)?(?:password|passwd|secret|api_hash|auth_key)['\"]?\s*[:=]\s*)"
                    r"(b?'[^']*'|b?\"[^\"]*\"|[^\s,;)}\]]+)")
_HEX = re.compile(r"\b[0-9a-fA-F]{64,}\b")
_B64 = re.compile(r"[A-Za-z0-9+/_-]{64,}={0,2}")
_BYTES = re.compile(r"b'(?:[^'\\\n]|\\.){32,}'|b\"(?:[^\"\\\n]|\\.){32,}\"")
_PHONE = re.compile(r"\+\d[\d ()-]{5,18}\d")
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@")  # a proxy URL's user:PASSWORD@
_PHONE_FIELD = re.compile(r"(?i)\b(phone\w*['\"]?\s*[:=]\s*['\"]?)(\d{7,15})\b")


def _blob(match: re.Match[str]) -> str:
    """Only what looks random: a long word mixing upper case, lower case and digits (paths and names do not)."""
    text = match.group(0)
    if any(c.isupper() for c in text) and any(c.islower() for c in text) and any(c.isdigit() for c in text):
        return REDACTED
    return text


def _byte_literal(match: re.Match[str]) -> str:
    return REDACTED if match.group(0).count("\\x") >= 8 else match.group(0)


def _phone(match: re.Match[str]) -> str:
    return mask_phone("+" + re.sub(r"\D", "", match.group(0))) or ""


class Redactor:
    """The patterns plus the exact secrets known to this process (reference-counted, so nesting is safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[str, int] = {}
        self._known_re: re.Pattern[str] | None = None

    def add(self, secret: str) -> None:
        if len(secret) < MIN_SECRET:
            return
        with self._lock:
            self._known[secret] = self._known.get(secret, 0) + 1
            self._rebuild()

    def discard(self, secret: str) -> None:
        with self._lock:
            count = self._known.get(secret)
            if count is None:
                return
            if count > 1:
                self._known[secret] = count - 1
            else:
                del self._known[secret]
            self._rebuild()

    @contextmanager
    def secret(self, value: str) -> Iterator[None]:
        """Redact ``value`` for as long as the block runs (a 2FA password is not remembered past its task)."""
        self.add(value)
        try:
            yield
        finally:
            self.discard(value)

    def _rebuild(self) -> None:
        longest_first = sorted(self._known, key=len, reverse=True)
        self._known_re = re.compile("|".join(map(re.escape, longest_first))) if longest_first else None

    def redact(self, text: str) -> str:
        """Each pattern only where a cheap substring test says it can match: most lines have none."""
        known = self._known_re
        if known is not None:
            text = known.sub(REDACTED, text)
        lower = text.lower()
        if "tgf_" in text:
            text = _TOKEN.sub("tgf_" + REDACTED, text)
        if "authorization" in lower:
            text = _AUTHORIZATION.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
        if "bearer" in lower:
            text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
        if any(word in lower for word in _FIELD_WORDS):
            text = _FIELD.sub(lambda m: m.group(1) + REDACTED, text)
        if "b'" in text or 'b"' in text:
            text = _BYTES.sub(_byte_literal, text)
        if "://" in text and "@" in text:
            text = _URL_PASSWORD.sub(lambda m: m.group(1) + REDACTED + "@", text)
        text = _HEX.sub(REDACTED, text)
        text = _B64.sub(_blob, text)
        if "+" in text:
            text = _PHONE.sub(_phone, text)
        if "phone" in lower:
            text = _PHONE_FIELD.sub(lambda m: m.group(1) + (mask_phone(m.group(2)) or ""), text)
        return text


REDACTOR = Redactor()


class RedactingFormatter(logging.Formatter):
    """Formats with the handler's own formatter, then redacts the whole text (exception and stack included)."""

    def __init__(self, inner: logging.Formatter | None, redactor: Redactor = REDACTOR) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor.redact(self.inner.format(record))


class BadRequestFilter(logging.Filter):
    """``aiohttp.server``'s "Error handling request" for a request it could not parse, as one line.

    aiohttp logs those at ERROR with a traceback whose message quotes the raw
    bytes, headers included. A malformed request is the client's mistake: one
    WARNING line with the status and the kind of error is enough, and a flood
    of them is thinned by a token bucket, the lines left out counted.
    """

    def __init__(self) -> None:
        super().__init__()
        self._allowance = float(BAD_REQUEST_BURST)
        self._at = time.monotonic()
        self._skipped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        now = time.monotonic()
        self._allowance = min(float(BAD_REQUEST_BURST), self._allowance + (now - self._at) * BAD_REQUEST_RATE)
        self._at = now
        if self._allowance < 1:
            self._skipped += 1
            return False
        self._allowance -= 1
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        more = f" ({self._skipped} more since the last such line)" if self._skipped else ""
        self._skipped = 0
        record.msg = "bad HTTP request from %s: %s %s%s"
        record.args = (remote, exc.code, describe(exc), more)
        record.exc_info = record.exc_text = None
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def describe(exc: HttpProcessingError) -> str:
    """The parser's complaint without the bytes it quotes: its first line, up to a colon or a quote."""
    first = (exc.message or type(exc).__name__).strip().splitlines()[0]
    return re.split(r"[:'\"]|\bb'", first, maxsplit=1)[0].strip()[:80] or type(exc).__name__


def configured_secrets(cfg: Config, env: Mapping[str, str] = os.environ) -> list[str]:
    """What the config and environment give away; the store's password_file is read, and its password
    registered, by the daemon that opens the store (``REDACTOR.secret``)."""
    proxy = cfg.telegram.proxy
    return [s for s in (proxy.password, proxy.secret, cfg.telegram.api_hash, env.get("PGPASSWORD", "")) if s]


def _log_uncaught(kind: str, exc_type: type[BaseException], exc: BaseException,
                  tb: TracebackType | None) -> None:
    logging.getLogger("tgdaemon").critical("uncaught exception in %s", kind, exc_info=(exc_type, exc, tb))


def install(secrets: Iterable[str] = (), root: logging.Logger | None = None) -> None:
    """Redact every handler of the root logger, register ``secrets``, and route uncaught exceptions through it.

    Call it right after ``logging.basicConfig``.
    """
    root = root or logging.getLogger()
    for handler in root.handlers:
        if not isinstance(handler.formatter, RedactingFormatter):
            handler.setFormatter(RedactingFormatter(handler.formatter))
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, BadRequestFilter) for f in server.filters):
        server.addFilter(BadRequestFilter())
    for value in secrets:
        REDACTOR.add(value)
    # Python prints these straight to stderr, past every handler; send them through the redacting one.
    sys.excepthook = lambda t, e, tb: _log_uncaught("the main thread", t, e, tb)
    threading.excepthook = lambda a: _log_uncaught(f"thread {a.thread.name if a.thread else '?'}",
                                                   a.exc_type, a.exc_value or a.exc_type(), a.exc_traceback)
