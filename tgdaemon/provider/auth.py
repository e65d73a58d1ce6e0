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

from aiohttp import web

from tgdaemon.httpjson import Handler, error_response
from tgdaemon.runtime import RUNTIME
from tgdaemon.store.api import Provider, Store

TOKEN_PREFIX = "tgf_"
TOKEN_RE = re.compile(r"tgf_[A-Za-z0-9_-]{43}")
SEEN_INTERVAL = 10.0  # seconds between last_seen_at writes per provider: pulls must not each take the write lock

PROVIDER = web.RequestKey("provider", str)  # the authenticated provider's name, for handlers


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ProviderAuth:
    """Known tokens cached in memory (dropped whenever the store's providers change), and last-seen throttling."""

    def __init__(self) -> None:
        self._cache: dict[str, Provider] = {}
        self._version = -1
        self._written: dict[str, float] = {}  # provider name -> monotonic time of its last last_seen_at write

    async def lookup(self, store: Store, token_hash: str) -> Provider | None:
        version = store.providers_version
        if version != self._version:
            self._cache.clear()
            self._version = version
        if (found := self._cache.get(token_hash)) is not None:
            return found
        found = await store.provider_by_token_hash(token_hash)
        if found is not None and store.providers_version == version:  # only known tokens: misses cannot grow it
            self._cache[token_hash] = found
        return found

    async def seen(self, store: Store, name: str) -> None:
        at = time.monotonic()
        if at - self._written.get(name, float("-inf")) >= SEEN_INTERVAL:
            self._written[name] = at  # before the await, so concurrent requests do not all write
            await store.provider_seen(name)


AUTH = web.AppKey("provider_auth", ProviderAuth)


def _refuse(code: str, message: str) -> web.Response:
    response = error_response(401, code, message)
    response.headers["WWW-Authenticate"] = 'Bearer realm="tgfleet"'
    return response


@web.middleware
async def require_provider(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every route of the application it guards needs a live provider's token; sets ``request[PROVIDER]``."""
    values = request.headers.getall("Authorization", [])
    if not values:
        return _refuse("unauthorized", "missing header Authorization: Bearer <token>")
    scheme, _, token = values[0].partition(" ")
    token = token.strip()
    if len(values) > 1 or scheme.lower() != "bearer" or not TOKEN_RE.fullmatch(token):
        return _refuse("unauthorized", "malformed Authorization header: expected 'Bearer tgf_…', a token"
                                       " issued by `tgdaemon providers add`")
    store = request.config_dict[RUNTIME].store
    auth = request.config_dict[AUTH]
    provider = await auth.lookup(store, hash_token(token))
    if provider is None:
        return _refuse("unauthorized", "unknown token")
    if provider.revoked_at is not None:
        return _refuse("revoked", f"the token of provider {provider.name} was revoked")
    await auth.seen(store, provider.name)
    request[PROVIDER] = provider.name
    return await handler(request)
