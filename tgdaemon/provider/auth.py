"""Bearer tokens for the provider API: issue, hash, check.

A token is ``tgf_`` + 32 random bytes (urlsafe base64), shown once by
``tgdaemon providers add``; the database keeps only its SHA-256. A plain fast
hash is right here: slow password hashes (scrypt, argon2) protect
low-entropy secrets against guessing, and 256 random bits cannot be guessed,
while a fast hash lets a pull at thousands per second be checked by an
indexed lookup. For the same reason there is no string comparison to make
constant-time: the lookup is by the hash of what the client sent, so its
timing says something only about hashes of the client's own guesses, and
finding a token from its hash is a preimage attack on SHA-256.

The token is never logged, stored, put in an event or echoed in an error.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Callable

from aiohttp import web

from tgdaemon.httpjson import Handler, error_response
from tgdaemon.runtime import RUNTIME
from tgdaemon.store.api import Provider, Store

TOKEN_PREFIX = "tgf_"
TOKEN_RE = re.compile(r"tgf_[A-Za-z0-9_-]{43}")
SEEN_INTERVAL = 10.0  # seconds between last_seen_at writes per provider: pulls must not each take the write lock
CACHE_SECONDS = 1.0  # the longest a token revoked through another node of the fleet still works on this one

PROVIDER = web.RequestKey("provider", str)  # the authenticated provider's name, for handlers


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ProviderAuth:
    """Known tokens cached in memory, and last-seen throttling.

    A cached token is dropped whenever this daemon's store changes its providers (``providers_version``, bumped
    after the commit: a revoke through this daemon holds at once), and after ``CACHE_SECONDS`` whatever
    happens: another node of the fleet may have revoked it (its own version is not this one's), and then it
    stops working here within that time. A miss is never cached, so unknown tokens cannot grow the cache.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cache: dict[str, tuple[Provider, float]] = {}  # token hash -> (provider, until, on ``clock``)
        self._version = -1
        self._written: dict[str, float] = {}  # provider name -> time of its last last_seen_at write, on ``clock``

    def cached(self, store: Store, token_hash: str) -> Provider | None:
        """The provider of a token checked within ``CACHE_SECONDS``, without a read (None: ask ``lookup``)."""
        self._follow(store)
        found = self._cache.get(token_hash)
        return found[0] if found is not None and found[1] > self._clock() else None

    async def lookup(self, store: Store, token_hash: str) -> Provider | None:
        """The provider of a token, read from the store; cached when it is one."""
        self._follow(store)
        version, at = self._version, self._clock()
        found = await store.provider_by_token_hash(token_hash)
        if found is not None and store.providers_version == version:  # no change committed meanwhile
            self._cache[token_hash] = (found, at + CACHE_SECONDS)
        return found

    def _follow(self, store: Store) -> None:
        if store.providers_version != self._version:
            self._cache.clear()
            self._version = store.providers_version

    def seen_due(self, name: str) -> bool:
        """Whether ``last_seen_at`` is to be written for this request; if so, the next ones will not be for
        ``SEEN_INTERVAL`` (set before the write is awaited, so concurrent requests do not all write)."""
        at = self._clock()
        if at - self._written.get(name, float("-inf")) < SEEN_INTERVAL:
            return False
        self._written[name] = at
        return True


AUTH = web.AppKey("provider_auth", ProviderAuth)


def _refuse(code: str, message: str) -> web.Response:
    response = error_response(401, code, message)
    response.headers["WWW-Authenticate"] = 'Bearer realm="tgfleet"'
    return response


@web.middleware
async def require_provider(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every route of the application it guards needs a live provider's token; sets ``request[PROVIDER]``.
    A known token is checked without a read and without an await (``ProviderAuth.cached``)."""
    values = request.headers.getall("Authorization", ())
    if not values:
        return _refuse("unauthorized", "missing header Authorization: Bearer <token>")
    scheme, _, token = values[0].partition(" ")
    token = token.strip()
    if len(values) > 1 or scheme.lower() != "bearer" or not TOKEN_RE.fullmatch(token):
        return _refuse("unauthorized", "malformed Authorization header: expected 'Bearer tgf_…', a token"
                                       " issued by `tgdaemon providers add`")
    store = request.config_dict[RUNTIME].store
    auth = request.app[AUTH]  # this sub-application's own
    token_hash = hash_token(token)
    provider = auth.cached(store, token_hash) or await auth.lookup(store, token_hash)
    if provider is None:
        return _refuse("unauthorized", "unknown token")
    if provider.revoked_at is not None:
        return _refuse("revoked", f"the token of provider {provider.name} was revoked")
    if auth.seen_due(provider.name):
        await store.provider_seen(provider.name)
    request[PROVIDER] = provider.name
    return await handler(request)
