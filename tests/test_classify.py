"""The one error classification (design section 6), for exceptions and raw codes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from telethon import errors
from telethon.tl import functions, types

from tgdaemon.classify import (
    MAX_WAIT,
    Classified,
    ErrorClass,
    TaskInputError,
    classify,
    classify_code,
)
from tgdaemon.errors import TgfleetError

W, S, D, T, I, X = (ErrorClass.WAIT, ErrorClass.SPAM_LIMITED, ErrorClass.DEAD_ACCOUNT,
                    ErrorClass.TARGET, ErrorClass.INPUT, ErrorClass.TRANSIENT)
CODE_RE = re.compile(r"[A-Z0-9_]{1,64}")


def rpc(message: str, code: int = 400, request: object = None) -> BaseException:
    """Build the exception exactly as Telethon does from the wire."""
    return errors.rpc_message_to_error(types.RpcError(code, message), request)


def check(result: Classified) -> None:
    """Invariants every result must satisfy."""
    assert CODE_RE.fullmatch(result.code), result.code
    assert (result.seconds is not None) == (result.kind is W)
    assert "\n" not in result.message and 0 < len(result.message) <= 160
    assert result.message.startswith(result.code)


# (raw code as sent by a provider or by Telegram, class, canonical code, seconds)
CODES = [
    ("FLOOD_WAIT_30", W, "FLOOD_WAIT", 30),
    ("FLOOD_PREMIUM_WAIT_5", W, "FLOOD_PREMIUM_WAIT", 5),
    ("SLOWMODE_WAIT_10", W, "SLOWMODE_WAIT", 10),
    ("STORY_SEND_FLOOD_WEEKLY_3600", W, "STORY_SEND_FLOOD_WEEKLY", 3600),
    ("STORIES_TOO_MUCH", W, "STORIES_TOO_MUCH", 86400),
    ("PEER_FLOOD", S, "PEER_FLOOD", None),
    ("AUTH_KEY_UNREGISTERED", D, "AUTH_KEY_UNREGISTERED", None),
    ("SESSION_REVOKED", D, "SESSION_REVOKED", None),
    ("SESSION_EXPIRED", D, "SESSION_EXPIRED", None),
    ("USER_DEACTIVATED", D, "USER_DEACTIVATED", None),
    ("USER_DEACTIVATED_BAN", D, "USER_DEACTIVATED_BAN", None),
    ("PHONE_NUMBER_BANNED", D, "PHONE_NUMBER_BANNED", None),
    ("AUTH_KEY_DUPLICATED", D, "AUTH_KEY_DUPLICATED", None),
    ("FROZEN_METHOD_INVALID", D, "FROZEN_METHOD_INVALID", None),
    ("FROZEN_PARTICIPANT_MISSING", D, "FROZEN_PARTICIPANT_MISSING", None),
    ("CHANNEL_PRIVATE", T, "CHANNEL_PRIVATE", None),
    ("CHANNEL_INVALID", T, "CHANNEL_INVALID", None),
    ("CHANNEL_BANNED", T, "CHANNEL_BANNED", None),
    ("USERNAME_NOT_OCCUPIED", T, "USERNAME_NOT_OCCUPIED", None),
    ("USERNAME_INVALID", T, "USERNAME_INVALID", None),
    ("INVITE_HASH_EXPIRED", T, "INVITE_HASH_EXPIRED", None),
    ("INVITE_HASH_INVALID", T, "INVITE_HASH_INVALID", None),
    ("MSG_ID_INVALID", T, "MSG_ID_INVALID", None),
    ("MEDIA_FILE_MISSING", I, "MEDIA_FILE_MISSING", None),
    ("MEDIA_INVALID", I, "MEDIA_INVALID", None),
    ("NO_2FA_PASSWORD", I, "NO_2FA_PASSWORD", None),
    ("PHOTO_INVALID_DIMENSIONS", I, "PHOTO_INVALID_DIMENSIONS", None),
    ("PHOTO_CROP_SIZE_SMALL", I, "PHOTO_CROP_SIZE_SMALL", None),
    ("VIDEO_FILE_INVALID", I, "VIDEO_FILE_INVALID", None),
    ("RPC_CALL_FAIL", X, "RPC_CALL_FAIL", None),
    ("TIMEOUT", X, "TIMEOUT", None),
    ("NETWORK", X, "NETWORK", None),
    ("FILE_MIGRATE_2", X, "FILE_MIGRATE", None),
    ("SOMETHING_NEW_FROM_TELEGRAM", X, "SOMETHING_NEW_FROM_TELEGRAM", None),
]


@pytest.mark.parametrize(("raw", "kind", "code", "seconds"), CODES, ids=[c[0] for c in CODES])
def test_raw_codes(raw: str, kind: ErrorClass, code: str, seconds: int | None) -> None:
    for variant in (raw, raw.lower(), f"  {raw}\n"):
        result = classify_code(variant)
        assert (result.kind, result.code, result.seconds) == (kind, code, seconds)
        check(result)


@pytest.mark.parametrize(("raw", "kind", "code", "seconds"), CODES, ids=[c[0] for c in CODES])
def test_same_code_as_telethon_exception(raw: str, kind: ErrorClass, code: str, seconds: int | None) -> None:
    """One table: what Telethon builds from the wire classifies like the raw code."""
    http = {W: 420, D: 401, S: 400, T: 400, I: 400, X: 500}[kind]
    if raw in ("STORIES_TOO_MUCH", "STORY_SEND_FLOOD_WEEKLY_3600"):
        http = 400  # Telegram sends these as plain 400s
    exc = rpc(raw, http)
    assert isinstance(exc, errors.RPCError)
    result = classify(exc)
    assert (result.kind, result.code, result.seconds) == (kind, code, seconds)
    check(result)


def _frozen_139() -> BaseException:
    # Telethon 1.39 has no FrozenMethodInvalidError: rpc_message_to_error falls
    # back to the base class of the HTTP code, carrying the message.
    return errors.FloodError(request=None, message="FROZEN_METHOD_INVALID", code=420)


EXCEPTIONS: list[tuple[str, Callable[[], BaseException], ErrorClass, str, int | None]] = [
    ("flood_wait", lambda: errors.FloodWaitError(request=None, capture=30), W, "FLOOD_WAIT", 30),
    ("flood_wait_0", lambda: errors.FloodWaitError(request=None, capture=0), W, "FLOOD_WAIT", 0),
    ("flood_wait_wire", lambda: rpc("FLOOD_WAIT_1234", 420), W, "FLOOD_WAIT", 1234),
    ("flood_wait_huge", lambda: errors.FloodWaitError(request=None, capture=10**12), W, "FLOOD_WAIT", MAX_WAIT),
    ("flood_premium_wait", lambda: errors.FloodPremiumWaitError(request=None, capture=7), W, "FLOOD_PREMIUM_WAIT", 7),
    ("slowmode_wait", lambda: errors.SlowModeWaitError(request=None, capture=15), W, "SLOWMODE_WAIT", 15),
    ("stories_too_much", lambda: rpc("STORIES_TOO_MUCH", 400), W, "STORIES_TOO_MUCH", 86400),
    ("peer_flood", lambda: errors.PeerFloodError(request=None), S, "PEER_FLOOD", None),
    ("auth_key_unregistered", lambda: errors.AuthKeyUnregisteredError(request=None), D, "AUTH_KEY_UNREGISTERED", None),
    ("auth_key_duplicated", lambda: errors.AuthKeyDuplicatedError(request=None), D, "AUTH_KEY_DUPLICATED", None),
    ("session_revoked", lambda: errors.SessionRevokedError(request=None), D, "SESSION_REVOKED", None),
    ("user_deactivated_ban", lambda: errors.UserDeactivatedBanError(request=None), D, "USER_DEACTIVATED_BAN", None),
    ("phone_number_banned", lambda: errors.PhoneNumberBannedError(request=None), D, "PHONE_NUMBER_BANNED", None),
    ("frozen_1_39", _frozen_139, D, "FROZEN_METHOD_INVALID", None),
    ("channel_private", lambda: errors.ChannelPrivateError(request=None), T, "CHANNEL_PRIVATE", None),
    ("username_not_occupied", lambda: errors.UsernameNotOccupiedError(request=None), T, "USERNAME_NOT_OCCUPIED", None),
    ("invite_hash_expired", lambda: errors.InviteHashExpiredError(request=None), T, "INVITE_HASH_EXPIRED", None),
    ("msg_id_invalid", lambda: errors.MsgIdInvalidError(request=None), T, "MSG_ID_INVALID", None),
    ("photo_dimensions", lambda: errors.PhotoInvalidDimensionsError(request=None), I, "PHOTO_INVALID_DIMENSIONS", None),
    ("task_input", lambda: TaskInputError("media_file_missing", "story.jpg: no such file"), I, "MEDIA_FILE_MISSING", None),
    ("task_input_2fa", lambda: TaskInputError("NO_2FA_PASSWORD", "no password in the secret source"), I, "NO_2FA_PASSWORD", None),
    ("rpc_call_fail", lambda: errors.RpcCallFailError(request=None), X, "RPC_CALL_FAIL", None),
    ("telethon_timeout", lambda: errors.TimeoutError(request=None), X, "TIMEOUT", None),
    ("telethon_timeout_wire", lambda: rpc("Timeout", -503), X, "TIMEOUT", None),
    ("server_error_-500", lambda: rpc("No workers running", -500), X, "NO_WORKERS_RUNNING", None),
    ("server_error_500", lambda: errors.ServerError(request=None, message="INTERNAL", code=500), X, "INTERNAL", None),
    ("builtin_timeout", lambda: TimeoutError(), X, "TIMEOUT", None),
    ("asyncio_timeout", lambda: asyncio.TimeoutError(), X, "TIMEOUT", None),
    ("connection_reset", lambda: ConnectionResetError(104, "Connection reset by peer"), X, "NETWORK", None),
    ("oserror", lambda: OSError(113, "No route to host"), X, "NETWORK", None),
    ("auth_key_not_found", lambda: errors.AuthKeyNotFound(), X, "AUTH_KEY_NOT_FOUND", None),
    ("unknown_rpc_400", lambda: rpc("SOME_NEW_ERROR", 400), X, "SOME_NEW_ERROR", None),
    ("bare_flood_420", lambda: rpc("FLOOD", 420), X, "FLOOD", None),
    ("anything_else", lambda: ValueError("boom"), X, "VALUE_ERROR", None),
]
if hasattr(errors, "FrozenMethodInvalidError"):  # telethon >= 1.40-ish
    EXCEPTIONS += [
        ("frozen_method", lambda: errors.FrozenMethodInvalidError(request=None), D, "FROZEN_METHOD_INVALID", None),
        ("frozen_participant", lambda: errors.FrozenParticipantMissingError(request=None), D,
         "FROZEN_PARTICIPANT_MISSING", None),
    ]


@pytest.mark.parametrize(("make", "kind", "code", "seconds"), [e[1:] for e in EXCEPTIONS],
                         ids=[e[0] for e in EXCEPTIONS])
def test_exceptions(make: Callable[[], BaseException], kind: ErrorClass, code: str, seconds: int | None) -> None:
    result = classify(make())
    assert (result.kind, result.code, result.seconds) == (kind, code, seconds)
    check(result)


def test_frozen_method_is_a_flood_error_but_not_a_wait() -> None:
    exc = rpc("FROZEN_METHOD_INVALID", 420)
    assert isinstance(exc, errors.FloodError)  # the trap: Telethon files it under 420 FLOOD
    assert not hasattr(exc, "seconds")
    assert classify(exc).kind is D


def test_stories_too_much_arrives_as_plain_bad_request() -> None:
    exc = rpc("STORIES_TOO_MUCH", 400)
    assert type(exc) is errors.BadRequestError  # no dedicated class: only the message tells
    assert classify(exc) == classify_code("STORIES_TOO_MUCH", classify(exc).message.split(": ", 1)[1])


def test_telethon_timeout_shadows_builtin() -> None:
    assert errors.TimeoutError is not TimeoutError
    assert not isinstance(errors.TimeoutError(request=None), TimeoutError)
    assert classify(errors.TimeoutError(request=None)).code == classify(TimeoutError()).code == "TIMEOUT"


def test_task_input_error_is_a_tgfleet_error() -> None:
    exc = TaskInputError("MEDIA_FILE_MISSING", "story.jpg: no such file")
    assert isinstance(exc, TgfleetError)
    assert exc.code == "MEDIA_FILE_MISSING" and str(exc) == "story.jpg: no such file"
    assert "story.jpg: no such file" in classify(exc).message


def _password_request() -> functions.account.UpdatePasswordSettingsRequest:
    return functions.account.UpdatePasswordSettingsRequest(
        password=types.InputCheckPasswordSRP(srp_id=1, A=b"SRP-A-SECRET", M1=b"SRP-M1-SECRET"),
        new_settings=types.account.PasswordInputSettings(
            new_algo=types.PasswordKdfAlgoUnknown(),
            new_password_hash=b"NEW-HASH-SECRET",
            hint="hunter2-hint-SECRET",
            email="owner-SECRET@example.org",
        ),
    )


@pytest.mark.parametrize("make", [
    lambda r: errors.PasswordHashInvalidError(request=r),
    lambda r: errors.FloodWaitError(request=r, capture=60),
    lambda r: rpc("STORIES_TOO_MUCH", 400, r),
    lambda r: rpc("PASSWORD_TOO_FRESH_3600", 400, r),
    lambda r: rpc("SOME_NEW_ERROR", 400, r),
], ids=["password_hash_invalid", "flood_wait", "plain_400", "password_too_fresh", "unknown"])
def test_request_contents_never_in_message(make: Callable[[object], BaseException]) -> None:
    request = _password_request()
    exc = make(request)
    assert exc.request is request
    result = classify(exc)
    check(result)
    assert "SECRET" not in result.message
    assert "caused by" not in result.message and "Request" not in result.message
    for field in (repr(request), str(request), request.stringify()):
        assert field not in result.message


@pytest.mark.parametrize(("raw", "code"), [
    ("", "UNKNOWN"),
    ("   \n\t", "UNKNOWN"),
    ("peer_flood", "PEER_FLOOD"),
    ("Flood Wait 30", "FLOOD_WAIT"),
    ("PEER_FLOOD\nAUTH_KEY_UNREGISTERED", "PEER_FLOOD_AUTH_KEY_UNREGISTERED"),
    ("x" * 10_000, "X" * 64),
    ("héllo wörld!", "H_LLO_W_RLD"),
    ("%%%", "UNKNOWN"),
], ids=["empty", "blank", "lower", "spaces", "newline", "long", "unicode", "punct"])
def test_garbage_codes(raw: str, code: str) -> None:
    result = classify_code(raw)
    assert result.code == code
    check(result)


def test_garbage_smuggling_a_known_code_is_not_trusted() -> None:
    # A newline-joined pair is one unknown code, not the dead-account one.
    assert classify_code("PEER_FLOOD\nAUTH_KEY_UNREGISTERED").kind is X
    assert classify_code("Flood Wait 30").seconds == 30  # but spacing/case are forgiven


def test_wait_without_number_and_absurd_number() -> None:
    assert classify_code("FLOOD_WAIT").seconds == 60
    assert classify_code("FLOOD_WAIT_" + "9" * 60).seconds == MAX_WAIT
    assert classify_code("FLOOD_WAIT_0").seconds == 0


def test_provider_message_is_one_short_line() -> None:
    result = classify_code("CHANNEL_PRIVATE", "channel\nis private " + "y" * 500)
    check(result)
    assert result.message.startswith("CHANNEL_PRIVATE (target): channel is private y")


@given(st.text(), st.one_of(st.none(), st.text()))
def test_classify_code_never_raises(raw: str, message: str | None) -> None:
    result = classify_code(raw, message)
    check(result)
    assert result.seconds is None or 0 <= result.seconds <= MAX_WAIT


@given(st.text(max_size=80), st.integers(min_value=-(10**30), max_value=10**30))
def test_classify_never_raises_on_odd_telethon_errors(message: str, http: int) -> None:
    check(classify(errors.RPCError(request=None, message=message, code=http)))
    check(classify(errors.FloodWaitError(request=None, capture=abs(http) % 10**40)))
