"""JSON over aiohttp, shared by the control API and the provider API.

A client mistake is never a 5xx: every error leaves as
``{"error": {"code", "message"}}`` with a 4xx, and an unexpected failure is
logged here and answered with a bare 500 that carries no internals. A
database that cannot be written any more is a 503: the daemon is stopping. One
that cannot be reached is a 503 too, ``store_unavailable`` with a Retry-After:
the daemon is retrying, and so should the client.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from tgdaemon.errors import (
    ApiError,
    NotFound,
    StoreDisconnected,
    StoreUnavailable,
    TgfleetError,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_BODY = 1024 * 1024
RETRY_AFTER_SECONDS = 5  # while the database is out of reach: half the daemon's longest wait between its retries
_encoder = msgspec.json.Encoder()
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}  # one per body type: a typed decoder built once, not per request


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(data), status=status, content_type="application/json")


def error_response(status: int, code: str, message: str) -> web.Response:
    return json_response({"error": {"code": code, "message": message}}, status=status)


def _validation_message(exc: msgspec.ValidationError | msgspec.DecodeError, what: str) -> str:
    text = str(exc)
    if " - at `$" in text:
        msg, _, path = text.partition(" - at `$")
        path = path.rstrip("`").lstrip(".")
        return f"{what} {path}: {msg[0].lower()}{msg[1:]}" if path else f"{what}: {msg}"
    return f"{what}: {text[0].lower()}{text[1:]}" if text else what


async def read_body(request: web.Request, type_: type[T]) -> T:
    """The request's JSON body as ``type_``; 415, 413 or 400 with a message naming the field."""
    if request.content_type != "application/json":
        raise ApiError("the body must be application/json", status=415, code="unsupported_media_type")
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(f"the body is larger than {MAX_BODY} bytes", status=413, code="too_large")
    raw = await request.read()
    if b"\\u0000" in raw:  # rare: only then is the body walked
        _refuse_nul(raw)
    if (decoder := _decoders.get(type_)) is None:
        decoder = _decoders[type_] = msgspec.json.Decoder(type_)
    try:
        return decoder.decode(raw)  # type: ignore[no-any-return]
    except msgspec.ValidationError:  # (a subclass of DecodeError)
        pass  # perhaps only 5.0 where an integer goes: the slow path, for refused bodies only
    except msgspec.DecodeError as exc:
        raise ApiError(_validation_message(exc, "body"), code="invalid_body") from None
    try:
        return msgspec.convert(_integral_floats_as_ints(msgspec.json.decode(raw)), type_)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:  # a typed decode can fail before the syntax does
        raise ApiError(_validation_message(exc, "body"), code="invalid_body") from None
    except RecursionError:  # the untyped decode follows any nesting; the typed one had refused the body early
        raise ApiError("body: nested too deeply", code="invalid_body") from None


NUL_MESSAGE = "text may not hold the NUL character (U+0000)"


def _refuse_nul(raw: bytes) -> None:
    """A NUL in any string is refused, on both stores alike: PostgreSQL cannot store one in text or jsonb,
    and no name, reason or Telegram error holds one."""
    try:
        value = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return  # the typed decode says what is wrong with it
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str) and "\x00" in item:
            raise ApiError(f"body: {NUL_MESSAGE}", code="invalid_body")
        if isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            stack += item


def _integral_floats_as_ints(value: Any) -> Any:
    """``5.0`` as ``5``: JSON Schema counts a number with a zero fraction as an integer, msgspec does not.

    A float field still takes the int (msgspec converts int to float), and a
    huge one (``1e300``) fails the field's range check with its own message.
    """
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral_floats_as_ints(v) for v in value]
    if isinstance(value, dict):
        return {k: _integral_floats_as_ints(v) for k, v in value.items()}
    return value


def read_query(request: web.Request, type_: type[T]) -> T:
    if any("\x00" in k or "\x00" in v for k, v in request.query.items()):
        raise ApiError(f"query parameter: {NUL_MESSAGE}", code="invalid_query")
    try:
        return msgspec.convert(dict(request.query), type_, strict=False)
    except msgspec.ValidationError as exc:
        raise ApiError(_validation_message(exc, "query parameter"), code="invalid_query") from None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, str(exc))
    except NotFound as exc:
        return error_response(404, "not_found", str(exc))
    except StoreDisconnected as exc:  # a request that met the lost database, or came while it is lost
        response = error_response(503, "store_unavailable", str(exc))
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    except StoreUnavailable as exc:  # the disk failed: the daemon is on its way out, try again once it is back
        return error_response(503, "unavailable", str(exc))
    except TgfleetError as exc:
        return error_response(409, "conflict", str(exc))
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, "too_large", f"the body is larger than {MAX_BODY} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
        for name, value in exc.headers.items():  # Allow on a 405, for one; the body is ours
            if name.lower() not in ("content-type", "content-length"):
                response.headers.add(name, value)
        return response
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error; see the daemon's log")
