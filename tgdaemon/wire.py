"""What the control API answers and its stream sends, as msgspec structs: one definition for everyone who speaks it.

The daemon encodes its answers through these (``tgdaemon.control``, the
stream's deltas), the admin commands decode the answers into them, and the
dashboard takes the account states and its action answers from here. A
struct's fields are in the order the JSON has always had them, so an answer
encodes to the same bytes as the dict it replaced; times are ISO 8601 UTC
strings (``timeutil.iso``) or null. Request bodies stay with their handlers,
where they are validated.

Top-level in the package rather than under ``tgdaemon/control/``: the store's
views take the account states and sort keys from here, and the store sits
below the control API, which imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, get_args

import msgspec
from msgspec import UNSET, UnsetType

from tgdaemon.timeutil import iso

if TYPE_CHECKING:
    from tgdaemon.store.api import NodeInfo

State = Literal["ready", "busy", "cooldown", "disabled", "inactive"]
STATES: tuple[str, ...] = get_args(State)
# What an account list can be sorted by; each store driver maps a key to its never-NULL sort expression.
SortKey = Literal["id", "label", "state", "cooldown", "error", "setup", "executor"]
SORT_KEYS: tuple[str, ...] = get_args(SortKey)
Action = Literal["post_stats", "channel_stats"]  # tgfleet only observes
ACTIONS: tuple[str, ...] = get_args(Action)
TaskStatus = Literal["pending", "running", "done", "failed", "retry"]  # a setup task's
Health = Literal["ok", "limited", "frozen", "dead"]  # what an account's last health check found
HEALTHS: tuple[str, ...] = get_args(Health)
HealthFilter = Literal["ok", "limited", "frozen", "dead", "unchecked"]  # unchecked: never checked
TASK_STATUSES: tuple[str, ...] = get_args(TaskStatus)
# The tasks view (issue 15): setup and pulled tasks together; a pulled task is pending, leased, done or failed.
TaskKind = Literal["setup", "pulled"]
AnyTaskStatus = Literal["pending", "running", "leased", "done", "failed", "retry"]
ANY_TASK_STATUSES: tuple[str, ...] = get_args(AnyTaskStatus)
# How an attempt ended: done; failed (for good); retry (failed, due again later); interrupted (the daemon stopped,
# or the account changed owner, while it ran); expired (a lease ran out without a report).
AttemptOutcome = Literal["done", "failed", "retry", "interrupted", "expired"]
DeltaKind = Literal["account", "quota", "event", "mark"]  # mark: a log row whose objects are gone
# A quota's state, derived (never stored): done = nothing left; expired = its expires_at has passed first.
QuotaState = Literal["active", "paused", "expired", "done"]
QUOTA_STATES: tuple[str, ...] = get_args(QuotaState)
T = TypeVar("T")


def quota_state(paused: bool, expires_at: float | None, left: int | None, now: float) -> str:
    """One rule for the daemon's views and the dashboard, which applies it again as time passes (no delta
    comes when a quota expires). A quota used up is ``done`` even once its time has also run out: it finished;
    ``expired`` outranks ``paused``, since an expired quota can be neither paused nor resumed."""
    if left is not None and left <= 0:
        return "done"
    if expires_at is not None and expires_at <= now:
        return "expired"
    return "paused" if paused else "active"


class Wire(msgspec.Struct, kw_only=True, gc=False):
    """Keyword-only: a wire type is built by naming its fields, never by their position.

    Untracked by the garbage collector (``gc=False``): a listing makes tens of thousands of these at
    once, which otherwise set off full collections of the daemon's heap (tens of ms each, measured).
    Safe because wire values are trees of JSON values, which cannot form a reference cycle.
    """


class Setup(Wire):
    done: int
    total: int


class Account(Wire):
    id: int
    label: str
    phone_masked: str | None
    name: str
    state: State
    is_probe: bool
    is_active: bool
    executor: str
    cooldown_until: str | None
    cooldown_reason: str | None
    disabled_at: str | None
    disabled_reason: str | None
    setup: Setup
    last_error_code: str | None
    last_ok_at: str | None
    owner: str | None  # the node that holds its connection now; None: no node does (yet)
    pinned_node: str | None  # `accounts pin`: it stays on this node, and waits for it when it is down
    health: Health | None  # None: never checked (`accounts check`, [health] interval_hours)
    health_checked_at: str | None  # the last check, whether or not it could finish
    health_detail: dict[str, Any] | None  # what it found: sessions, frozen_since/until, spambot, error...
    proxy_id: int | None = None  # its own proxy (`accounts set-proxy`); None: the global [telegram.proxy], if any
    proxy: str | None = None  # that proxy as shown, scheme://host:port: never its password or secret


class Quota(Wire):
    id: int
    name: str
    action: Action
    target: str
    last_n_posts: int
    quantity_total: int | None
    quantity_left: int | None
    orders_left: int | None
    per_call: int
    interval_seconds: float
    next_run_at: str | None
    expires_at: str
    paused: bool
    state: QuotaState
    inspection_ok: bool | None
    inspection_error: str | None
    inspected_at: str | None
    peer_id: int | None
    title: str | None
    last_error: str | None
    measurements: int
    created_at: str


class Event(Wire):
    id: int
    at: str
    kind: str
    account_id: int | None
    task_id: int | None
    quota_id: int | None
    message: str
    data: dict[str, Any]


class Provider(Wire):
    """Never its token, nor the token's hash."""

    name: str
    created_at: str
    last_seen_at: str | None
    revoked_at: str | None


class Node(Wire):
    """A daemon on the store (design 9): every node holds the connections of its share of the accounts.
    ``alive``: it heartbeat within ``nodes.dead_after_seconds`` and has not stopped, by the database's clock."""

    name: str
    host: str
    pid: int
    version: str
    http: str | None  # its provider API's HOST:PORT
    max_accounts: int  # 0: no cap, an even share
    started_at: str
    heartbeat_at: str
    owned_until: str  # its accounts are its own until then, unless it heartbeats again
    stopped_at: str | None  # a clean stop: its accounts were let go then
    alive: bool
    leader: bool  # runs the fleet's once-only work (generation, the reaper, setup dispatch, the balancer)
    accounts: int  # owned now


ProxyState = Literal["unchecked", "ok", "slow", "dead"]


class Proxy(Wire):
    """An account's own proxy (``tgdaemon proxies``): shown as ``scheme://host:port``, never with its user's
    password or its MTProxy secret."""

    id: int
    url: str
    label: str
    state: ProxyState  # the health checker's last finding; unchecked before the first
    latency_ms: float | None  # to an open connection through it, at the last check that got one
    checked_at: str | None
    last_error: str | None  # why the last check found it dead
    created_at: str
    accounts: int  # that use it
    held: int  # of them, waiting in a 'proxy' cooldown now (it was found dead)


def node_of(info: NodeInfo) -> Node:
    """A store's node as the API shows it: times as ISO strings."""
    return Node(name=info.name, host=info.host, pid=info.pid, version=info.version, http=info.http,
                max_accounts=info.max_accounts, started_at=iso(info.started_at), heartbeat_at=iso(info.heartbeat_at),
                owned_until=iso(info.owned_until), stopped_at=iso(info.stopped_at), alive=info.alive,
                leader=info.leader, accounts=info.accounts)


class StoreStatus(Wire):
    kind: Literal["sqlite", "postgresql"]
    url: str  # never with a password
    down: str | None = None  # the database cannot be reached: why (one line, no password); the daemon retries
    down_since: str | None = None


class StreamStatus(Wire):
    epoch: str
    seq: int
    subscribers: int


class SetupStatus(Wire):
    enabled: bool
    running: int


class SimulatorStatus(Wire):
    seed: int
    accounts: int
    channels: list[str]


class Status(Wire):
    """``GET /v1/status``. The store's and retention's parts are still free-form: they are the parts a store
    driver reports for itself, and they are being reshaped (PostgreSQL)."""

    version: str
    pid: int
    started_at: str
    uptime_seconds: float
    gateway: str
    data_dir: str
    socket: str
    http: str | None
    tls: bool  # whether the provider port (``http``) speaks TLS
    store: StoreStatus
    synchronous: str  # "full": acknowledged writes survive power loss
    accounts: dict[str, int]  # by state: every one of STATES, in that order
    tasks: dict[str, dict[str, int]]  # "setup" and "pulled": counts by status, statuses with none left out
    tasks_per_minute: int
    stream: StreamStatus
    setup: SetupStatus
    database: dict[str, Any]
    retention: dict[str, Any]
    node: str  # the node that answered
    nodes: list[Node]  # every node on the store, by name (on SQLite, the one)
    simulator: SimulatorStatus | UnsetType = UNSET  # only on the simulator; absent otherwise, as it always was
    cooldowns: dict[str, int] = msgspec.field(default_factory=dict)  # accounts in cooldown, by reason (e.g. proxy)


# The answers that wrap the objects above, one per route.

class AccountPage(Wire):
    accounts: list[Account]
    next: str | None  # the cursor of the next page; None on the last


class AccountChange(Wire):
    changed: bool
    account: Account


class EventList(Wire):
    events: list[Event]


class QuotaList(Wire):
    quotas: list[Quota]


class QuotaChange(Wire):
    changed: bool
    quota: Quota


class Task(Wire):
    """A setup or a pulled task as ``GET /v1/tasks`` lists it: the fields a setup task always had (the same
    names and meanings) and what the tasks view adds. ``key``: ``kind:id``, what ``tasks show`` and ``POST /tasks/retry`` take;
    ``queue``: fast or media (a setup task's), or ``pulled:EXECUTOR``; ``attempts``: of this run (an operator's
    retry starts again at 0); ``quota_id``, ``post_id``, ``executor``: a pulled task's."""

    key: str
    kind: TaskKind
    id: int
    account_id: int
    label: str
    task_type: str  # a setup task's type, or a pulled task's action
    queue: str | None  # None for a setup task type this daemon no longer knows
    status: AnyTaskStatus
    attempts: int
    retry_at: str | None
    last_error_code: str | None
    last_error: str | None
    blocked_by: str | None  # why a waiting task does not run yet, in words
    result: dict[str, Any]
    created_at: str
    updated_at: str
    executor: str | None = None
    quota_id: int | None = None
    post_id: int | None = None


class TaskList(Wire):
    tasks: list[Task]
    # Tasks per queue and status, the whole fleet's (not only the listed ones): the tasks view's header.
    counts: dict[str, dict[str, int]] = {}


class TaskAttempt(Wire):
    """One finished attempt. ``node``: the node that owned the account (a provider's runs are its own);
    ``attempt``: the task's counter when it ended (an operator's retry starts it again)."""

    attempt: int
    started_at: str | None
    ended_at: str
    seconds: float | None
    node: str | None
    executor: str | None
    outcome: AttemptOutcome
    error_code: str | None
    error: str | None


class TaskDetail(Wire):
    task: Task
    attempts: list[TaskAttempt]  # oldest first
    attempts_kept: int | None  # a setup task keeps its last N attempts; None: a pulled task's all, until pruned


class TaskRefusal(Wire):
    task: str  # kind:id
    reason: str


class TasksRetried(Wire):
    """``POST /v1/tasks/retry``: how many tasks matched, how many were made due (dry run: would be), and why the
    others were not (the first 100 named, ``refused_count`` all of them)."""

    matched: int
    retried: int
    refused: list[TaskRefusal]
    refused_count: int
    dry_run: bool


class PulseQueue(Wire):
    done: list[int]  # attempts ended per minute, oldest minute first, the current minute last
    failed: list[int]  # every attempt that did not end done (failed, retry, expired, interrupted)


class Pulse(Wire):
    at: str
    minutes: int
    queues: dict[str, PulseQueue]  # fast and media always; pulled:EXECUTOR when it has a count in the window


class Dispatched(Wire):
    created: int
    due: int
    enabled: bool


class Retried(Wire):
    tasks: int  # setup tasks made due now


class ProviderList(Wire):
    providers: list[Provider]


class ProviderAdded(Wire):
    provider: Provider
    token: str  # its only appearance: the daemon keeps its hash


class ProviderChange(Wire):
    changed: bool
    provider: Provider


class ProxyList(Wire):
    proxies: list[Proxy]


class ProxyAdded(Wire):
    proxy: Proxy


class ProxyRemoved(Wire):
    proxy: Proxy
    accounts: list[int]  # that used it: they have no proxy of their own now (a forced removal)


class ProxySet(Wire):
    """``POST /v1/accounts/proxy``: the accounts whose proxy changed (each connects anew through it)."""

    changed: list[int]
    proxy: Proxy | None  # None: no proxy of their own (the global [telegram.proxy], if any)


class NodeList(Wire):
    node: str  # the node that answered
    at: str  # the database's time the list was read: a heartbeat's age is ``at - heartbeat_at``
    nodes: list[Node]


class Pinned(Wire):
    """``POST /v1/accounts/pin`` and ``/unpin``: how many accounts' pin changed."""

    changed: int
    node: str | None  # None: unpinned
    note: str | None  # why the pin may not take effect soon (the node is not alive), in words


class Assigned(Wire):
    changed: int
    executor: str


class BackupWritten(Wire):
    path: str
    bytes: int
    seconds: float


class LoginStarted(Wire):
    login_id: str
    phone_masked: str | None
    expires_in: float


class LoginStep(Wire):
    status: Literal["password_needed", "done"]
    account: Account | UnsetType = UNSET  # once done


class Imported(Wire):
    """One session of an import: imported (``account_id``, ``label``, ``phone_masked``) or not (``error``); the
    fields of the other case are absent (UNSET), not null."""

    source: str
    ok: bool
    account_id: int | UnsetType = UNSET
    label: str | UnsetType = UNSET
    phone_masked: str | None | UnsetType = UNSET  # None: imported without a check, the phone is not known yet
    error: str | UnsetType = UNSET
    duplicate: bool | UnsetType = UNSET  # a dry run's refusal: the fleet has it already (``error`` says which)
    twofa: str | UnsetType = UNSET  # with save_2fa: what became of the sidecar's 2FA password (never the password)


class ImportResults(Wire):
    results: list[Imported]


class Cancelled(Wire):
    cancelled: bool


class HealthCheck(Wire):
    """One account of ``POST /v1/accounts/check``: ``checked`` (``health`` found), ``failed`` (the check could
    not tell: ``message`` says why, the last finding stays), ``busy`` or ``skipped`` (``message`` says why)."""

    account_id: int
    label: str
    outcome: Literal["checked", "failed", "busy", "skipped"]
    health: Health | None
    detail: dict[str, Any]
    message: str


class HealthChecks(Wire):
    results: list[HealthCheck]


class Session(Wire):
    """One of an account's active authorizations (``GET /v1/accounts/{id}/sessions``); ``current``: the
    daemon's own. ``hash`` is what ends it (the terminate_other_sessions setup task)."""

    hash: int
    current: bool
    device_model: str
    platform: str
    system_version: str
    app_name: str
    app_version: str
    api_id: int
    official_app: bool
    country: str
    region: str
    created: str | None
    active: str | None


class SessionList(Wire):
    account_id: int
    sessions: list[Session]


class DeviceFields(Wire):
    """An app and device as shown: the api_hash only masked; None: not set."""

    api_id: int | None
    api_hash_masked: str | None
    device_model: str | None
    system_version: str | None
    app_version: str | None
    lang_code: str | None
    system_lang_code: str | None


class AccountDevice(Wire):
    """An account's own parameters, the [telegram] defaults, and what its client presents (own, else default)."""

    account_id: int
    own: DeviceFields
    default: DeviceFields
    effective: DeviceFields


class DeviceSet(Wire):
    changed: int
    accounts: list[AccountDevice]


ExportFormat = Literal["telethon-string", "telethon-session", "pyrogram"]
EXPORT_FORMATS: tuple[str, ...] = get_args(ExportFormat)


class ExportedSession(Wire):
    """A session handed out for ``accounts export`` (``POST /accounts/export``): the one answer with an auth key."""

    account_id: int
    label: str
    dc_id: int
    server: str
    port: int
    auth_key: str  # base64 of the 256-byte key
    user_id: int | None
    api_id: int | None  # the account's own, else [telegram]'s: what a Pyrogram file records


class ExportedSessions(Wire):
    sessions: list[ExportedSession]


# The stream (``GET /v1/watch``): every frame says what it is in ``type``.

class Frame(Wire, tag_field="type"):
    pass


class Delta(Frame, Generic[T], tag="delta"):
    """One object's full new state: applying it twice is harmless. ``Delta[Account]`` decodes a known kind.
    ``seq`` is the id of the event-log row it comes from, ``prev`` the id of the row before it."""

    seq: int
    prev: int
    kind: DeltaKind
    op: Literal["upsert"]
    data: T


class Deltas(Frame, tag="deltas"):
    """Several deltas in one frame, in order; ``more``: the log row goes on in the next frame."""

    items: list[Delta[Any]]
    more: bool | UnsetType = UNSET


class Snapshot(Frame, tag="snapshot"):
    """The first frame of a snapshot; while ``more``, ``SnapshotPart`` frames continue its lists in order."""

    epoch: str
    seq: int
    status: Status
    accounts: list[Account]
    quotas: list[Quota]
    events: list[Event]
    more: bool


class SnapshotPart(Frame, tag="snapshot_part"):
    accounts: list[Account]
    quotas: list[Quota]
    events: list[Event]
    more: bool


class Resync(Frame, tag="resync"):
    """The client fell behind: a new snapshot follows on the same socket."""

    reason: str


class Resumed(Frame, tag="resumed"):
    """A watch resumed from ``since`` without a snapshot: the missed rows follow."""

    epoch: str
    seq: int
    status: Status


class StoreChanged(Frame, tag="store"):
    """The database was lost (``store.down`` says why) or is back: sent as it happens, between deltas."""

    store: StoreStatus


Frames = Snapshot | SnapshotPart | Delta[Any] | Deltas | Resync | Resumed | StoreChanged

