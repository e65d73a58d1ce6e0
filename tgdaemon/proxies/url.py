"""Proxy URLs: the one parser of what an operator types, and the one way a proxy is shown.

``socks5://user:pass@host:port``, ``socks4://user@host:port``, ``http://user:pass@host:port`` and
``mtproxy://host:port?secret=HEX``. What would let anyone else use the proxy (the password, the MTProxy
secret) is split off into ``ParsedProxy.secret`` and never shown: a proxy is shown as
``scheme://host:port``, so no message here ever quotes the URL it was given. The admin command parses
too, so a mistake is refused before anything is sent; the daemon parses again, as it would for any client.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from tgdaemon.logredact import REDACTOR
from tgdaemon.store.views import shown_proxy as shown

SCHEMES = ("socks5", "socks4", "http", "mtproxy")
MAX_URL = 2000
LABEL_MAX = 100
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?:(?P<userinfo>[^@/?#]*)@)?(?P<hostport>[^/?#@]*)"
                  r"(?P<path>/[^?#]*)?(?:\?(?P<query>[^#]*))?$")
_HEX = re.compile(r"^[0-9a-fA-F]+$")


class ProxyURLError(ValueError):
    """A proxy URL that cannot be used; the message never quotes the URL (it may hold a password)."""


@dataclass(frozen=True, slots=True)
class ParsedProxy:
    scheme: str
    host: str
    port: int
    username: str = ""
    secret: str = field(default="", repr=False)  # the password, or the MTProxy secret

    @property
    def shown(self) -> str:
        return shown(self.scheme, self.host, self.port)


def parse(url: str) -> ParsedProxy:
    """The proxy a URL names, or ``ProxyURLError`` with one line saying what is wrong with it."""
    url = url.strip()
    if not url:
        raise ProxyURLError("proxy URL: empty")
    if len(url) > MAX_URL:
        raise ProxyURLError(f"proxy URL: longer than {MAX_URL} characters")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise ProxyURLError("proxy URL: spaces or control characters in it")
    if "#" in url:
        raise ProxyURLError("proxy URL: a # in it; percent-encode it as %23 (in a password, say)")
    match = _URL.match(url)
    if match is None:
        raise ProxyURLError("proxy URL: expected SCHEME://[USER[:PASSWORD]@]HOST:PORT, for example"
                            " socks5://user:pass@203.0.113.7:1080")
    if match["userinfo"] is None and "@" in url:
        raise ProxyURLError("proxy URL: an @ after the host; in a user name or password, percent-encode"
                            " @ / ? : as %40 %2F %3F %3A")
    scheme = match["scheme"].lower()
    if scheme not in SCHEMES:
        raise ProxyURLError(f"proxy URL: unknown scheme {scheme!r}; one of {', '.join(SCHEMES)}")
    host, port = _host_port(match["hostport"], scheme)
    where = shown(scheme, host, port)
    if match["path"] not in (None, "", "/"):
        raise ProxyURLError(f"proxy {where}: a path after the port means nothing to a proxy; remove it")
    username, password = _userinfo(match["userinfo"], where)
    if scheme == "mtproxy":
        if match["userinfo"] is not None:
            raise ProxyURLError(f"proxy {where}: an MTProxy has no user or password, only ?secret=HEX")
        return ParsedProxy(scheme, host, port, "", _mtproxy_secret(match["query"], where))
    if match["query"]:
        raise ProxyURLError(f"proxy {where}: a query (?…) is for mtproxy:// only; remove it")
    if scheme == "socks4" and password:
        raise ProxyURLError(f"proxy {where}: SOCKS4 has a user id but no password; remove the password")
    if password and not username:
        raise ProxyURLError(f"proxy {where}: a password without a user name")
    return ParsedProxy(scheme, host, port, username, password)


def _host_port(text: str, scheme: str) -> tuple[str, int]:
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ProxyURLError(f"proxy URL ({scheme}): an IPv6 host opened with [ but not closed with ]")
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            raise ProxyURLError(f"proxy URL ({scheme}): [{host}] is not an IPv6 address") from None
        if rest and not rest.startswith(":"):
            raise ProxyURLError(f"proxy URL ({scheme}): after [{host}] comes :PORT")
        port_text = rest[1:]
    else:
        host, _, port_text = text.rpartition(":") if ":" in text else (text, "", "")
        if ":" in host:
            raise ProxyURLError(f"proxy URL ({scheme}): an IPv6 host goes in brackets: [2001:db8::1]:1080")
        if not host:
            raise ProxyURLError(f"proxy URL ({scheme}): no host")
        if not _HOSTNAME.match(host):
            raise ProxyURLError(f"proxy URL ({scheme}): the host is not a host name or an IP address")
        host = host.rstrip(".").lower()
    if not port_text:
        raise ProxyURLError(f"proxy {scheme}://{host}: no port; write HOST:PORT")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ProxyURLError(f"proxy {scheme}://{host}: the port is not a number from 1 to 65535")
    return host, int(port_text)


def _userinfo(text: str | None, where: str) -> tuple[str, str]:
    if text is None:
        return "", ""
    user, _, password = text.partition(":")
    try:
        user, password = unquote(user, errors="strict"), unquote(password, errors="strict")
    except UnicodeDecodeError:
        raise ProxyURLError(f"proxy {where}: the user or password is not valid percent-encoded UTF-8") from None
    if len(user) > 255 or len(password) > 255:
        raise ProxyURLError(f"proxy {where}: a user or password longer than 255 bytes (SOCKS5's limit)")
    return user, password


def _mtproxy_secret(query: str | None, where: str) -> str:
    params = dict(part.partition("=")[::2] for part in (query or "").split("&") if part)
    unknown = sorted(set(params) - {"secret"})
    if unknown:
        raise ProxyURLError(f"proxy {where}: unknown parameter {unknown[0]!r}; only ?secret=HEX")
    secret = params.get("secret", "")
    if not secret:
        raise ProxyURLError(f"proxy {where}: an MTProxy needs its secret: ?secret=HEX")
    if not _HEX.match(secret):
        raise ProxyURLError(f"proxy {where}: the secret is not hexadecimal")
    secret = secret.lower()
    if secret.startswith("ee"):
        raise ProxyURLError(f"proxy {where}: a fake-TLS secret (ee…) is not supported by Telethon; use the"
                            " proxy's plain or dd… secret")
    if len(secret) not in (32, 34) or (len(secret) == 34 and not secret.startswith("dd")):
        raise ProxyURLError(f"proxy {where}: the secret must be 32 hex digits (16 bytes), or dd and 32 more")
    return secret


def label_problem(label: str) -> str | None:
    if len(label) > LABEL_MAX:
        return f"proxy label: longer than {LABEL_MAX} characters"
    if any(not c.isprintable() for c in label):
        return "proxy label: control characters in it"
    return None


_remembered: set[str] = set()


def remember_secret(secret: str) -> None:
    """Every proxy secret this process has seen is redacted from its logs for the rest of its life (a
    library's debug line or a traceback could quote the one it was handed)."""
    if secret and secret not in _remembered:
        _remembered.add(secret)
        REDACTOR.add(secret)
