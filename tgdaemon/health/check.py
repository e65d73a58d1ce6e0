"""Checking an account's health: alive, frozen, spam-limited, and its session count.

A check is work as the account, so it goes the way every such work goes: only on the node that owns the
account (the gate), not while it cools down (the daemon never calls into a flood wait), and under the one
account lock (holder ``health:<id>``), so that it never runs beside a setup task or a pulled task of the
account. What it does, in order, each call classified by the one classification when it fails:

1. ``get_me``: the session still signs in (a dead one fails here: AUTH_KEY_UNREGISTERED, USER_DEACTIVATED...);
2. the app configuration: a frozen account finds ``freeze_since_date`` there (and a FROZEN_* error on most
   other calls);
3. the account's sessions (account.getAuthorizations): their count;
4. with ``[health] spambot = true``: /start to the official @SpamBot, and its answer read (health.spambot).

The finding is written with the account's effect and the lock's release in one transaction: ``ok``,
``limited`` (PEER_FLOOD, or @SpamBot says so), ``frozen`` or ``dead``. A frozen or dead account is disabled
with the reason, as a setup task meeting the same would (the effect comes from tgdaemon.policy). A check
that could not tell (a flood wait, the network) leaves the last finding, and says why in the detail.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tgdaemon.classify import Classified, ErrorClass, classify, is_frozen
from tgdaemon.config import Config
from tgdaemon.errors import Conflict, NotOwned
from tgdaemon.gateway.base import AccountRef, Authorization, Gateway
from tgdaemon.health.spambot import read_answer
from tgdaemon.policy import account_effect
from tgdaemon.store import AccountEffect, Store
from tgdaemon.timeutil import iso, now

log = logging.getLogger(__name__)
CALLS = 4  # get_me, the app configuration, the sessions, /start to @SpamBot (its reads are in its wait)
TICK_SECONDS = 60.0  # how often a node looks for accounts due a scheduled check
FROZEN = "FROZEN"  # the disable reason's code when the app configuration says the account is frozen


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One account's check: ``checked`` (health found), ``failed`` (the check could not tell), ``busy`` (its
    lock is held: by a task, or another check) or ``skipped`` (not this node's, or in cooldown)."""

    account_id: int
    outcome: str
    health: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    message: str = ""


@dataclass(slots=True)
class Finding:
    health: str
    detail: dict[str, Any]
    effect: AccountEffect


def freeze_of(config: dict[str, Any]) -> dict[str, Any] | None:
    """The app configuration's freeze keys, times as ISO strings; None when the account is not frozen."""
    since = config.get("freeze_since_date")
    if not isinstance(since, (int, float)) or isinstance(since, bool) or since <= 0:
        return None
    until = config.get("freeze_until_date")
    url = config.get("freeze_appeal_url")
    return {"frozen_since": iso(since),
            "frozen_until": iso(until) if isinstance(until, (int, float)) and not isinstance(until, bool) else None,
            "appeal_url": url if isinstance(url, str) else None}


def cooling(view: dict[str, Any]) -> bool:
    """Whether the account's cooldown runs now, whatever its state shows first (a disabled one may cool too).
    ISO 8601 UTC times of one format compare as their text does."""
    return bool(view["cooldown_until"]) and view["cooldown_until"] >= iso(now())


class HealthChecker:
    def __init__(self, cfg: Config, store: Store, gateway: Gateway, *, owner: str | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.gateway = gateway
        self.owner = owner  # the node whose accounts its scheduled checks take; None: every account
        self._limit = asyncio.Semaphore(cfg.health.concurrency)
        self.lock_seconds = CALLS * cfg.telegram.call_timeout_seconds + cfg.health.spambot_wait_seconds + 30

    @property
    def interval(self) -> float:
        return self.cfg.health.interval_hours * 3600

    # -- asked for -------------------------------------------------------------------------------------

    async def check(self, ids: Iterable[int]) -> list[CheckResult]:
        """``accounts check``: each account in turn (at most ``[health] concurrency`` at once), in order."""
        return list(await asyncio.gather(*(self._asked(account_id) for account_id in ids)))

    async def _asked(self, account_id: int) -> CheckResult:
        view = await self.store.get_account(account_id)  # NotFound: the route says so
        if not self.gateway.gate.allows(account_id):
            return CheckResult(account_id, "skipped", message=f"owned by node {view['owner'] or '(none yet)'}: that"
                               " node checks it (ask its socket, or let its scheduled check)")
        if cooling(view):
            return CheckResult(account_id, "skipped", message=f"in cooldown until {view['cooldown_until']}"
                               f" ({view['cooldown_reason']}): the daemon does not call Telegram as it until then")
        tg_user_id, phone = await self.store.account_ref(account_id)
        result = await self._check(AccountRef(account_id, tg_user_id, phone), self.gateway.gate.epoch(account_id))
        if view["disabled_at"] is not None:
            await self.gateway.forget(account_id)  # a disabled account's client is not kept
        return result

    # -- on schedule -----------------------------------------------------------------------------------

    async def run(self) -> None:
        """The side task of every node: its own accounts checked every ``[health] interval_hours`` (0: never),
        least recently checked first, a batch at a time."""
        if self.interval <= 0:
            await asyncio.Event().wait()
        batch = 8 * self.cfg.health.concurrency
        while True:
            due = await self.store.health_due(now() - self.interval, batch, owner=self.owner)
            due = [p for p in due if self.gateway.gate.allows(p.id)]
            if due:
                results = await asyncio.gather(*(self._check(AccountRef(p.id, p.tg_user_id, p.phone), p.epoch
                                                             if self.owner is not None else None) for p in due))
                found = [r.health for r in results if r.outcome == "checked" and r.health is not None]
                log.info("health: checked %d accounts (%s)", len(due),
                         ", ".join(f"{h} {found.count(h)}" for h in sorted(set(found))) or "none could tell")
            if len(due) < batch:
                await asyncio.sleep(min(TICK_SECONDS, self.interval / 10))

    # -- one check -------------------------------------------------------------------------------------

    async def _check(self, account: AccountRef, epoch: int | None) -> CheckResult:
        holder = f"health:{account.id}"
        async with self._limit:
            async with self.store.tx() as tx:
                if not await self.store.take_lock(tx, account.id, holder, self.lock_seconds):
                    return CheckResult(account.id, "busy", message="busy (a task holds its lock); not checked")
            try:
                with self.gateway.gate.working(account.id):
                    finding = await self._probe(account)
                    outcome, message = "checked", finding.health
            except asyncio.CancelledError:
                await asyncio.shield(self._release(account.id, holder))
                raise
            except NotOwned as exc:
                await self._release(account.id, holder)
                return CheckResult(account.id, "skipped", message=str(exc))
            except Exception as exc:
                finding = self._failed(classify(exc))
                outcome = "checked" if finding.health else "failed"
                message = finding.detail["error"]
            at = now()
            async with self.store.tx() as tx:
                recorded = await self.store.record_health(tx, account.id, finding.health or None, finding.detail, at,
                                                          epoch=epoch)
                if recorded:
                    await self.store.apply_account_effect(tx, account.id, finding.effect, epoch=epoch)
                await self.store.release_lock(tx, account.id, holder)
        if finding.effect.disable_reason is not None:
            await self.gateway.forget(account.id)
        if not recorded:
            return CheckResult(account.id, "skipped", message="this node lost the account during the check")
        return CheckResult(account.id, outcome, finding.health or None, finding.detail, message)

    async def _release(self, account_id: int, holder: str) -> None:
        async with self.store.tx() as tx:
            await self.store.release_lock(tx, account_id, holder)

    async def _probe(self, account: AccountRef) -> Finding:
        me = await self.gateway.get_me(account)
        name = (me.first_name, me.last_name)
        freeze = freeze_of(await self.gateway.app_config(account))
        if freeze is not None:
            reason = f"{FROZEN} (since {freeze['frozen_since']}" + (
                f", until {freeze['frozen_until']})" if freeze["frozen_until"] else ")")
            return Finding("frozen", freeze, AccountEffect(disable_reason=reason, error_code=FROZEN, name=name))
        detail: dict[str, Any] = {"sessions": len(await self.gateway.authorizations(account))}
        health = "ok"
        if self.cfg.health.spambot:
            try:
                answer = read_answer(await self.gateway.ask_spambot(account, self.cfg.health.spambot_wait_seconds))
            except Exception as exc:
                error = classify(exc)
                if error.kind in (ErrorClass.DEAD_ACCOUNT, ErrorClass.WAIT, ErrorClass.SPAM_LIMITED):
                    raise  # the account's own condition: the whole check's finding
                detail.update(spambot="unknown", spambot_error=error.message)
            else:
                detail["spambot"] = answer.status
                if answer.status == "limited":
                    detail["limited_until"] = iso(answer.until)
                if answer.status != "free":
                    detail["spambot_text"] = answer.text
                if answer.status in ("limited", "blocked"):
                    health = "limited"
        return Finding(health, detail, AccountEffect(ok=True, name=name))

    def _failed(self, error: Classified) -> Finding:
        """A call failed: a dead or frozen account is one (and is disabled by the policy), PEER_FLOOD is a
        limited one (and cools down); anything else leaves the health as it was (health "")."""
        effect = account_effect(error, self.cfg.limits, now())
        detail = {"error": error.message}
        if error.kind is ErrorClass.DEAD_ACCOUNT:
            return Finding("frozen" if is_frozen(error.code) else "dead", detail, effect)
        if error.kind is ErrorClass.SPAM_LIMITED:
            return Finding("limited", detail, effect)
        return Finding("", detail, effect)

    # -- the account's sessions ------------------------------------------------------------------------

    async def sessions(self, account_id: int) -> list[Authorization]:
        """``accounts sessions``: a read as the account, on its owner, outside any cooldown; a failure's effect
        (a dead or frozen account disabled) is applied as any other call's, then the error is raised."""
        view = await self.store.get_account(account_id)
        if not self.gateway.gate.allows(account_id):
            raise Conflict(f"account {account_id} is owned by node {view['owner'] or '(none yet)'}: ask that node")
        if cooling(view):
            raise Conflict(f"account {account_id} is in cooldown until {view['cooldown_until']}"
                           f" ({view['cooldown_reason']}); ask again once it ends")
        tg_user_id, phone = await self.store.account_ref(account_id)
        try:
            with self.gateway.gate.working(account_id):
                return await self.gateway.authorizations(AccountRef(account_id, tg_user_id, phone))
        except NotOwned as exc:
            raise Conflict(str(exc)) from None
        except Exception as exc:
            error = classify(exc)
            effect = account_effect(error, self.cfg.limits, now())
            async with self.store.tx() as tx:
                await self.store.apply_account_effect(tx, account_id, effect,
                                                      epoch=self.gateway.gate.epoch(account_id))
            if effect.disable_reason is not None:
                await self.gateway.forget(account_id)
            raise Conflict(f"account {account_id}: Telegram refused: {error.message}") from None
