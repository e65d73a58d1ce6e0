"""Bulk actions: ``POST /accounts/batch`` (disable, enable, retry, assign) and ``POST /quotas/batch`` (pause,
resume), on the ids given or on every row a filter matches, in one request however many rows it names.

The accounts a filter names are the ones ``GET /accounts`` lists with the same filter (the store decides
both); the filter is read once, when the request starts. A dry run reads the same rows, writes nothing and
says which would change. The store writes in transactions of ``BULK_ROWS``, each changed row with the event
and delta the single action writes, so the dashboard sees the rows change while the request runs.
"""

from __future__ import annotations

import string
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from aiohttp import web

from tgdaemon.control.ids import MAX_ID
from tgdaemon.control.providers import check_executor
from tgdaemon.errors import ApiError, NotFound
from tgdaemon.httpjson import json_response, read_body
from tgdaemon.runtime import RUNTIME
from tgdaemon.store.api import AccountFilter, BulkAccount
from tgdaemon.store.views import quota_expired
from tgdaemon.timeutil import now
from tgdaemon.wire import (
    BulkItem,
    BulkRefusal,
    BulkResult,
    HealthFilter,
    QuotaState,
    State,
)

MAX_IDS = 200_000  # as POST /accounts/assign; the body limit (1 MiB) comes first for long ids
REFUSALS_SHOWN = 20
DRY_RUN_SHOWN = 1000
ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)  # as SQLite's LIKE folds case

Ids = Annotated[list[Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]], msgspec.Meta(min_length=1, max_length=MAX_IDS)]
Text = Annotated[str, msgspec.Meta(max_length=200)]


class AccountsFilter(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """GET /accounts' query, as a body: ``{}`` is every account."""

    state: State | None = None
    q: Text | None = None
    health: HealthFilter | None = None


class AccountsBatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    action: Literal["disable", "enable", "retry", "assign"]
    ids: Ids | None = None
    filter: AccountsFilter | None = None
    reason: Annotated[str, msgspec.Meta(max_length=500)] | None = None  # disable: required
    executor: Annotated[str, msgspec.Meta(max_length=100)] | None = None  # assign: a provider, or local
    dry_run: bool = False


class QuotasFilter(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    state: QuotaState | None = None
    q: Text | None = None  # in the name or the target, or the id


class QuotasBatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    action: Literal["pause", "resume"]
    ids: Ids | None = None
    filter: QuotasFilter | None = None
    dry_run: bool = False


def _one_of(ids: list[int] | None, where: object) -> None:
    if (ids is None) == (where is None):
        raise ApiError("body: give ids or filter (exactly one of them)", code="invalid_body")


def _check(body: AccountsBatch) -> str | None:
    """The reason a disable needs (stripped); a field the action does not take is refused, not ignored."""
    _one_of(body.ids, body.filter)
    if (body.action == "assign") != (body.executor is not None):
        raise ApiError("body executor: assign needs an executor" if body.action == "assign" else
                       f"body executor: only assign takes an executor, not {body.action}", code="invalid_body")
    if body.action == "disable":
        if body.reason is None or not body.reason.strip():
            raise ApiError("body reason: a disable needs a reason, not blank", code="invalid_body")
        return body.reason.strip()
    if body.reason is not None:
        raise ApiError(f"body reason: only disable takes a reason, not {body.action}", code="invalid_body")
    return None


def _would_change(action: str, account: BulkAccount, executor: str | None) -> bool:
    if action == "disable":
        return not account.disabled
    if action == "enable":
        return account.disabled
    if action == "retry":
        return account.retryable > 0
    return account.executor != executor


def _result(action: str, dry_run: bool, matched: int, changed: int, refused: list[tuple[int, str]], tasks: int = 0,
            would: list[BulkItem] | None = None) -> BulkResult:
    return BulkResult(action=action, dry_run=dry_run, matched=matched, changed=changed,
                      unchanged=matched - changed - len(refused), refused=len(refused),
                      refusals=[BulkRefusal(id=i, reason=why) for i, why in refused[:REFUSALS_SHOWN]], tasks=tasks,
                      would_change=(would or [])[:DRY_RUN_SHOWN])


async def accounts_batch(request: web.Request) -> web.Response:
    body = await read_body(request, AccountsBatch)
    reason = _check(body)
    rt = request.config_dict[RUNTIME]
    store = rt.store
    if body.executor is not None:
        await check_executor(store, body.executor)
    where = None if body.filter is None else AccountFilter(body.filter.state, body.filter.q, body.filter.health)
    targets = await store.bulk_targets(None if body.ids is None else sorted(set(body.ids)), where)
    if body.dry_run:
        would = [t for t in targets if _would_change(body.action, t, body.executor)]
        return json_response(_result(body.action, True, len(targets), len(would), [],
                                     sum(t.retryable for t in would) if body.action == "retry" else 0,
                                     [BulkItem(id=t.id, label=t.label) for t in would]))
    ids = [t.id for t in targets]
    tasks = 0
    if body.action == "disable":
        assert reason is not None
        changed = await store.disable_accounts(ids, reason)
        await rt.gateway.let_go(changed)  # as the single disable forgets its account's client
        count = len(changed)
    elif body.action == "enable":
        count = len(await store.enable_accounts(ids))
    elif body.action == "retry":
        due = await store.retry_accounts_setup(ids)
        count, tasks = len(due), sum(due.values())
        if tasks:
            rt.setup.wake()
    else:
        assert body.executor is not None
        count = await store.assign_accounts(ids, body.executor) if ids else 0
    return json_response(_result(body.action, False, len(ids), count, [], tasks))


def _quota_matches(quota: dict[str, object], where: QuotasFilter) -> bool:
    """The quotas' filter: its state as of now, and text in the name or target (ASCII case folded, as the
    accounts' ``q`` is), or the id itself."""
    if where.state is not None and quota["state"] != where.state:
        return False
    if where.q:
        q = where.q.translate(ASCII_LOWER)
        return (q in str(quota["name"]).translate(ASCII_LOWER) or q in str(quota["target"]).translate(ASCII_LOWER)
                or where.q == str(quota["id"]))
    return True


async def quotas_batch(request: web.Request) -> web.Response:
    body = await read_body(request, QuotasBatch)
    _one_of(body.ids, body.filter)
    store = request.config_dict[RUNTIME].store
    paused = body.action == "pause"
    if body.ids is not None:
        ids = sorted(set(body.ids))
        views = await store.quotas_by_id(None, ids)
        if missing := set(ids) - {q["id"] for q in views}:
            raise NotFound(f"quota {min(missing)}: no such quota")
    else:
        views = [q for q in await store.quotas() if _quota_matches(q, body.filter)]  # type: ignore[arg-type]
    if body.dry_run:
        at = now()
        ends = {q["id"]: datetime.fromisoformat(q["expires_at"].replace("Z", "+00:00")).timestamp() for q in views}
        refused = [(q["id"], quota_expired(q["id"], ends[q["id"]], paused)) for q in views if ends[q["id"]] <= at]
        would = [BulkItem(id=q["id"], label=q["name"]) for q in views if ends[q["id"]] > at and q["paused"] != paused]
        return json_response(_result(body.action, True, len(views), len(would), refused, would=would))
    done = await store.set_quotas_paused([q["id"] for q in views], paused)
    return json_response(_result(body.action, False, len(views), len(done.changed), done.refused))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/accounts/batch", accounts_batch)
    app.router.add_post("/quotas/batch", quotas_batch)
