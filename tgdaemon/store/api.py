"""The store's interface: the operations the daemon needs, and the types they take and give.

Everything above ``tgdaemon.store`` speaks to this, never to SQL: no
connection, cursor or row type crosses it. Two drivers implement it,
``tgdaemon.store.sqlite`` (the embedded default) and ``tgdaemon.store.postgres``
(for fleets that outgrow one machine); ``tests/store/`` is the conformance
suite that proves they behave alike. The rules that are not storage (which
outcome a lease gives a report, what a page cursor holds, how a row is shown)
are in ``tgdaemon.store.rules`` and ``tgdaemon.store.views``, written once.
"""

from __future__ import annotations

from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol


class Row(Protocol):
    """A driver's row read by column name: ``sqlite3.Row`` and ``asyncpg.Record`` both are one (and a dict)."""

    def __getitem__(self, key: str, /) -> Any: ...

    def keys(self) -> Any: ...


# (marked peer id, access hash, username, phone, name): Telethon's own entity row shape.
EntityRow = tuple[int, int, str | None, str | None, str | None]

# The event log is the stream's durable source (design 3.1). A transaction that touched an account or a
# quota that none of its events names adds, just before COMMIT, one row of this kind naming them:
# data {"accounts": [ids], "quotas": [ids]} (sorted), message "", no account, task or quota id. It is
# stream bookkeeping, not audit: recent_events leaves it out.
CHANGES_KIND = "changes"
# meta key: the highest event id retention has deleted; a stream cursor below it cannot be resumed.
EVENTS_PRUNED_THROUGH = "events.pruned_through"
STREAM_EPOCH = "stream.epoch"  # meta: names this database's log; a restored backup gets a new one

@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    token_hash: str
    revoked_at: float | None


@dataclass(frozen=True, slots=True)
class ClaimedTask:
    id: int
    account_id: int
    task_type: str
    payload: dict[str, Any]
    attempts: int  # including this one
    result: dict[str, Any]  # what an earlier attempt recorded (a photo or story id)
    started_at: float  # when the task first started
    tg_user_id: int | None
    phone: str | None
    profile: dict[str, Any]
    resumed: bool = False  # an earlier attempt started (and may have posted something)
    epoch: int = 0  # the account's ownership epoch the claim was made under: the finish is fenced by it

    @property
    def holder(self) -> str:
        return f"setup:{self.id}"


@dataclass(frozen=True, slots=True)
class AccountEffect:
    """What an outcome does to the account (design section 6)."""

    cooldown_until: float | None = None
    cooldown_reason: str | None = None
    disable_reason: str | None = None
    error_code: str | None = None  # None with ok=True clears the account's last error
    ok: bool = False
    name: tuple[str, str] | None = None  # the account's name as it now is on Telegram


@dataclass(frozen=True, slots=True)
class SetupOutcome:
    status: str  # done, retry or failed
    effect: AccountEffect
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    retry_at: float | None = None
    refund_attempt: bool = False  # waits are not the task's fault


@dataclass(frozen=True, slots=True)
class Generation:
    max_tasks: int
    lock_seconds: float  # the reservation window of a task not pulled yet
    daily_cap: int
    day: str  # the UTC day whose usage counts against the cap
    stale_before: float  # a posts snapshot fetched before this is refreshed first
    local: bool  # whether accounts assigned to ``local`` are served
    leader_epoch: int | None = None  # several nodes: generate only while this is still the fleet's leadership


@dataclass(frozen=True, slots=True)
class Generated:
    tasks: int = 0
    no_account: int = 0  # due quotas that found no account this round
    empty: int = 0  # post quotas whose channel showed no posts


@dataclass(frozen=True, slots=True)
class LeaseAsk:
    executor: str
    limit: int
    lease_seconds: float
    lock_seconds: float
    owner: str | None = None  # the local executor: only tasks of accounts this node owns (rows carry "epoch")


@dataclass(frozen=True, slots=True)
class Finish:
    """One report, already validated; ``effect`` is what a failure does to the account."""

    executor: str
    task_id: int
    lease_token: str
    ok: bool
    observation: dict[str, Any] = field(default_factory=dict)
    error_code: str | None = None
    error: str | None = None
    effect: AccountEffect | None = None
    target_failed: bool = False
    retry_quota: bool = False  # the quota waits ``retry_seconds``; not for errors that are the account's own
    epoch: int | None = None  # the local executor's: applied only while the account's epoch is this one


@dataclass(frozen=True, slots=True)
class Reaped:
    returned: int = 0  # expired leases back to pending
    failed: int = 0  # expired max_leases times
    unpulled: int = 0  # pending past their reservation window


@dataclass(frozen=True, slots=True)
class Batch:
    deleted: int  # rows deleted by this batch
    scanned: int  # rows looked at; fewer than the limit means the end was reached
    held_seconds: float  # how long the write transaction held the writer (0 when none was needed)
    cursor: tuple[float, int] | None = None  # tasks: where the next batch of this round starts


@dataclass(frozen=True, slots=True)
class Maxima:
    """The longest each kind of deadline can legitimately lie ahead, in seconds, from the config."""

    quota_retry: float  # a quota's next run is at most max(its interval, this) ahead
    pace: float  # a 'pace' cooldown set before cooldowns recorded their length
    cooldown: float  # any other such cooldown: the longest wait there is
    backoff: float  # a setup retry, unless its account's cooldown is longer
    setup_lock: float
    probe_lock: float
    quota_lock: float  # a pulled task's reservation of its account, at the longest lease
    lease: float  # a leased task
    reservation: float  # a pending task not pulled yet
    snapshot_ttl: float  # a posts snapshot is refreshed this long after it was fetched


@dataclass(frozen=True, slots=True)
class SessionData:
    dc_id: int
    server: str
    port: int
    auth_key: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Device:
    """The app and device an account presents to Telegram; None: the [telegram] default. An account keeps
    presenting the device it was created with, or Telegram may see a new login under an old key."""
    api_id: int | None = None
    api_hash: str | None = field(default=None, repr=False)
    device_model: str | None = None
    system_version: str | None = None
    app_version: str | None = None
    lang_code: str | None = None
    system_lang_code: str | None = None

    def given(self) -> list[str]:
        """The fields this device sets (the rest fall back to [telegram])."""
        return [name for name in DEVICE_FIELDS if getattr(self, name) is not None]


# The device's fields, in the order of their columns on ``accounts``.
DEVICE_FIELDS = ("api_id", "api_hash", "device_model", "system_version", "app_version", "lang_code", "system_lang_code")


@dataclass(frozen=True, slots=True)
class ProxyTarget:
    """Where an account's connection goes through; ``secret`` (the password or the MTProxy secret) is
    for the gateway only."""
    id: int
    scheme: str  # socks5 | socks4 | http | mtproxy
    host: str
    port: int
    username: str = ""
    secret: str = field(default="", repr=False)
    state: str = "unchecked"  # unchecked | ok | slow | dead


@dataclass(frozen=True, slots=True)
class ClientParams:
    """What the gateway needs besides the session to build an account's client."""
    device: Device = field(default_factory=Device)
    proxy: ProxyTarget | None = None  # None: the global [telegram.proxy], if any


@dataclass(frozen=True, slots=True)
class NewAccount:
    phone: str | None
    tg_user_id: int | None
    label: str
    is_probe: bool
    first_name: str = ""
    last_name: str = ""
    device: Device = Device()  # what an imported session was made with (its sidecar, or the import's options)
    proxy_id: int | None = None  # its own proxy from its first connection on (login or import through it)


@dataclass(frozen=True, slots=True)
class NewProxy:
    """A proxy to add (``tgdaemon.proxies.url.parse`` made it); ``secret`` goes to proxy_secrets only."""
    scheme: str
    host: str
    port: int
    username: str = ""
    secret: str = field(default="", repr=False)
    label: str = ""


@dataclass(frozen=True, slots=True)
class ProxyCheck:
    """One health check's finding; ``error`` is one line that never holds the proxy's secret."""
    state: str  # ok | slow | dead
    latency_ms: float | None
    error: str | None
    at: float


@dataclass(frozen=True, slots=True)
class ProxyChecked:
    """What recording a check did: the state before it, and the accounts it held or let go."""
    previous: str  # unchecked | ok | slow | dead
    held: int  # accounts put in (or kept in) a 'proxy' cooldown: the proxy is dead
    released: int  # accounts whose 'proxy' cooldown ended: the proxy answers again


@dataclass(frozen=True, slots=True)
class QuotaRef:
    """A quota as the inspector and the snapshot refresh need it."""

    id: int
    target: str
    last_n_posts: int = 0


@dataclass(frozen=True, slots=True)
class ProbeAccount:
    id: int
    tg_user_id: int | None
    phone: str | None
    epoch: int = 0  # its ownership epoch: the probe's writes are fenced by it


# --- nodes and ownership (design 9) ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class NodeSpec:
    """What a daemon registers as: one row per node name, taken over by each new incarnation."""

    name: str
    incarnation: str  # random per start: a renewal by another incarnation of the name fails
    host: str
    pid: int
    version: str
    http: str | None  # the provider API's HOST:PORT, for the operator
    max_accounts: int  # 0: no cap, an even share


@dataclass(frozen=True, slots=True)
class NodeInfo:
    name: str
    host: str
    pid: int
    version: str
    http: str | None
    max_accounts: int
    started_at: float
    heartbeat_at: float
    owned_until: float  # the node's accounts are its own until then (the database's clock)
    stopped_at: float | None  # a clean stop: its accounts were released then
    accounts: int  # owned now
    leader: bool
    alive: bool  # heartbeat within dead_after and not stopped, as of ``at`` in NodesView


@dataclass(frozen=True, slots=True)
class Renewal:
    """A heartbeat: whether the node still holds its name, and the database's time it was made at."""

    held: bool  # False: another incarnation took the name (this one was taken for dead): stop
    at: float
    owned_until: float
    leader_epoch: int | None  # the fleet's leadership, held by this node under this epoch; None: not leader
    sent: float = 0.0  # this host's steady clock (timeutil.steady) as the renewal's statements were sent, after any
    # wait for the store's writer: the node's fence counts from here, never from before a queue it stood in


@dataclass(frozen=True, slots=True)
class OwnedAccount:
    id: int
    epoch: int
    assigned: str | None  # where the balancer wants it: another node means this one releases it
    disabled: bool  # a disabled account's client is let go by its owner


@dataclass(frozen=True, slots=True)
class Assignment:
    """What the leader's balancer reads: per live node the accounts assigned to it (pinned among them)."""

    assigned: dict[str, int]
    pinned: dict[str, int]
    orphans: int  # unpinned accounts assigned to no live node
    pinned_away: int  # accounts pinned to a node that is not live: they wait for it


@dataclass(frozen=True, slots=True)
class TaskFilter:
    """Which tasks a listing or a retry means (issue 15); every field given narrows it. ``types``: setup task types
    and pulled actions alike (their names differ; a queue is its types, ``tgdaemon.tasksview``); ``executor``:
    pulled tasks of this lane only; ``ids``: (kind, id) pairs, alone (the other fields are then ignored)."""

    kind: Literal["setup", "pulled"] | None = None
    status: str | None = None
    types: tuple[str, ...] | None = None
    executor: str | None = None
    account_id: int | None = None
    ids: tuple[tuple[str, int], ...] | None = None


@dataclass(frozen=True, slots=True)
class LaneCount:
    """Tasks of one lane in one status: a setup lane is a task type, a pulled lane an executor."""

    kind: str
    lane: str
    status: str
    n: int


@dataclass(frozen=True, slots=True)
class PulseCount:
    """Attempts of one lane that ended in the minute starting at ``minute`` (epoch seconds) with ``outcome``."""

    minute: int
    kind: str
    lane: str
    outcome: str
    n: int


@dataclass(frozen=True, slots=True)
class TaskRetry:
    """What ``retry_tasks`` did (or, dry run, would do): tasks matched, made due, and why the others were not
    (at most ``REFUSALS_SHOWN`` of them named; ``refused_count`` all)."""

    matched: int
    retried: int
    refused: list[tuple[str, int, str]]  # (kind, id, why)
    refused_count: int
    dry_run: bool


REFUSALS_SHOWN = 100
SETUP_ATTEMPTS_KEPT = 20  # a setup task keeps this many of its last attempts (migration 0016 / 0007)


@dataclass(frozen=True, slots=True)
class SimConnection:
    """One simulated MTProto connection of an account, as the simulator's own record keeps it."""

    id: int
    tg_user_id: int
    node: str
    pid: int
    opened_at: float
    last_seen_at: float
    closed_at: float | None
    closed_why: str | None


class Tx(Protocol):
    """One write transaction, as callers above the drivers see it: what it changed, and the audit trail."""

    accounts: set[int]
    quotas: set[int]
    events: list[dict[str, Any]]  # the log rows written, with their ids: filled just before COMMIT (txlog.py)

    def touch(self, account_id: int) -> None: ...

    def touch_quota(self, quota_id: int) -> None: ...

    async def event(self, kind: str, message: str, *, account_id: int | None = None,
                    task_id: int | None = None, quota_id: int | None = None,
                    data: dict[str, Any] | None = None) -> None: ...

    async def events_many(self, events: list[dict[str, Any]]) -> None: ...

    async def set_meta(self, key: str, value: str) -> None: ...

    async def setdefault_meta(self, key: str, value: str) -> str:
        """The key's value: ``value`` when it had none, else the one it has (another node's that set it at the
        same moment, once that one has committed), as ``dict.setdefault``."""
        ...


CommitHook = Callable[[Tx], Awaitable[None]]
FailureHook = Callable[[str], None]
DownHook = Callable[[str | None], None]  # what is wrong when the database is lost, None when it is back


class ClockFollower(Protocol):
    """Moves stored deadlines with a step of the wall clock (tgdaemon/clockstep.py)."""

    def pending(self) -> float: ...

    async def shift(self, store: Store, tx: Tx, step: float) -> None: ...

    def followed(self, step: float) -> None: ...


class Store(Protocol):
    """Every operation the daemon asks of its database. Reads never wait for a writer; each write method is
    one transaction, unless it takes a ``tx`` (then it joins the caller's, from ``tx()``)."""

    @property
    def url(self) -> str: ...  # without a password: what status and logs show

    kind: Literal["sqlite", "postgresql"]
    synchronous: str
    failure: str | None
    down: str | None  # the database cannot be reached (a server's store only): why, until a transaction succeeds
    on_commit: CommitHook | None
    on_failure: FailureHook | None
    on_down: DownHook | None
    clock: ClockFollower | None
    providers_version: int

    # --- lifecycle and transactions
    def tx(self) -> AbstractAsyncContextManager[Tx]: ...
    async def close(self, seconds: float = ...) -> None: ...
    async def backup(self, target: Path, *, replace: bool = False) -> int: ...
    async def get_meta(self, key: str) -> str | None: ...
    async def set_meta(self, tx: Tx, key: str, value: str) -> None: ...

    # --- accounts
    async def insert_accounts(self, tx: Tx, rows: Iterable[dict[str, Any]]) -> None: ...
    async def count_accounts(self) -> int: ...
    async def tg_user_ids(self) -> set[int]: ...
    # ``health``: one of wire.HEALTHS, or "unchecked" (never checked).
    async def list_accounts(self, *, state: str | None = None, q: str | None = None, sort: str = "id",
                            desc: bool = False, limit: int = 100, after: str | None = None,
                            health: str | None = None) -> tuple[list[dict[str, Any]], str | None]: ...
    # The same page, each account as the JSON bytes of its ``wire.Account`` (built by the database).
    async def list_accounts_json(self, *, state: str | None = None, q: str | None = None, sort: str = "id",
                                 desc: bool = False, limit: int = 100, after: str | None = None,
                                 health: str | None = None) -> tuple[list[bytes], str | None]: ...
    async def accounts_by_id(self, tx: Tx | None, ids: Iterable[int]) -> list[dict[str, Any]]: ...
    async def get_account(self, account_id: int) -> dict[str, Any]: ...
    async def account_counts(self) -> dict[str, int]: ...
    async def cooldowns_by_reason(self) -> list[tuple[str | None, int]]: ...
    async def tasks_finished_since(self, at: float) -> int: ...
    async def disable_account(self, account_id: int, reason: str) -> bool: ...
    async def enable_account(self, account_id: int) -> bool: ...
    async def recent_events(self, *, account_id: int | None = None,  # the audit trail: no CHANGES_KIND rows
                            limit: int = 100) -> list[dict[str, Any]]: ...
    async def events_after(self, after_id: int, limit: int) -> list[dict[str, Any]]: ...  # id order: the stream's source
    async def last_event_id(self) -> int: ...  # 0 for an empty log: where a stream that starts now begins
    async def account_ref(self, account_id: int) -> tuple[int | None, str | None]: ...
    async def assign_accounts(self, ids: list[int], executor: str) -> int: ...

    # --- sessions and entity caches
    async def load_session(self, account_id: int) -> SessionData | None: ...
    async def client_params(self, account_id: int) -> ClientParams: ...
    async def save_session(self, account_id: int, data: SessionData, *,
                           epoch: int | None = None) -> bool: ...  # False: the epoch is stale, nothing written
    async def load_entities(self, account_id: int) -> list[EntityRow]: ...
    async def save_entities(self, account_id: int, rows: Iterable[EntityRow]) -> None: ...
    async def find_entity(self, account_id: int, username: str) -> EntityRow | None: ...
    async def add_account(self, account: NewAccount, session: SessionData, *, how: str) -> int: ...
    async def session_account(self, auth_key: bytes) -> tuple[int, str] | None:
        """The account (id, label) whose session holds this auth key: an import checks it before connecting."""
    async def duplicate_of(self, account: NewAccount, session: SessionData) -> str | None:
        """Why ``add_account`` would refuse these (the same user, phone or auth key as an account: "that
        session is already account 3 (alpha)"), or None: what ``import --dry-run`` reports, writing nothing."""
    async def set_device(self, account_ids: Sequence[int], device: Device, *, replace: bool) -> int:
        """Set accounts' app and device parameters; how many accounts. ``replace``: every field as given (None
        clears it back to [telegram]); else only the fields ``device`` sets. An unknown id: NotFound, nothing
        written. An api_id may stand alone: on a signed-in session only the api_id is sent (initConnection);
        the api_hash serves sign-in, which an account never does again."""

    # --- proxies (issue 14): the secret part only ever in proxy_secrets, and only ProxyTarget carries it
    async def add_proxy(self, proxy: NewProxy) -> dict[str, Any]: ...  # Conflict: the same one exists
    async def list_proxies(self) -> list[dict[str, Any]]: ...  # each with "accounts": how many use it
    async def get_proxy(self, proxy_id: int) -> dict[str, Any]: ...  # NotFound
    async def remove_proxy(self, proxy_id: int, *, force: bool = False) -> tuple[dict[str, Any], list[int]]:
        """The removed proxy and the accounts that used it (set to none, their 'proxy' cooldowns lifted);
        ``Conflict`` and nothing removed while accounts use it, unless ``force``."""
    async def set_account_proxy(self, ids: Sequence[int], proxy_id: int | None) -> list[int]:
        """Each account's own proxy (None: none, the global [telegram.proxy] if any), in one transaction;
        the accounts whose proxy changed (their 'proxy' cooldowns lifted). NotFound, nothing changed, for
        an account or a proxy that does not exist."""
    async def proxy_targets(self, ids: Sequence[int] | None = None) -> list[ProxyTarget]:
        """The proxies (these, or all), secrets included: for the health checker only. NotFound for an id
        that does not exist."""
    async def record_proxy_check(self, proxy_id: int, check: ProxyCheck, *, hold_until: float) -> ProxyChecked:
        """The check's finding; dead: the proxy's enabled accounts wait in a 'proxy' cooldown until
        ``hold_until`` (longer ones are left as they are); ok or slow: their 'proxy' cooldowns end. An event
        when the state changes. NotFound when the proxy was removed meanwhile."""

    # --- account locks and effects (joined to the caller's transaction)
    async def take_lock(self, tx: Tx, account_id: int, holder: str, seconds: float) -> bool: ...
    async def release_lock(self, tx: Tx, account_id: int, holder: str) -> None: ...
    async def apply_account_effect(self, tx: Tx, account_id: int, effect: AccountEffect, *,
                                   epoch: int | None = None) -> bool: ...  # False: stale epoch, nothing done
    async def mark_used(self, tx: Tx, account_id: int) -> None: ...

    # --- account health (tgdaemon.health)
    async def record_health(self, tx: Tx, account_id: int, health: str | None, detail: Mapping[str, Any],
                            at: float, *, epoch: int | None = None) -> bool:
        """A check's finding: ``health`` (None: the check could not tell, the last finding stays), when, and
        ``detail`` (a JSON object); an event when the health changed. False, nothing written, when ``epoch``
        is no longer the account's."""
    async def health_due(self, before: float, limit: int, owner: str | None = None) -> list[ProbeAccount]:
        """Accounts a scheduled check may take now: active, enabled, not in cooldown, lock free, last checked
        before ``before`` (or never), least recently checked first; ``owner``: only this node's."""

    # --- setup pipeline (design 4)
    async def recover_setup(self, owner: str | None = None) -> int: ...  # only this node's accounts' tasks
    async def dispatch_setup(self, required: Mapping[str, dict[str, Any]]) -> tuple[int, int]: ...
    async def claim_setup(self, task_types: Iterable[str], limit: int, lock_seconds: float, *,
                          owner: str | None = None) -> list[ClaimedTask]: ...  # owner: its accounts only
    async def finish_setup(self, task: ClaimedTask, outcome: SetupOutcome) -> None: ...
    async def finish_setup_many(self, items: list[tuple[ClaimedTask, SetupOutcome]]) -> None: ...
    async def finish_and_claim_setup(self, items: list[tuple[ClaimedTask, SetupOutcome]],
                                     claims: Sequence[tuple[Sequence[str], int]], lock_seconds: float, *,
                                     owner: str | None = None) -> list[list[ClaimedTask]]:
        """``finish_setup_many``, then ``claim_setup`` for each (types, limit) in turn, in one transaction: the
        slots the finished tasks free are filled again without a transaction of their own."""
    async def retry_account_setup(self, account_id: int) -> int: ...
    async def setup_tasks(self, *, account_id: int | None = None, status: str | None = None,
                          limit: int = 1000) -> list[dict[str, Any]]: ...

    # --- the tasks view (issue 15): setup and pulled tasks together, their attempts, counts and pulse
    async def list_tasks(self, f: TaskFilter, limit: int = 1000) -> list[dict[str, Any]]:
        """Tasks matching ``f``, each as one shape for both kinds (``kind``, ``id``, ``account_id``, ``label``,
        ``task_type``, ``executor``, ``status``, ``attempts``, ``retry_at``, ``last_error_code``, ``last_error``,
        ``created_at``, ``updated_at`` and what ``blocked_by`` reads); setup ones first, by account, then
        pulled ones, newest first; at most ``limit`` of each kind."""
    async def get_task(self, kind: str, task_id: int) -> dict[str, Any]: ...  # list_tasks' shape; NotFound
    async def task_attempts(self, kind: str, task_id: int) -> list[dict[str, Any]]: ...  # oldest first; NotFound
    async def lane_counts(self) -> list[LaneCount]: ...  # from counters: O(lanes x statuses)
    async def pulse(self, since: float) -> list[PulseCount]: ...  # minutes starting at or after ``since``
    async def retry_tasks(self, f: TaskFilter, *, dry_run: bool = False,
                          pulled_window: float = 600.0) -> TaskRetry:
        """Make the matching tasks due again, in batched transactions. A setup task that failed or waits for
        its retry_at is due now with its attempts at 0 (as ``retry_account_setup``); a failed pulled task goes
        back to pending (attempts at 0, its reservation taken again when the account is free, unpulled it
        fails after ``pulled_window`` seconds as a new one does) only while its quota is active with room for
        one more open task and its account is enabled with no other open task; the others say why not."""

    # --- quotas (design 5)
    async def add_quota(self, *, name: str, target: str, action: str, last_n_posts: int,
                        quantity: int | None, orders: int | None, interval_seconds: float,
                        expires_at: float) -> int: ...
    async def quotas(self) -> list[dict[str, Any]]: ...
    async def quota(self, quota_id: int) -> dict[str, Any]: ...
    async def quotas_by_id(self, tx: Tx | None, ids: Iterable[int]) -> list[dict[str, Any]]: ...
    async def quotas_after(self, after_id: int, limit: int) -> list[dict[str, Any]]: ...  # id order: the snapshot's pages
    async def set_quota_paused(self, quota_id: int, paused: bool) -> bool: ...
    async def uninspected_quotas(self) -> list[QuotaRef]: ...
    async def record_inspection(self, quota_id: int, *, ok: bool | None, peer_id: int | None = None,
                                title: str | None = None, error: str | None = None) -> None: ...
    async def probe_accounts(self, owner: str | None = None) -> list[ProbeAccount]: ...
    def measurement_pages(self, quota_id: int, limit: int | None = None,
                          page: int = 5000) -> AsyncIterator[list[tuple[Any, ...]]]: ...
    # The same rows as the export's bytes, a page at a time (``views.measurement_rows``, fmt "csv"/"json").
    def measurement_export(self, quota_id: int, fmt: str, limit: int | None = None,
                           page: int = 10_000) -> AsyncIterator[bytes]: ...

    # --- pulled tasks: generation, leases, reports, the reaper (design 5.2-5.5)
    async def stale_snapshots(self, stale_before: float, limit: int) -> list[QuotaRef]: ...
    async def record_posts(self, quota_id: int, post_ids: list[int]) -> None: ...
    async def postpone_quota(self, quota_id: int, error: str, seconds: float) -> None: ...
    async def generate(self, g: Generation) -> Generated: ...
    async def lease_tasks(self, asks: list[LeaseAsk]) -> list[list[dict[str, Any]]]: ...
    async def extend_leases(self, executor: str, leases: list[tuple[int, str]], lease_seconds: float,
                            lock_seconds: float) -> list[tuple[str, float | None]]: ...
    async def finish_tasks(self, items: list[Finish], *, pace_seconds: float, day: str,
                           retry_seconds: float) -> list[str]: ...
    async def reap_leases(self, max_leases: int, lock_seconds: float) -> Reaped: ...

    # --- nodes, ownership and leadership (design 9); times are the database's clock
    async def db_now(self) -> float: ...
    async def listen(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(last event id)`` whenever another store commits to the event log (this store's
        own commits reach ``on_commit``), and once each time it starts listening (PostgreSQL's LISTEN/NOTIFY,
        on a connection of its own, until close); SQLite: nothing (one process writes)."""
    async def register_node(self, spec: NodeSpec, *, dead_after: float, lease_seconds: float) -> NodeInfo | None:
        """The node's row, taken for this incarnation; None when a live node (another incarnation whose
        heartbeat is within ``dead_after`` and that has not stopped) holds the name. Taken over from a dead
        one, its accounts stay that one's until its lease ends, then the first acquisition frees them.
        SQLite: never None and no wait: the data dir lock proves the earlier incarnation gone."""
    async def renew_node(self, name: str, incarnation: str, *, lease_seconds: float,
                         lead: bool) -> Renewal: ...  # lead: also take or renew the fleet's leadership
    async def stop_node(self, name: str, incarnation: str) -> int: ...  # releases its accounts and leadership
    async def list_nodes(self, dead_after: float) -> list[NodeInfo]: ...
    async def acquire_accounts(self, name: str, incarnation: str, limit: int, *,
                               grace: float = 0.0) -> list[OwnedAccount]:
        """Accounts assigned to this node that no live lease holds (unowned, or their owner's
        ``owned_until`` has passed by ``grace`` seconds, or owned by this name's earlier incarnation) become this node's, each
        with its epoch one higher; in the same transaction their running setup tasks go back to retry
        (locks released) and their tasks leased by ``local`` go back to pending."""
    async def owned_accounts(self, name: str) -> list[OwnedAccount]: ...
    async def owned_digest(self, name: str) -> tuple[int, int]:
        """What ``owned_accounts`` would give, as (count, checksum) (``store.nodes.owned_digest``): a node's
        heartbeat reads the whole list only when this changed."""
    async def release_accounts(self, name: str, owned: list[tuple[int, int]]) -> int: ...  # (id, epoch)
    async def assignment(self, live: list[str]) -> Assignment: ...
    async def move_accounts(self, leader_epoch: int, src: str | None, dst: str, n: int,
                            live: list[str]) -> int:
        """The leader moves up to ``n`` unpinned accounts assigned to ``src`` (None: the orphans, assigned to
        no live node) to ``dst``; nothing when ``leader_epoch`` is no longer the fleet's. (Not named
        assign_accounts: that one gives accounts to an executor.)"""
    async def pin_accounts(self, ids: list[int], node: str | None) -> int: ...  # None unpins

    # --- the simulator's own world, shared by every node on the store (tgdaemon.gateway.simulator)
    async def sim_profile(self, tg_user_id: int) -> str | None: ...  # JSON, as the simulator wrote it
    async def sim_save_profile(self, tg_user_id: int, profile: str) -> None: ...
    async def sim_open(self, tg_user_id: int, node: str, pid: int, live_pids: Callable[[list[int]], set[int]],
                       server_timeout: float) -> SimConnection | int:
        """Open a connection (its id) unless another live one of the account exists: then that one.
        Live: not closed, its pid in ``live_pids(...)``, seen within ``server_timeout``."""
    async def sim_open_many(self, tg_user_ids: Sequence[int], node: str, pid: int,
                            live_pids: Callable[[list[int]], set[int]],
                            server_timeout: float) -> list[SimConnection | int | Exception]:
        """Each account's ``sim_open``, in order, as if one after the other: for each its result, or the exception
        that kept it from happening (a failure of the whole batch raises; none of it happened then)."""
    async def sim_save_profiles(self, profiles: Sequence[tuple[int, str]]) -> list[Exception | None]:
        """Each ``sim_save_profile``, in order; for each None, or the exception that kept it from being written."""
    async def sim_close(self, connection_ids: list[int], why: str) -> None: ...  # the open ones among them
    async def sim_keepalive(self, connection_ids: list[int], server_timeout: float) -> list[int]:
        """Pings: the given connections are seen now; returns those the server had closed (timed out)."""
    async def sim_connections(self, tg_user_id: int | None = None) -> list[SimConnection]: ...

    # --- providers
    async def add_provider(self, name: str, token_hash: str) -> dict[str, Any]: ...
    async def list_providers(self) -> list[dict[str, Any]]: ...
    async def revoke_provider(self, name: str) -> tuple[bool, dict[str, Any]]: ...
    async def provider_by_token_hash(self, token_hash: str) -> Provider | None: ...
    async def provider_seen(self, name: str) -> None: ...

    # --- the clock's deadlines (design 10)
    async def shift_deadlines(self, tx: Tx, step: float) -> dict[str, int]: ...
    async def clamp_deadlines(self, m: Maxima) -> dict[str, int]: ...

    # --- history and figures
    async def prune_events(self, before: float, limit: int, at: float) -> Batch: ...  # sets EVENTS_PRUNED_THROUGH
    async def prune_tasks(self, before: float, limit: int, cursor: tuple[float, int] | None,
                          at: float) -> Batch: ...
    async def prune_usage(self, before_day: str, limit: int) -> Batch: ...
    async def task_counts(self) -> dict[str, dict[str, int]]: ...
    async def database_stats(self) -> dict[str, Any]: ...
