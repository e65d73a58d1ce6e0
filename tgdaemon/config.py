"""Configuration: defaults < TOML file < ``TGFLEET_*`` environment < command line.

Validation is msgspec's; this module only turns its messages into one line
that names the key and where it came from.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
import typing
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import platformdirs

from tgdaemon.errors import ConfigError
from tgdaemon.lifecycle.datadir import DB_NAME
from tgdaemon.store.connect import StoreURL, parse_url, sqlite_url

APP = "tgfleet"
SYSTEM_CONFIG = Path("/etc/tgfleet/config.toml")
ENV_PREFIX = "TGFLEET_"
# Short names for the settings people override most; the general form is
# TGFLEET_<SECTION>__<KEY>.
ENV_ALIASES = {
    "TGFLEET_DATA_DIR": ("daemon", "data_dir"),
    "TGFLEET_SOCKET": ("daemon", "socket"),
    "TGFLEET_HTTP": ("daemon", "http"),
    "TGFLEET_LOG_LEVEL": ("daemon", "log_level"),
}
ENV_NOT_KEYS = {"TGFLEET_CONFIG"}

Positive = Annotated[float, msgspec.Meta(gt=0)]
Fraction = Annotated[float, msgspec.Meta(ge=0, le=1)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]


class Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base for config sections: unknown keys are errors, not silently ignored."""


class DaemonConfig(Section):
    data_dir: str = ""
    socket: str = ""
    http: str = "127.0.0.1:8780"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_timeout_seconds: Positive = 8.0
    stream_queue_size: Annotated[int, msgspec.Meta(ge=100)] = 20000
    stream_replay_size: Annotated[int, msgspec.Meta(ge=100)] = 50000
    max_http_connections: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 4096
    http_header_timeout_seconds: Positive = 10.0
    http_idle_timeout_seconds: Positive = 60.0
    # Several daemons on one PostgreSQL (design 9): each is a node by this name (default: the host name).
    node_name: Annotated[str, msgspec.Meta(pattern=r"^$|^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")] = ""
    max_accounts: Annotated[int, msgspec.Meta(ge=0)] = 0  # 0: no cap; else this node's weight and cap
    tls_cert_file: str = ""  # the provider port speaks TLS when both are set (reloaded on SIGHUP)
    tls_key_file: str = ""
    allow_plaintext: bool = False  # serve bearer tokens without TLS on a non-loopback address

    def __post_init__(self) -> None:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            given, missing = ("tls_cert_file", "tls_key_file") if self.tls_cert_file else ("tls_key_file",
                                                                                            "tls_cert_file")
            raise ValueError(f"{given} is set but {missing} is not: set both (TLS on the provider port) or neither")


class NodesConfig(Section):
    heartbeat_seconds: Positive = 2.0
    dead_after_seconds: Positive = 10.0  # a node whose heartbeat is older is dead
    lease_seconds: Positive = 15.0  # how long a heartbeat keeps a node's accounts its own
    moves_per_second: Positive = 50.0  # accounts moved between live nodes when the fleet rebalances
    # An account its owner did not let go of (the owner died or froze) is taken over this long after its lease
    # ended: a frozen host's connections stay open on Telegram's side until Telegram times them out.
    takeover_grace_seconds: NonNegative = 0.0

    def __post_init__(self) -> None:
        if self.lease_seconds < 4 * self.heartbeat_seconds:  # the fence is 2 before it: 2 left to renew in
            raise ValueError("lease_seconds must be at least 4 heartbeat_seconds")
        if self.dead_after_seconds < 2 * self.heartbeat_seconds:
            raise ValueError("dead_after_seconds must be at least 2 heartbeat_seconds")


class StoreConfig(Section):
    url: str = ""  # "" = the data dir's SQLite file; checked by Config.store_url
    password_file: str = ""
    synchronous: Literal["full", "normal"] = "full"


class RetentionConfig(Section):
    events_days: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    finished_tasks_days: Annotated[float, msgspec.Meta(ge=0)] = 14.0
    interval_seconds: Positive = 60.0
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000


class SimulatorConfig(Section):
    accounts: Annotated[int, msgspec.Meta(ge=1, le=200_000)] = 200
    seed: int = 1
    probe_fraction: Fraction = 0.05
    dead_fraction: Fraction = 0.02
    frozen_fraction: Fraction = 0.01  # health: accounts whose app configuration says they are frozen
    limited_fraction: Fraction = 0.03  # health: accounts @SpamBot says are limited
    channels: list[Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z](?:(?!__)\w){3,30}[A-Za-z0-9]$")]] = msgspec.field(
        default_factory=lambda: ["tgfleet_news", "tgfleet_markets", "tgfleet_weather", "tgfleet_sports"]
    )
    post_interval_seconds: Positive = 120.0
    views_per_minute: NonNegative = 40.0
    latency_min_ms: NonNegative = 5.0
    latency_max_ms: NonNegative = 40.0
    flood_wait_rate: Fraction = 0.02
    flood_wait_max_seconds: Annotated[int, msgspec.Meta(ge=1)] = 60
    peer_flood_rate: Fraction = 0.002
    transient_rate: Fraction = 0.01
    # Telegram closes a connection that stops pinging (Telethon asks for 75 s); the simulator does the same.
    server_timeout_seconds: Positive = 75.0


class ProxyConfig(Section):
    type: Literal["", "socks5", "socks4", "http", "mtproxy"] = ""
    host: str = ""
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0
    username: str = ""
    password: str = ""
    secret: str = ""  # MTProxy only


class TelegramConfig(Section):
    api_id: Annotated[int, msgspec.Meta(ge=0)] = 0
    api_hash: str = ""
    device_model: str = "tgfleet"
    system_version: str = "Linux"
    app_version: str = "tgfleet 0.1"
    lang_code: str = "en"
    system_lang_code: str = "en"
    # One descriptor and ~45 KiB a client, and each connect costs more the more are connected (bench ceiling; the
    # arithmetic is in config.example.toml); whether the descriptor limit holds it is said at start (limits.py).
    max_connected: Annotated[int, msgspec.Meta(ge=1)] = 2000
    idle_disconnect_seconds: Positive = 300.0
    connect_timeout_seconds: Positive = 15.0
    call_timeout_seconds: Positive = 30.0
    request_retries: Annotated[int, msgspec.Meta(ge=0, le=5)] = 1
    login_timeout_seconds: Positive = 600.0
    proxy: ProxyConfig = msgspec.field(default_factory=ProxyConfig)
    # Where new logins go (imported sessions keep their own server): "" = Telethon's built-in production DC,
    # or Telegram's test DC 2 with test_mode; a self-hosted MTProto server names its address here.
    server: str = ""
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 443
    dc_id: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 2
    public_key_file: str = ""  # the server's RSA public key (PEM), for a server whose key Telethon lacks
    test_mode: bool = False

    def __post_init__(self) -> None:
        if self.server and (":" in self.server or not re.fullmatch(r"[A-Za-z0-9.-]{1,253}", self.server)):
            raise ValueError(f"server {self.server!r}: an IPv4 address or a host name (no port, no IPv6: the"
                             " port is `port`)")
        if self.public_key_file and not (self.server or self.test_mode):
            raise ValueError("public_key_file is set but neither server nor test_mode is: the key is for the"
                             " server new logins go to")

    @property
    def configured(self) -> bool:
        """A real fleet needs both; without them the simulator is the gateway."""
        return bool(self.api_id and self.api_hash)


class TwoFAConfig(Section):
    enable: bool = False
    password_file: str = ""
    password_command: str = ""


class MediaConfig(Section):
    default_jpg_path: str = ""
    default_gif_path: str = ""
    story_image_path: str = ""
    story_video_path: str = ""
    ffmpeg_path: str = ""


class QueuesConfig(Section):
    fast_concurrency: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 32
    media_concurrency: Annotated[int, msgspec.Meta(ge=1, le=1_000)] = 4


class RetryConfig(Section):
    backoff_seconds: Annotated[list[Annotated[float, msgspec.Meta(ge=0)]], msgspec.Meta(min_length=1)] = (
        msgspec.field(default_factory=lambda: [60.0, 300.0, 900.0, 3600.0]))
    max_attempts: Annotated[int, msgspec.Meta(ge=1)] = 5


class ProfileConfig(Section):
    first_name: Annotated[str, msgspec.Meta(max_length=64)] = ""
    last_name: Annotated[str, msgspec.Meta(max_length=64)] = ""


class SessionsConfig(Section):
    terminate_others: bool = False  # the terminate_other_sessions setup task: end every other authorization


class SetupConfig(Section):
    enabled: bool = False
    dispatch_interval_seconds: Positive = 300.0
    lock_seconds: Positive = 600.0
    twofa: TwoFAConfig = msgspec.field(default_factory=TwoFAConfig, name="2fa")
    media: MediaConfig = msgspec.field(default_factory=MediaConfig)
    queues: QueuesConfig = msgspec.field(default_factory=QueuesConfig)
    retry: RetryConfig = msgspec.field(default_factory=RetryConfig)
    profile: ProfileConfig = msgspec.field(default_factory=ProfileConfig)
    sessions: SessionsConfig = msgspec.field(default_factory=SessionsConfig)


class HealthConfig(Section):
    interval_hours: NonNegative = 0.0  # each node checks its accounts this often; 0: only `accounts check`
    spambot: bool = False  # also ask the official @SpamBot whether the account is limited
    spambot_wait_seconds: Annotated[float, msgspec.Meta(gt=0, le=120)] = 10.0
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 4  # checks at once, per node


class LimitsConfig(Section):
    peer_flood_cooldown_seconds: Positive = 86400.0
    flood_wait_jitter_seconds: NonNegative = 5.0


class QuotasConfig(Section):
    generate_interval_seconds: Positive = 5.0
    max_tasks_per_tick: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000
    posts_snapshot_ttl_hours: Positive = 24.0
    snapshots_per_tick: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 20
    lease_seconds: Annotated[float, msgspec.Meta(ge=5, le=86400)] = 60.0
    max_lease_seconds: Annotated[float, msgspec.Meta(ge=5, le=86400)] = 3600.0
    max_leases: Annotated[int, msgspec.Meta(ge=1, le=100)] = 3
    reaper_interval_seconds: Positive = 2.0
    pace_seconds: NonNegative = 60.0
    daily_cap: Annotated[int, msgspec.Meta(ge=1)] = 500
    retry_seconds: NonNegative = 60.0
    local_concurrency: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 16

    def __post_init__(self) -> None:
        if self.lease_seconds > self.max_lease_seconds:
            raise ValueError("lease_seconds must not exceed max_lease_seconds")


class ProxiesConfig(Section):
    """The health checker of the accounts' own proxies (``tgdaemon proxies``): gentle, a few at a time."""
    check_interval_seconds: Annotated[float, msgspec.Meta(ge=10)] = 300.0
    check_concurrency: Annotated[int, msgspec.Meta(ge=1, le=100)] = 4
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=120)] = 10.0  # no answer by then: dead
    slow_ms: Positive = 1500.0  # answered, but slower than this: slow (still used)
    # Where a check connects through the proxy: a Telegram data centre (DC2), so that a proxy that cannot
    # reach Telegram is found dead. An MTProxy is checked by a TCP connection to the proxy itself.
    check_target: str = "149.154.167.51:443"

    def __post_init__(self) -> None:
        host, sep, port = self.check_target.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"check_target: expected HOST:PORT, got {self.check_target!r}")

    def target(self) -> tuple[str, int]:
        host, _, port = self.check_target.rpartition(":")
        return host.strip("[]"), int(port)

    def hold_seconds(self) -> float:
        """How long a dead proxy's accounts wait before the next check can speak for it."""
        return self.check_interval_seconds + 2 * self.timeout_seconds


class Config(Section):
    daemon: DaemonConfig = msgspec.field(default_factory=DaemonConfig)
    telegram: TelegramConfig = msgspec.field(default_factory=TelegramConfig)
    setup: SetupConfig = msgspec.field(default_factory=SetupConfig)
    quotas: QuotasConfig = msgspec.field(default_factory=QuotasConfig)
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    retention: RetentionConfig = msgspec.field(default_factory=RetentionConfig)
    simulator: SimulatorConfig = msgspec.field(default_factory=SimulatorConfig)
    nodes: NodesConfig = msgspec.field(default_factory=NodesConfig)
    health: HealthConfig = msgspec.field(default_factory=HealthConfig)
    proxies: ProxiesConfig = msgspec.field(default_factory=ProxiesConfig)

    def data_dir(self) -> Path:
        """The data dir: the config's, else systemd's StateDirectory, else platformdirs'."""
        if self.daemon.data_dir:
            return Path(self.daemon.data_dir).expanduser()
        if state := os.environ.get("STATE_DIRECTORY"):
            return Path(state.split(":")[0])
        return Path(platformdirs.user_data_dir(APP))

    def socket_path(self) -> Path:
        if self.daemon.socket:
            return Path(self.daemon.socket).expanduser()
        if runtime := os.environ.get("RUNTIME_DIRECTORY"):
            return Path(runtime.split(":")[0]) / "tgdaemon.sock"
        if os.geteuid() == 0 and not os.environ.get("XDG_RUNTIME_DIR"):
            return Path("/run/tgfleet/tgdaemon.sock")  # where the systemd unit's RuntimeDirectory puts it
        with warnings.catch_warnings():  # no XDG_RUNTIME_DIR (no login session): platformdirs' fallback is fine
            warnings.simplefilter("ignore")
            return Path(platformdirs.user_runtime_dir(APP)) / "tgdaemon.sock"

    def node_name(self) -> str:
        return self.daemon.node_name or socket.gethostname().split(".")[0] or "node"

    def http_bind(self) -> tuple[str, int]:
        return parse_bind(self.daemon.http, "daemon.http")

    def store_url(self) -> StoreURL:
        """``[store] url`` checked; empty is the data dir's SQLite file, as before stores had URLs."""
        return parse_url(self.store.url) if self.store.url else sqlite_url(self.data_dir() / DB_NAME)


def parse_bind(value: str, name: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{name}: expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def default_config_path() -> Path:
    """The system config when run as a service (systemd or root), else the user's."""
    if os.environ.get("INVOCATION_ID") or os.geteuid() == 0:
        return SYSTEM_CONFIG
    return Path(platformdirs.user_config_dir(APP)) / "config.toml"


def load(path: str | Path | None = None, *, env: dict[str, str] | None = None,
         overrides: dict[str, dict[str, Any]] | None = None) -> Config:
    """Load and validate; ``path`` None means TGFLEET_CONFIG or the default (which may be absent)."""
    return load_with_origins(path, env=env, overrides=overrides)[0]


def load_with_origins(path: str | Path | None = None, *, env: dict[str, str] | None = None,
                      overrides: dict[str, dict[str, Any]] | None = None) -> tuple[Config, dict[str, str]]:
    """``load``, and where each key that was set came from (``{"simulator.accounts": "command line"}``):
    a value the operator chose must be told from a default (the simulated world of a data dir)."""
    env = dict(os.environ if env is None else env)
    explicit = path is not None or "TGFLEET_CONFIG" in env
    cfg_path = Path(path if path is not None else env.get("TGFLEET_CONFIG") or default_config_path()).expanduser()
    data: dict[str, Any] = {}
    if cfg_path.exists() or explicit:
        data = _read_toml(cfg_path)
    _validate(data, f"config {cfg_path}")
    origins = dict.fromkeys(_keys(data), f"config {cfg_path}")
    env_data = _env_layer(env)
    if env_data:
        _validate(_merge(data, env_data), "environment (TGFLEET_*)")
        data = _merge(data, env_data)
        origins.update({key: f"environment {_env_name(key, env)}" for key in _keys(env_data)})
    if overrides:
        data = _merge(data, overrides)
        origins.update(dict.fromkeys(_keys(overrides), "command line"))
    return _validate(data, "command line"), origins


def _keys(data: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted names of the keys set in ``data`` (sections are not keys)."""
    out: list[str] = []
    for key, value in data.items():
        out.extend(_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"])
    return out


def _env_name(key: str, env: dict[str, str]) -> str:
    alias = next((name for name, path in ENV_ALIASES.items() if ".".join(path) == key and name in env), None)
    return alias or ENV_PREFIX + key.replace(".", "__").upper()


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {path}: cannot read: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path}: not valid TOML: {exc}") from None


def _env_layer(env: dict[str, str]) -> dict[str, Any]:
    """TGFLEET_SECTION__KEY (and TGFLEET_SECTION__SUB__KEY) as a nested dict."""
    out: dict[str, Any] = {}
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name in ENV_NOT_KEYS:
            continue
        if name in ENV_ALIASES:
            path = list(ENV_ALIASES[name])
        elif "__" in name:
            path = name[len(ENV_PREFIX):].lower().split("__")
        else:
            continue
        node = out
        for i, part in enumerate(path[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment (TGFLEET_*): {name}: {'.'.join(path[:i + 1])} is a key, not a section")
        if isinstance(node.get(path[-1]), dict):
            raise ConfigError(f"environment (TGFLEET_*): {name}: {'.'.join(path)} is a section, not a key")
        node[path[-1]] = raw if _is_text_key(path) else _env_value(raw)
    return out


def _is_text_key(path: list[str]) -> bool:
    """Whether the key at ``path`` takes a string, so its value is taken as given, never parsed."""
    struct: Any = Config
    for part in path:
        hints = getattr(struct, "__annotations__", {})
        if part not in hints:
            return False
        struct = typing.get_type_hints(struct, include_extras=True)[part]
    base = typing.get_origin(struct) or struct
    if base is typing.Annotated:
        base = typing.get_args(struct)[0]
    if typing.get_origin(base) is Literal:
        return all(isinstance(v, str) for v in typing.get_args(base))
    return base is str


def _env_value(raw: str) -> Any:
    """A TOML value when the text is one (numbers, booleans, arrays), else the plain string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$\.?(?P<path>[^`]*)`)?$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<field>[^`]+)`$")


def _validate(data: dict[str, Any], origin: str) -> Config:
    try:
        cfg = msgspec.convert(data, Config, strict=True)
    except msgspec.ValidationError as exc:
        match = _AT.match(str(exc))
        assert match is not None
        msg, path = match["msg"], (match["path"] or "").replace("[", ".").replace("]", "")
        if unknown := _UNKNOWN.match(msg):
            path = f"{path}.{unknown['field']}" if path else unknown["field"]
            msg = "unknown key"
        else:
            msg = msg[0].lower() + msg[1:]
        raise ConfigError(f"{origin}: {path or 'top level'}: {msg}") from None
    try:
        cfg.http_bind()  # checks that a type cannot express
        cfg.store_url()
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    return cfg
