"""Config: defaults < TOML file < TGFLEET_* environment < overrides; one-line errors naming key and source."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from tgdaemon import config
from tgdaemon.config import Config, DaemonConfig, SimulatorConfig
from tgdaemon.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config.example.toml"


@pytest.fixture
def write(tmp_path: Path):
    def write(text: str, name: str = "config.toml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path
    return write


@pytest.fixture
def empty(write) -> Path:
    return write("", "empty.toml")


def load_error(*args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        config.load(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message and message
    assert info.value.exit_code == 2
    return message


# --- defaults and layers -----------------------------------------------------------------------

def test_defaults(empty: Path) -> None:
    cfg = config.load(empty, env={})
    assert cfg == Config()
    assert cfg.daemon.http == "127.0.0.1:8780"
    assert cfg.daemon.log_level == "info"
    assert cfg.daemon.stream_queue_size == 20000
    assert cfg.simulator.accounts == 200
    assert cfg.simulator.seed == 1
    assert cfg.http_bind() == ("127.0.0.1", 8780)


def test_missing_default_file_means_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only an *explicit* file must exist; an absent default location is "all defaults"."""
    monkeypatch.setattr(config, "SYSTEM_CONFIG", tmp_path / "etc" / "config.toml")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert not config.default_config_path().exists()
    assert config.load(None, env={}) == Config()


def test_file_values(write) -> None:
    path = write(
        '[daemon]\ndata_dir = "/srv/fleet"\nsocket = "/run/x.sock"\nhttp = "0.0.0.0:9000"\n'
        'log_level = "debug"\nshutdown_timeout_seconds = 3\n'
        '[simulator]\naccounts = 7\nseed = 42\nchannels = ["alpha_chan", "beta_chan"]\nflood_wait_rate = 0.5\n'
    )
    cfg = config.load(path, env={})
    assert cfg.daemon.data_dir == "/srv/fleet" and cfg.data_dir() == Path("/srv/fleet")
    assert cfg.socket_path() == Path("/run/x.sock")
    assert cfg.http_bind() == ("0.0.0.0", 9000)
    assert cfg.daemon.log_level == "debug"
    assert cfg.daemon.shutdown_timeout_seconds == 3.0  # an integer is fine where a float is expected
    assert cfg.simulator.accounts == 7 and cfg.simulator.seed == 42
    assert cfg.simulator.channels == ["alpha_chan", "beta_chan"]
    assert cfg.simulator.flood_wait_rate == 0.5
    # untouched keys keep their defaults
    assert cfg.daemon.stream_replay_size == DaemonConfig().stream_replay_size
    assert cfg.simulator.probe_fraction == SimulatorConfig().probe_fraction


def test_tgfleet_config_env_names_the_file(write) -> None:
    path = write("[simulator]\naccounts = 9\n")
    assert config.load(None, env={"TGFLEET_CONFIG": str(path)}).simulator.accounts == 9


def test_env_general_form_and_aliases(empty: Path) -> None:
    cfg = config.load(empty, env={
        "TGFLEET_SIMULATOR__ACCOUNTS": "12",
        "TGFLEET_SIMULATOR__FLOOD_WAIT_RATE": "0.25",
        "TGFLEET_SIMULATOR__CHANNELS": '["one_chan", "two_chan"]',
        "TGFLEET_DAEMON__LOG_LEVEL": "warning",
        "TGFLEET_SOCKET": "/run/tgf/d.sock",
        "TGFLEET_DATA_DIR": "/var/lib/tgf",
        "TGFLEET_HTTP": "127.0.0.1:9999",
        "UNRELATED": "x",
    })
    assert cfg.simulator.accounts == 12
    assert cfg.simulator.flood_wait_rate == 0.25
    assert cfg.simulator.channels == ["one_chan", "two_chan"]
    assert cfg.daemon.log_level == "warning"
    assert cfg.socket_path() == Path("/run/tgf/d.sock")
    assert cfg.data_dir() == Path("/var/lib/tgf")
    assert cfg.http_bind() == ("127.0.0.1", 9999)


def test_alias_equals_general_form(empty: Path) -> None:
    for alias, (section, key) in config.ENV_ALIASES.items():
        value = "warning" if key == "log_level" else ("127.0.0.1:1234" if key == "http" else "/some/where")
        general = f"TGFLEET_{section.upper()}__{key.upper()}"
        a = config.load(empty, env={alias: value})
        b = config.load(empty, env={general: value})
        assert a == b
        assert getattr(getattr(a, section), key) == value


def test_precedence_file_env_overrides(write) -> None:
    path = write('[daemon]\nsocket = "/from/file.sock"\nlog_level = "debug"\n[simulator]\naccounts = 10\nseed = 5\n')
    env = {"TGFLEET_SOCKET": "/from/env.sock", "TGFLEET_SIMULATOR__ACCOUNTS": "20"}
    cfg = config.load(path, env=env)
    assert cfg.daemon.socket == "/from/env.sock"          # env beats file
    assert cfg.simulator.accounts == 20
    assert cfg.simulator.seed == 5                       # file beats default
    assert cfg.daemon.log_level == "debug"
    cfg = config.load(path, env=env, overrides={"daemon": {"socket": "/from/flag.sock"}, "simulator": {"accounts": 30}})
    assert cfg.daemon.socket == "/from/flag.sock"         # overrides beat env
    assert cfg.simulator.accounts == 30
    assert cfg.simulator.seed == 5 and cfg.daemon.log_level == "debug"  # merged, not replaced


def test_env_string_key_with_a_toml_looking_value(empty: Path) -> None:
    """A path that happens to look like TOML (an unquoted http bind too) is still the string given."""
    cfg = config.load(empty, env={"TGFLEET_SOCKET": "/tmp/a b/c.sock", "TGFLEET_HTTP": "[::1]:8780"})
    assert cfg.daemon.socket == "/tmp/a b/c.sock"
    assert cfg.http_bind() == ("::1", 8780)


def test_env_numeric_looking_path_stays_a_string(empty: Path) -> None:
    cfg = config.load(empty, env={"TGFLEET_DATA_DIR": "2024"})
    assert cfg.daemon.data_dir == "2024"


def test_env_nested_sections_and_text_keys(empty: Path) -> None:
    cfg = config.load(empty, env={
        "TGFLEET_TELEGRAM__API_HASH": "0123456789",      # all digits, leading zero: still the text given
        "TGFLEET_TELEGRAM__API_ID": "12345",
        "TGFLEET_TELEGRAM__PROXY__TYPE": "socks5",
        "TGFLEET_TELEGRAM__PROXY__HOST": "10.0.0.1",
        "TGFLEET_TELEGRAM__PROXY__PORT": "1080",
        "TGFLEET_TELEGRAM__PROXY__PASSWORD": "true",     # a password, not a boolean
    })
    assert cfg.telegram.api_hash == "0123456789" and cfg.telegram.api_id == 12345
    proxy = cfg.telegram.proxy
    assert (proxy.type, proxy.host, proxy.port, proxy.password) == ("socks5", "10.0.0.1", 1080, "true")
    message = load_error(empty, env={"TGFLEET_TELEGRAM__PROXY__NOPE": "1"})
    assert message == "environment (TGFLEET_*): telegram.proxy.nope: unknown key"


def test_env_key_used_as_section_is_a_config_error(empty: Path) -> None:
    message = load_error(empty, env={"TGFLEET_DAEMON__SOCKET": "/x.sock", "TGFLEET_DAEMON__SOCKET__X": "1"})
    assert "daemon.socket" in message


# --- errors: one line, naming the key and the source -------------------------------------------

@pytest.mark.parametrize(("text", "key", "problem"), [
    ("[simulator]\nacounts = 5\n", "simulator.acounts", "unknown key"),
    ("[daemon]\nsokcet = '/x'\n", "daemon.sokcet", "unknown key"),
    ("[nosuch]\nx = 1\n", "nosuch", "unknown key"),
    ("[simulator]\naccounts = 'many'\n", "simulator.accounts", "expected `int`, got `str`"),
    ("[simulator]\naccounts = 5.5\n", "simulator.accounts", "expected `int`"),
    ("[daemon]\nshutdown_timeout_seconds = 'soon'\n", "daemon.shutdown_timeout_seconds", "expected `float`"),
    ("daemon = 3\n", "daemon", "expected `object`"),
    ("[simulator]\naccounts = 0\n", "simulator.accounts", ">= 1"),
    ("[simulator]\nflood_wait_rate = 1.5\n", "simulator.flood_wait_rate", "<= 1"),
    ("[daemon]\nstream_queue_size = 99\n", "daemon.stream_queue_size", ">= 100"),
    ("[daemon]\nlog_level = 'loud'\n", "daemon.log_level", "'loud'"),
    ("[simulator]\nchannels = ['good_chan', 'x']\n", "simulator.channels.1", "regex"),
])
def test_bad_file_value(write, text: str, key: str, problem: str) -> None:
    path = write(text)
    message = load_error(path, env={})
    assert message.startswith(f"config {path}: {key}: "), message
    assert problem in message


def test_bad_http_bind_is_rejected_at_load(write) -> None:
    path = write('[daemon]\nhttp = "nonsense"\n')
    message = load_error(path, env={})
    assert str(path) in message and "daemon.http" in message


def test_parse_bind_errors_name_the_key() -> None:
    for bad in ("nonsense", "host:", ":80", "host:99999", "host:-1"):
        with pytest.raises(ConfigError, match=r"^daemon\.http: expected HOST:PORT"):
            config.parse_bind(bad, "daemon.http")


def test_invalid_toml(write) -> None:
    path = write("[simulator\naccounts = 1\n")
    message = load_error(path, env={})
    assert message.startswith(f"config {path}: not valid TOML: ")
    assert "line 1" in message


def test_missing_explicit_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    assert load_error(missing, env={}) == f"config {missing}: no such file"
    assert load_error(None, env={"TGFLEET_CONFIG": str(missing)}) == f"config {missing}: no such file"


def test_unreadable_file_is_one_line(write) -> None:
    path = write("")
    path.write_bytes(b"\xff\xfe not utf-8")
    assert load_error(path, env={}).startswith(f"config {path}: cannot read")


@pytest.mark.parametrize(("env", "key", "problem"), [
    ({"TGFLEET_SIMULATOR__ACCOUNTS": "abc"}, "simulator.accounts", "expected `int`, got `str`"),
    ({"TGFLEET_SIMULATOR__ACCOUNTS": "0"}, "simulator.accounts", ">= 1"),
    ({"TGFLEET_DAEMON__NOPE": "1"}, "daemon.nope", "unknown key"),
    ({"TGFLEET_NOSECTION__KEY": "1"}, "nosection", "unknown key"),
    ({"TGFLEET_LOG_LEVEL": "loud"}, "daemon.log_level", "'loud'"),
])
def test_bad_env_value(empty: Path, env: dict[str, str], key: str, problem: str) -> None:
    message = load_error(empty, env=env)
    assert message.startswith(f"environment (TGFLEET_*): {key}: "), message
    assert problem in message


def test_file_error_is_blamed_on_the_file_even_with_env_set(write) -> None:
    path = write("[simulator]\naccounts = 'x'\n")
    message = load_error(path, env={"TGFLEET_SIMULATOR__SEED": "3"})
    assert message.startswith(f"config {path}: simulator.accounts:")


def test_bad_override(empty: Path) -> None:
    message = load_error(empty, env={}, overrides={"simulator": {"accounts": -1}})
    assert message.startswith("command line: simulator.accounts: ") and ">= 1" in message


# --- config.example.toml -----------------------------------------------------------------------

def _fields(struct: type[msgspec.Struct]) -> list[msgspec.structs.FieldInfo]:
    return list(msgspec.structs.fields(struct))


def _documented_keys(struct: type[msgspec.Struct], section: str, by_section: dict[str, str]) -> None:
    assert section in by_section, f"[{section}] missing from config.example.toml"
    for field in _fields(struct):
        if isinstance(field.type, type) and issubclass(field.type, msgspec.Struct):
            _documented_keys(field.type, f"{section}.{field.encode_name}", by_section)
        else:
            assert re.search(rf"(?m)^#?\s*{field.encode_name}\s*=", by_section[section]), \
                f"{section}.{field.name} is not documented in config.example.toml"


def test_example_config_equals_defaults(empty: Path) -> None:
    if not EXAMPLE.exists():
        pytest.skip("config.example.toml is not in the repo yet (the lead adds it)")
    assert config.load(EXAMPLE, env={}) == config.load(empty, env={}) == Config()
    # every key is documented (set, or shown commented out) in its [section]
    text = EXAMPLE.read_text(encoding="utf-8")
    parts = re.split(r"(?m)^\[([\w.]+)\]\s*$", text)
    by_section = dict(zip(parts[1::2], parts[2::2], strict=True))
    for field in _fields(Config):
        _documented_keys(field.type, field.name, by_section)


# --- telegram.max_connected and the descriptor limit ----------------------------------------------

def test_the_default_max_connected_fits_the_shipped_unit_beside_a_full_provider_port() -> None:
    """config.example.toml's arithmetic: under the unit's LimitNOFILE, a real fleet's default clients, the
    daemon's own descriptors and a full provider port all fit, so the start says nothing about them."""
    from tgdaemon.lifecycle import limits

    unit = (REPO / "contrib" / "systemd" / "tgdaemon.service").read_text(encoding="utf-8")
    found = re.search(r"(?m)^LimitNOFILE=(\d+)$", unit)
    assert found, "contrib/systemd/tgdaemon.service sets no LimitNOFILE"
    nofile = int(found.group(1))
    real = Config(telegram=config.TelegramConfig(api_id=1, api_hash="0123456789abcdef0123456789abcdef"))
    assert limits.reserve(real) + real.daemon.max_http_connections <= nofile
    assert limits.connection_cap(real, nofile) == real.daemon.max_http_connections
    assert limits.clients_warning(real, nofile) is None
    assert f"max_connected = {real.telegram.max_connected}\n" in EXAMPLE.read_text(encoding="utf-8")


def test_max_connected_is_warned_about_exactly_when_the_limit_cannot_hold_it() -> None:
    from tgdaemon.lifecycle import limits

    real = Config(telegram=config.TelegramConfig(api_id=1, api_hash="0123456789abcdef0123456789abcdef",
                                                 max_connected=2000))
    needed = limits.ACCEPT_BACKLOG + 2000 + limits.OTHER_DESCRIPTORS + limits.MIN_CONNECTIONS
    assert limits.clients_warning(real, needed) is None
    line = limits.clients_warning(real, needed - 1)
    assert line is not None and "\n" not in line
    assert line.startswith(f"telegram.max_connected 2000 does not fit the file-descriptor limit {needed - 1} ")
    assert f"raise LimitNOFILE to at least {needed} or set telegram.max_connected to at most 1999" in line
    # the simulator's clients hold no descriptors: nothing to warn about, and none kept from the provider port
    simulated = Config(telegram=config.TelegramConfig(max_connected=2000))
    assert limits.clients_warning(simulated, 1024) is None
    assert limits.reserve(simulated) == limits.ACCEPT_BACKLOG + limits.OTHER_DESCRIPTORS
