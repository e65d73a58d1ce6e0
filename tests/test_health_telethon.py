"""Health and sessions through the real Telethon gateway: real TelegramClients whose network is a scripted
responder (tests/tgscript.py). Every request checked here is the TL object Telethon would send, and every
answer a real TL type (or an RPC error) read back through Telethon's own deserialisation.

Covered: help.getAppConfig (frozen and not), account.getAuthorizations, account.resetAuthorization (and
FRESH_RESET_AUTHORISATION_FORBIDDEN), the @SpamBot exchange (contacts.resolveUsername once, messages.sendMessage,
messages.getHistory until the answer), FROZEN_* errors; the health check and the terminate_other_sessions
task on top of them.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

import pytest
import tgscript as ts
from conftest import GatewayFactory
from telethon import errors
from telethon.tl import functions, types

from tgdaemon import config
from tgdaemon.classify import ErrorClass, TaskWait, classify, is_frozen
from tgdaemon.errors import Conflict
from tgdaemon.gateway.base import AccountRef
from tgdaemon.gateway.simworld import SPAMBOT_FREE, SPAMBOT_LIMITED_UNTIL
from tgdaemon.health.check import HealthChecker
from tgdaemon.setup.secrets import PasswordSource
from tgdaemon.setup.tasks import TASKS, TaskContext
from tgdaemon.store import AccountEffect, ClaimedTask, NewAccount, SessionData, Store

BOT = ts.make(types.User, id=178220800, bot=True, bot_info_version=7, access_hash=0x5B07, username="SpamBot",
              first_name="Spam Info Bot", verified=True)
FROZEN_SINCE = 1_748_736_000  # 2025-06-01T00:00:00Z
FROZEN_UNTIL = 1_751_328_000  # 2025-07-01T00:00:00Z


def at(ts_: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts_, dt.UTC)


def app_config(**keys: Any) -> Any:
    """help.AppConfig with a JSON object of these keys (and some that are always there)."""
    def value(v: Any) -> Any:
        if isinstance(v, bool):
            return types.JsonBool(value=v)
        if isinstance(v, (int, float)):
            return types.JsonNumber(value=float(v))
        if isinstance(v, list):
            return types.JsonArray(value=[value(x) for x in v])
        return types.JsonString(value=v)

    items = {"reactions_uniq_max": 11, "emojies_sounds": ["a", "b"], "stories_all_hidden": False, **keys}
    return types.help.AppConfig(hash=12345, config=types.JsonObject(
        value=[types.JsonObjectValue(key=k, value=value(v)) for k, v in items.items()]))


def authorization(hash: int, *, current: bool = False, created: float = 1_700_000_000.0,
                  device: str = "iPhone 15", app: str = "Telegram iOS") -> Any:
    return ts.make(types.Authorization, hash=hash, current=current, device_model=device, platform="iOS",
                   system_version="17.5", api_id=8, app_name=app, app_version="11.2", official_app=not current,
                   date_created=at(created), date_active=at(created + 3600), ip="203.0.113.7", country="Germany",
                   region="Berlin")


def authorizations(*items: Any) -> Any:
    return types.account.Authorizations(authorization_ttl_days=180, authorizations=list(items))


def bot_message(id: int, text: str) -> Any:
    return ts.make(types.Message, id=id, peer_id=types.PeerUser(BOT.id), from_id=types.PeerUser(BOT.id),
                   date=ts._now(), message=text, out=False)


def sent(id: int) -> Any:
    return types.UpdateShortSentMessage(id=id, pts=10, pts_count=1, date=ts._now(), out=True)


def history(*messages: Any) -> Any:
    return ts.make(types.messages.Messages, messages=list(messages), chats=[], users=[BOT])


async def add_account(store: Store) -> int:
    return await store.add_account(NewAccount(phone="+15550000001", tg_user_id=1001, label="acc1", is_probe=False),
                                   SessionData(dc_id=2, server=ts.DC_IPS[2], port=443, auth_key=os.urandom(256)),
                                   how="import")


@pytest.fixture
async def one(store: Store, gateways: GatewayFactory) -> tuple[ts.ScriptedGateway, AccountRef, ts.ScriptedSender]:
    account_id = await add_account(store)
    gw = await gateways()
    return gw, AccountRef(account_id, tg_user_id=1001), gw.sender(account_id)


def cfg(**health: Any) -> config.Config:
    return config.load("/dev/null", env={}, overrides={"health": {"spambot_wait_seconds": 2.0, **health},
                                                          "limits": {"flood_wait_jitter_seconds": 0}})


# -- the calls -------------------------------------------------------------------------------------


async def test_app_config_is_read_as_json_and_says_when_an_account_is_frozen(one: Any) -> None:
    gw, account, sender = one
    sender.expect(functions.help.GetAppConfigRequest, app_config())
    sender.expect(functions.help.GetAppConfigRequest, app_config(freeze_since_date=FROZEN_SINCE,
                                                                 freeze_until_date=FROZEN_UNTIL,
                                                                 freeze_appeal_url="https://t.me/spambot"))
    assert await gw.app_config(account) == {"reactions_uniq_max": 11.0, "emojies_sounds": ["a", "b"],
                                            "stories_all_hidden": False}
    frozen = await gw.app_config(account)
    assert (frozen["freeze_since_date"], frozen["freeze_until_date"], frozen["freeze_appeal_url"]) == (
        FROZEN_SINCE, FROZEN_UNTIL, "https://t.me/spambot")
    assert [r.hash for r in sender.calls_of(functions.help.GetAppConfigRequest)] == [0, 0]  # never "not modified"
    sender.assert_done()


async def test_authorizations_are_read_with_the_daemons_own_marked(one: Any) -> None:
    gw, account, sender = one
    sender.expect(functions.account.GetAuthorizationsRequest, authorizations(
        authorization(0, current=True, device="tgfleet", app="tgfleet", created=1_760_000_000),
        authorization(0x1234_5678_9ABC_DEF0, created=1_700_000_000)))
    own, other = await gw.authorizations(account)
    assert (own.current, own.hash, own.device_model, own.app_name, own.created) == (True, 0, "tgfleet", "tgfleet",
                                                                                    1_760_000_000)
    assert (other.current, other.hash, other.platform, other.country, other.region, other.official_app) == (
        False, 0x1234_5678_9ABC_DEF0, "iOS", "Germany", "Berlin", True)
    assert (other.created, other.active) == (1_700_000_000, 1_700_003_600)
    sender.assert_done()


async def test_reset_authorization_sends_the_hash_and_never_resets_the_current_one(one: Any) -> None:
    gw, account, sender = one
    sender.expect(functions.account.ResetAuthorizationRequest, True)
    sender.expect(functions.account.ResetAuthorizationRequest, ts.rpc_error(406, "FRESH_RESET_AUTHORISATION_FORBIDDEN"))
    await gw.reset_authorization(account, -42)
    with pytest.raises(errors.FreshResetAuthorisationForbiddenError) as refused:
        await gw.reset_authorization(account, 77)
    error = classify(refused.value)
    assert (error.kind, error.code) == (ErrorClass.WAIT, "FRESH_RESET_AUTHORISATION_FORBIDDEN")
    with pytest.raises(ValueError, match="current session"):
        await gw.reset_authorization(account, 0)
    assert [r.hash for r in sender.calls_of(functions.account.ResetAuthorizationRequest)] == [-42, 77]
    sender.assert_done()


@pytest.mark.parametrize("code", ["FROZEN_METHOD_INVALID", "FROZEN_PARTICIPANT_MISSING", "FROZEN_NEW_KIND"])
async def test_frozen_errors_are_a_frozen_dead_account(one: Any, code: str) -> None:
    gw, account, sender = one
    sender.expect(functions.account.GetAuthorizationsRequest, ts.rpc_error(420 if code.endswith("INVALID") else 400,
                                                                           code))
    with pytest.raises(errors.RPCError) as raised:
        await gw.authorizations(account)
    error = classify(raised.value)
    assert (error.kind, error.code, is_frozen(error.code)) == (ErrorClass.DEAD_ACCOUNT, code, True)
    assert error.seconds is None  # FROZEN_METHOD_INVALID comes as a 420 but is no flood wait
    sender.assert_done()


async def test_spambot_is_resolved_once_asked_with_start_and_read_until_it_answers(one: Any, store: Store) -> None:
    gw, account, sender = one
    sender.expect(functions.contacts.ResolveUsernameRequest, ts.resolved_user(BOT))
    sender.expect(functions.messages.SendMessageRequest, sent(10))
    sender.expect(functions.messages.GetHistoryRequest, history())  # not yet
    sender.expect(functions.messages.GetHistoryRequest, history(bot_message(11, SPAMBOT_FREE)))
    sender.expect(functions.messages.SendMessageRequest, sent(12))  # the next check: the bot from the cache
    sender.expect(functions.messages.GetHistoryRequest, history(bot_message(14, "second"), bot_message(13, "first")))

    assert await gw.ask_spambot(account, 2.0) == SPAMBOT_FREE
    assert await gw.ask_spambot(account, 2.0) == "first"

    [resolve] = sender.calls_of(functions.contacts.ResolveUsernameRequest)
    assert resolve.username == "spambot"
    for request in sender.calls_of(functions.messages.SendMessageRequest):
        assert (request.peer, request.message) == (types.InputPeerUser(BOT.id, BOT.access_hash), "/start")
    assert [r.min_id for r in sender.calls_of(functions.messages.GetHistoryRequest)] == [10, 10, 12]
    assert all(r.peer == types.InputPeerUser(BOT.id, BOT.access_hash)
               for r in sender.calls_of(functions.messages.GetHistoryRequest))
    assert await store.find_entity(account.id, "SpamBot") == (BOT.id, BOT.access_hash, "spambot", None, "Spam Info Bot")
    sender.assert_done()


async def test_spambot_silence_ends_at_the_wait_and_a_look_alike_is_never_messaged(
        one: Any, store: Store) -> None:
    gw, account, sender = one
    sender.expect(functions.contacts.ResolveUsernameRequest, ts.resolved_user(
        ts.make(types.User, id=5, access_hash=1, username="SpamBot", first_name="not a bot")))
    with pytest.raises(errors.UsernameInvalidError):
        await gw.ask_spambot(account, 1.0)
    assert sender.calls_of(functions.messages.SendMessageRequest) == []
    assert await store.find_entity(account.id, "spambot") is None

    sender.expect(functions.contacts.ResolveUsernameRequest, ts.resolved_user(BOT))
    sender.expect(functions.messages.SendMessageRequest, sent(20))
    for _ in range(5):  # 1 s at a read every 0.25 s, and the last one at the deadline
        sender.script.append((functions.messages.GetHistoryRequest, history()))
    assert await gw.ask_spambot(account, 1.0) is None
    assert 1 <= len(sender.calls_of(functions.messages.GetHistoryRequest)) <= 5  # bounded in count
    sender.script.clear()  # the reads not made


# -- the health check on them ----------------------------------------------------------------------


def expect_check(sender: ts.ScriptedSender, *, config: Any = None, sessions: int = 2,
                 spambot: list[tuple[Any, Any]] | None = None) -> None:
    sender.expect(functions.users.GetUsersRequest, [ts.user(id=1001, first_name="Ann", last_name="Lee")])
    sender.expect(functions.help.GetAppConfigRequest, config or app_config())
    if config is not None:
        return
    sender.expect(functions.account.GetAuthorizationsRequest, authorizations(
        authorization(0, current=True), *(authorization(100 + n) for n in range(sessions - 1))))
    for step in spambot or []:
        sender.expect(*step)


async def test_a_healthy_account_is_ok_with_its_session_count_and_spambots_word(one: Any, store: Store) -> None:
    gw, account, sender = one
    expect_check(sender, sessions=3, spambot=[(functions.contacts.ResolveUsernameRequest, ts.resolved_user(BOT)),
                                              (functions.messages.SendMessageRequest, sent(30)),
                                              (functions.messages.GetHistoryRequest,
                                               history(bot_message(31, SPAMBOT_FREE)))])
    checker = HealthChecker(cfg(spambot=True), store, gw)
    [result] = await checker.check([account.id])
    assert (result.outcome, result.health, result.detail) == ("checked", "ok", {"sessions": 3, "spambot": "free"})
    view = await store.get_account(account.id)
    assert (view["health"], view["health_detail"], view["state"], view["name"]) == (
        "ok", {"sessions": 3, "spambot": "free"}, "ready", "Ann Lee")
    async with store.tx() as tx:  # the check's lock is released
        assert await store.take_lock(tx, account.id, "setup:1", 60)
    sender.assert_done()


async def test_spambot_limited_until_a_date_is_a_limited_account(one: Any, store: Store) -> None:
    gw, account, sender = one
    text = SPAMBOT_LIMITED_UNTIL.format(until="17 Jun 2031, 10:57 UTC")
    expect_check(sender, spambot=[(functions.contacts.ResolveUsernameRequest, ts.resolved_user(BOT)),
                                  (functions.messages.SendMessageRequest, sent(40)),
                                  (functions.messages.GetHistoryRequest, history(bot_message(41, text)))])
    [result] = await HealthChecker(cfg(spambot=True), store, gw).check([account.id])
    assert (result.outcome, result.health) == ("checked", "limited")
    assert result.detail["limited_until"] == "2031-06-17T10:57:00Z" and result.detail["spambot"] == "limited"
    assert "limited until 17 Jun 2031" in result.detail["spambot_text"]
    assert (await store.get_account(account.id))["state"] == "ready"  # limited is shown, not disabled
    sender.assert_done()


async def test_a_frozen_account_is_found_in_the_app_config_and_disabled_with_the_reason(one: Any, store: Store) -> None:
    gw, account, sender = one
    expect_check(sender, config=app_config(freeze_since_date=FROZEN_SINCE, freeze_until_date=FROZEN_UNTIL,
                                           freeze_appeal_url="https://t.me/spambot"))
    [result] = await HealthChecker(cfg(spambot=True), store, gw).check([account.id])
    assert (result.outcome, result.health) == ("checked", "frozen")
    assert result.detail == {"frozen_since": "2025-06-01T00:00:00Z", "frozen_until": "2025-07-01T00:00:00Z",
                             "appeal_url": "https://t.me/spambot"}
    view = await store.get_account(account.id)
    assert view["state"] == "disabled"
    assert view["disabled_reason"] == "FROZEN (since 2025-06-01T00:00:00Z, until 2025-07-01T00:00:00Z)"
    assert gw.pool.connected() == 0  # a disabled account's client is let go
    sender.assert_done()


@pytest.mark.parametrize(("step", "error", "health", "state"), [
    (functions.users.GetUsersRequest, ts.rpc_error(401, "AUTH_KEY_UNREGISTERED"), "dead", "disabled"),
    (functions.account.GetAuthorizationsRequest, ts.rpc_error(420, "FROZEN_METHOD_INVALID"), "frozen", "disabled"),
    (functions.messages.SendMessageRequest, ts.rpc_error(400, "PEER_FLOOD"), "limited", "cooldown"),
])
async def test_an_error_that_is_the_accounts_condition_is_its_health(
        one: Any, store: Store, step: type, error: Any, health: str, state: str) -> None:
    gw, account, sender = one
    full = [(functions.users.GetUsersRequest, [ts.user(id=1001)]), (functions.help.GetAppConfigRequest, app_config()),
            (functions.account.GetAuthorizationsRequest, authorizations(authorization(0, current=True))),
            (functions.contacts.ResolveUsernameRequest, ts.resolved_user(BOT)),
            (functions.messages.SendMessageRequest, sent(50))]
    for matcher, answer in full:
        sender.expect(matcher, error if matcher is step else answer)
        if matcher is step:
            break
    [result] = await HealthChecker(cfg(spambot=True), store, gw).check([account.id])
    assert (result.outcome, result.health) == ("checked", health)
    code = error.message
    assert result.detail == {"error": classify(errors.rpc_message_to_error(
        types.RpcError(error.code, code), None)).message}
    view = await store.get_account(account.id)
    assert (view["state"], view["health"], view["last_error_code"]) == (state, health, code)
    if state == "disabled":
        assert view["disabled_reason"] == code
    sender.assert_done()


async def test_a_check_that_cannot_tell_keeps_the_last_finding(one: Any, store: Store) -> None:
    gw, account, sender = one
    expect_check(sender, sessions=1)
    sender.expect(functions.users.GetUsersRequest, [ts.user(id=1001)])
    sender.expect(functions.help.GetAppConfigRequest, ts.rpc_error(400, "APP_CONFIG_BUSY"))  # unknown: transient
    checker = HealthChecker(cfg(), store, gw)
    [first] = await checker.check([account.id])
    [second] = await checker.check([account.id])
    assert (first.outcome, first.health) == ("checked", "ok")
    assert (second.outcome, second.health) == ("failed", None)
    assert second.message.startswith("APP_CONFIG_BUSY (transient)")
    view = await store.get_account(account.id)
    assert (view["health"], view["health_detail"]) == ("ok", {"error": second.message})
    assert view["state"] == "ready"
    sender.assert_done()


async def test_a_busy_account_is_not_checked_and_nothing_is_sent(one: Any, store: Store) -> None:
    gw, account, sender = one
    async with store.tx() as tx:
        assert await store.take_lock(tx, account.id, "setup:9", 600)
    [result] = await HealthChecker(cfg(), store, gw).check([account.id])
    assert (result.outcome, result.health) == ("busy", None)
    assert sender.calls == [] and (await store.get_account(account.id))["health_checked_at"] is None


# -- terminate_other_sessions ----------------------------------------------------------------------


def task_context(gw: ts.ScriptedGateway, account: AccountRef, tmp_path: Path) -> TaskContext:
    c = cfg()
    task = ClaimedTask(1, account.id, "terminate_other_sessions", {}, 1, {}, time.time(), account.tg_user_id, None, {})
    return TaskContext(gw, account, task, c.setup, PasswordSource(c.setup.twofa), tmp_path)


async def test_terminate_other_sessions_ends_every_other_one_and_never_its_own(one: Any, tmp_path: Path) -> None:
    gw, account, sender = one
    sender.expect(functions.account.GetAuthorizationsRequest, authorizations(
        authorization(111, device="Pixel 8", app="Telegram Android"), authorization(0, current=True),
        authorization(-222, device="MacBook", app="Telegram macOS")))
    sender.expect(functions.account.ResetAuthorizationRequest, True)
    sender.expect(functions.account.ResetAuthorizationRequest, True)
    sender.expect(functions.account.GetAuthorizationsRequest, authorizations(authorization(0, current=True)))
    run = TASKS["terminate_other_sessions"].run

    done = await run(task_context(gw, account, tmp_path))
    again = await run(task_context(gw, account, tmp_path))

    assert [r.hash for r in sender.calls_of(functions.account.ResetAuthorizationRequest)] == [111, -222]
    assert done == {"meta": {"ended": 2, "sessions": ["Telegram Android 11.2 on Pixel 8",
                                                      "Telegram macOS 11.2 on MacBook"]}}
    assert again == {"sessions": 1, "meta": {"skipped": "no other sessions"}}
    sender.assert_done()


async def test_a_session_younger_than_a_day_waits_until_it_is_a_day_old(one: Any, tmp_path: Path) -> None:
    gw, account, sender = one
    created = float(int(time.time()) - 3600)
    sender.expect(functions.account.GetAuthorizationsRequest, authorizations(
        authorization(0, current=True, created=created), authorization(333), authorization(444)))
    sender.expect(functions.account.ResetAuthorizationRequest, ts.rpc_error(406, "FRESH_RESET_AUTHORISATION_FORBIDDEN"))
    with pytest.raises(TaskWait) as waits:
        await TASKS["terminate_other_sessions"].run(task_context(gw, account, tmp_path))
    assert (waits.value.code, waits.value.until) == ("FRESH_RESET_AUTHORISATION_FORBIDDEN", created + 86400)
    assert "younger than 24 hours" in str(waits.value)
    error = classify(waits.value)
    assert error.kind is ErrorClass.WAIT and 0 < (error.seconds or 0) <= 86400 - 3600 + 1
    assert len(sender.calls_of(functions.account.ResetAuthorizationRequest)) == 1  # it stopped at the first
    sender.assert_done()


class Elsewhere:
    """A gate that passes nothing: the account is another node's."""

    def allows(self, account_id: int) -> bool:
        return False

    def epoch(self, account_id: int) -> int | None:
        return None

    def seconds_left(self) -> float:
        return 0.0

    def working(self, account_id: int) -> Any:
        raise AssertionError("no work may start on an account this node does not own")


async def test_a_cooling_or_foreign_account_is_skipped_and_nothing_is_sent(one: Any, store: Store) -> None:
    gw, account, sender = one
    checker = HealthChecker(cfg(), store, gw)
    async with store.tx() as tx:
        await store.apply_account_effect(tx, account.id, AccountEffect(cooldown_until=time.time() + 600,
                                                                       cooldown_reason="FLOOD_WAIT"))
    [cooling] = await checker.check([account.id])
    assert cooling.outcome == "skipped" and "in cooldown until" in cooling.message and "FLOOD_WAIT" in cooling.message
    with pytest.raises(Conflict, match="in cooldown until"):
        await checker.sessions(account.id)
    await backdoor_clear_cooldown(store, account.id)
    await backdoor_set_owner(store, account.id, "node-b")
    gw.gate = Elsewhere()
    [foreign] = await checker.check([account.id])
    assert (foreign.outcome, foreign.message.split(":")[0]) == ("skipped", "owned by node node-b")
    with pytest.raises(Conflict, match="owned by node node-b"):
        await checker.sessions(account.id)
    assert sender.calls == [] and (await store.get_account(account.id))["health_checked_at"] is None


async def backdoor_clear_cooldown(store: Store, account_id: int) -> None:
    async with store.tx() as tx:
        await tx.execute("UPDATE accounts SET cooldown_until = NULL, cooldown_reason = NULL WHERE id = ?",  # type: ignore[attr-defined]
                         (account_id,))


async def backdoor_set_owner(store: Store, account_id: int, owner: str) -> None:
    async with store.tx() as tx:
        await tx.execute("UPDATE accounts SET owner = ? WHERE id = ?", (owner, account_id))  # type: ignore[attr-defined]
