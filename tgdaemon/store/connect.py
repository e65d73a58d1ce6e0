"""Which store a daemon runs on: ``[store] url`` checked, its password found, its driver opened.

Two kinds of URL: ``sqlite:///ABSOLUTE/PATH`` (the embedded default, the data dir's file when the
URL is empty) and ``postgresql://USER@HOST:PORT/DB?sslmode=…`` (``postgres://`` too, and what
libpq accepts besides: several hosts, ``?host=/socket/dir``). A URL never holds a password: one
there would show in ``ps``, in shell history, in ``status`` and in every line that names the
store. The password comes from ``[store] password_file``, else from libpq's usual sources
(``PGPASSWORD``, ``PGPASSFILE`` or ``~/.pgpass``), which asyncpg reads by itself.

The driver is imported only when its URL is opened: a SQLite daemon never imports asyncpg.
"""

from __future__ import annotations

import logging
import re
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from tgdaemon.errors import ConfigError

if TYPE_CHECKING:
    from tgdaemon.config import Config, StoreConfig
    from tgdaemon.store.api import Store

log = logging.getLogger(__name__)
EXPECTED = "expected sqlite:///ABSOLUTE/PATH or postgresql://USER@HOST:PORT/DATABASE"
NO_PASSWORD = ("a password in the URL is refused (it would show in ps, shell history and status);"
               " put it in the file named by [store] password_file, or use PGPASSWORD or ~/.pgpass")
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_USERINFO = re.compile(r"^([A-Za-z][\w+.-]*:/*)?[^?#]*@")  # whatever precedes the host, however malformed
_PARAM_PASSWORD = re.compile(r"(?i)\b((?:ssl)?password=)[^&#]*")
TLS_FILES = ("sslrootcert", "sslcert", "sslkey", "sslcrl")  # the files libpq's URL parameters name


@dataclass(frozen=True)
class StoreURL:
    """A checked store URL. ``url`` holds no password (one is refused), so it is what status and logs show."""

    kind: Literal["sqlite", "postgresql"]
    url: str
    path: Path | None = None  # SQLite: the database file


def sqlite_url(path: Path) -> StoreURL:
    absolute = path.absolute()
    return StoreURL("sqlite", f"sqlite://{absolute}", path=absolute)


def parse_url(text: str) -> StoreURL:
    """The URL checked; ``ConfigError`` naming ``store.url`` and the problem in one line."""
    if not text.strip():
        raise ConfigError(f"store.url: empty ({EXPECTED})")
    if any(c.isspace() or not c.isprintable() for c in text):
        raise ConfigError(f"store.url: spaces or control characters in {_quoted(text)} (percent-encode them)")
    scheme, sep, _ = text.partition("://")
    if not sep:
        raise ConfigError(f"store.url: not a URL: {_quoted(text)} ({EXPECTED})")
    try:
        parts = urlsplit(text)
    except ValueError as exc:  # an unclosed [IPv6 literal, for one
        raise ConfigError(f"store.url: malformed: {exc}: {_quoted(text)}") from None
    if scheme.lower() == "sqlite":
        return _sqlite(text, parts.netloc, parts.path, parts.query or parts.fragment)
    if scheme.lower() in ("postgresql", "postgres"):
        return _postgres(text, parts.netloc, parts.path, parts.query, parts.fragment)
    raise ConfigError(f"store.url: unknown scheme {scheme!r} ({EXPECTED})")


def _quoted(text: str) -> str:
    """``text`` for an error about it, any password in it blanked: the refusal of one comes later."""
    return repr(_PARAM_PASSWORD.sub(r"\1…", _USERINFO.sub(lambda m: (m[1] or "") + "…@", text)))


def _sqlite(text: str, netloc: str, path: str, extra: str) -> StoreURL:
    if netloc or not path.startswith("/"):
        raise ConfigError(f"store.url: a sqlite URL names an absolute path, three slashes then the path from /:"
                          f" sqlite:///srv/tgfleet/tgfleet.sqlite3, got {_quoted(text)}")
    if extra:
        raise ConfigError(f"store.url: a sqlite URL takes no parameters: {_quoted(text)}")
    name = unquote(path)
    if name.endswith("/"):
        raise ConfigError(f"store.url: {_quoted(text)} names a directory, not a database file")
    return sqlite_url(Path("/" + name.lstrip("/")))  # sqlite:////abs (SQLAlchemy's form) is the same file


def _postgres(text: str, netloc: str, path: str, query: str, fragment: str) -> StoreURL:
    if fragment:
        raise ConfigError(f"store.url: a PostgreSQL URL has no #fragment: {_quoted(text)}")
    auth, _, hostspec = netloc.rpartition("@")
    user, colon, password = auth.partition(":")
    if password or _PARAM_PASSWORD.search(query):
        raise ConfigError(f"store.url: {NO_PASSWORD}")
    try:
        params = parse_qsl(query, keep_blank_values=True, strict_parsing=True) if query else []
    except ValueError:
        raise ConfigError(f"store.url: malformed parameters {query!r} (expected name=value&…)") from None
    if (mode := dict(params).get("sslmode")) is not None and mode not in SSLMODES:
        raise ConfigError(f"store.url: sslmode {mode!r} is not one of {', '.join(SSLMODES)}")
    for spec in unquote(hostspec).split(",") if hostspec else ():
        _check_host(spec, text)
    if "/" in path.strip("/"):
        raise ConfigError(f"store.url: {_quoted(text)}: the path is the database name, one word after the host")
    return StoreURL("postgresql", text if not colon else text.replace(f"{auth}@", f"{user}@", 1))  # "user:@"


def _check_host(spec: str, text: str) -> None:
    """One HOST, HOST:PORT or [V6]:PORT of the host list, its port checked."""
    host, port = spec, ""
    if spec.startswith("["):
        host, _, rest = spec.partition("]")
        host += "]"
        if rest and not rest.startswith(":"):
            raise ConfigError(f"store.url: malformed host {spec!r} in {_quoted(text)}")
        port = rest[1:]
    elif ":" in spec:
        host, _, port = spec.rpartition(":")
    if not host.strip("[]"):
        raise ConfigError(f"store.url: a host is empty in {_quoted(text)}")
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ConfigError(f"store.url: port {port!r} is not a number from 1 to 65535")


def read_password(cfg: StoreConfig) -> str | None:
    """``[store] password_file``'s content, stripped; None without one (libpq's sources then apply)."""
    if not cfg.password_file:
        return None
    path = Path(cfg.password_file).expanduser()
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"store.password_file {path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"store.password_file {path}: not UTF-8 text") from None
    password = text.strip()
    if not password:
        raise ConfigError(f"store.password_file {path}: empty")
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("store.password_file %s is readable by %s (mode %o): chmod 600 it", path,
                    "group and others" if mode & stat.S_IROTH and mode & stat.S_IRGRP
                    else "others" if mode & stat.S_IROTH else "its group", stat.S_IMODE(mode))
    return password


async def open_url(target: StoreURL, *, password: str | None = None, synchronous: str = "full") -> Store:
    """The store behind ``target``, at its latest schema; ``StoreError`` in one line when it cannot be opened."""
    if target.kind == "sqlite":
        from tgdaemon.store.sqlite import SQLiteStore

        assert target.path is not None
        if password is not None:
            log.warning("store.password_file is set, but the store is SQLite (%s): no password is used", target.url)
        return await SQLiteStore.open(target.path, synchronous)
    from tgdaemon.store.postgres import PostgresStore

    check_tls_files(target.url)
    return await PostgresStore.open(target.url, password=password, synchronous=synchronous)


def check_tls_files(url: str) -> None:
    """The files a PostgreSQL URL names for TLS readable, and ``sslrootcert`` holding a certificate: asyncpg
    reads them only as it connects, and its errors name no file ("[Errno 2] No such file or directory")."""
    params = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    for name in TLS_FILES:
        if not (value := params.get(name)):  # empty: libpq's default place (~/.postgresql/), as unset
            continue
        try:
            data = Path(value).read_bytes()
        except OSError as exc:
            raise ConfigError(f"store.url: {name} {value}: cannot read: {exc.strerror or exc}") from None
        if name == "sslrootcert":
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=data.decode("ascii", "replace"))
            except ssl.SSLError:
                raise ConfigError(f"store.url: sslrootcert {value}: no PEM certificate in it") from None


async def open_store(cfg: Config, *, password: str | None = None) -> Store:
    """The configured store (``[store] url``, else the data dir's SQLite file); ``password`` from
    ``read_password``, which the caller registers for redaction first."""
    return await open_url(cfg.store_url(), password=password, synchronous=cfg.store.synchronous)
