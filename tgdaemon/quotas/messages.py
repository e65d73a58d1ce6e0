"""The pull/report/extend messages, as msgspec structs.

They are the one description of the provider API's bodies: requests are
decoded with them (unknown fields, wrong types and out-of-range values are
400s), answers are encoded from them, ``openapi.json`` is generated from
them, and the local executor speaks them in-process. A report is a tagged
union on ``status``, so "done needs a result, failed needs a code" is part of
the schema rather than a rule hidden in a handler.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

TaskId = Annotated[int, msgspec.Meta(ge=1, le=2**53, description="The task's id.")]
Token = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{32}$", description="The lease token the pull gave.")]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
Code = Annotated[str, msgspec.Meta(pattern="^[A-Z][A-Z0-9_]{0,63}$",
                                   description="Telegram's error code, e.g. FLOOD_WAIT_120 or CHANNEL_PRIVATE.")]
LeaseSeconds = Annotated[float, msgspec.Meta(ge=5, le=86400, description="Lease length; at most the daemon's"
                                                                          " quotas.max_lease_seconds.")]
Timestamp = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"},
                                        description="UTC, RFC 3339, e.g. 2026-12-01T09:38:24Z.")]
Outcome = Literal["applied", "duplicate", "stale_lease", "not_found"]
MAX_BATCH = 1000


class Message(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base: a field the API does not know is an error, not silently dropped."""


class PullRequest(Message):
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_BATCH)] = 100
    lease_seconds: LeaseSeconds | None = None


class LeasedTask(Message):
    task_id: int
    lease_token: str
    account_id: int
    action: Literal["post_stats", "channel_stats"]
    target: str
    post_id: int | None
    subject_type: Literal["quota"]
    subject_id: int
    order_id: None
    lease_expires_at: Timestamp


class PullResponse(Message):
    tasks: list[LeasedTask]


class Observation(Message, omit_defaults=True):
    """What was read. post_stats: views, forwards, replies, reactions; channel_stats: subscribers, title."""

    views: Count | None = None
    forwards: Count | None = None
    replies: Count | None = None
    reactions: Count | None = None
    reactions_by_emoji: Annotated[dict[Annotated[str, msgspec.Meta(min_length=1, max_length=64)], Count],
                                  msgspec.Meta(max_length=200)] | None = None
    subscribers: Count | None = None
    title: Annotated[str, msgspec.Meta(max_length=256)] | None = None


class Done(Message, tag_field="status", tag="done"):
    task_id: TaskId
    lease_token: Token
    result: Observation


class Failed(Message, tag_field="status", tag="failed"):
    task_id: TaskId
    lease_token: Token
    error_code: Code
    error: Annotated[str, msgspec.Meta(max_length=500)] | None = None


Report = Done | Failed
ReportRequest = Report | Annotated[list[Report], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class ReportResult(Message):
    task_id: int
    outcome: Outcome


class ReportResponse(Message):
    results: list[ReportResult]


class Lease(Message):
    task_id: TaskId
    lease_token: Token


class ExtendRequest(Message):
    leases: Annotated[list[Lease], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]
    lease_seconds: LeaseSeconds | None = None


class ExtendResult(Message):
    task_id: int
    outcome: Outcome
    lease_expires_at: Timestamp | None


class ExtendResponse(Message):
    results: list[ExtendResult]
