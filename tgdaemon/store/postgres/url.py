"""A store URL as it may be shown: without its password, and the few parts an error names."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

# libpq reads a password from the URL's user info and from these query parameters.
SECRET_PARAMS = frozenset({"password", "sslpassword"})


def redact(url: str) -> str:
    """``url`` with any password taken out (user info and query alike); the rest unchanged."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}@{hosts}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k in SECRET_PARAMS for k, _ in pairs):
            query = urlencode([(k, v) for k, v in pairs if k not in SECRET_PARAMS], safe="/")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def where(url: str) -> str:
    """``host:port/database`` (a socket directory for a host), for one-line messages."""
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    hosts = parts.netloc.rpartition("@")[2]
    user = unquote(parts.netloc.rpartition("@")[0].partition(":")[0]) if "@" in parts.netloc else ""
    host, port = hosts, params.get("port", "")
    if hosts.startswith("["):  # [::1]:5432
        end = hosts.find("]")
        host, port = hosts[1:end], hosts[end + 2:] or port
    elif ":" in hosts and "," not in hosts:
        host, _, port = hosts.partition(":")
    host = unquote(host) or params.get("host", "") or "localhost"
    database = unquote(parts.path.lstrip("/")) or params.get("dbname", "") or params.get("user", "") or user
    return f"{host}:{port or 5432}/{database or '?'}"


def password_in(url: str) -> str | None:
    """The password ``url`` carries, if any: so that no message can quote it."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    if ":" in userinfo:
        return unquote(userinfo.partition(":")[2]) or None
    return dict(parse_qsl(parts.query)).get("password") or None
