"""Choosing the store: ``[store] url`` / ``--store`` / ``TGFLEET_STORE__URL``, its password, what a start
that cannot reach it says, and what ``status`` and the log show of it (never a password).

URLs are checked at load (one line naming ``store.url``, exit 2); a store that cannot be reached is one
line naming the host and the error (exit 1). PostgreSQL comes from the session's server (pgtest.py); its
role ``tgfpassword`` is the one the private server asks a password of.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pgtest
import pytest
from daemon_proc import Fleet, fleet, no_traceback, one_line

from tgdaemon import config
from tgdaemon.errors import ConfigError
from tgdaemon.logredact import REDACTOR, RedactingFormatter, configured_secrets

SECRET = "s3cret-5f0c9e17a2d4"  # distinctive, and fixed: test ids must be the same in every xdist worker


@pytest.fixture
def fl() -> Iterator[Fleet]:
    with fleet() as f:
        yield f


def load_url(url: str) -> config.Config:
    return config.load(None, env={"TGFLEET_CONFIG": "/dev/null", "TGFLEET_STORE__URL": url})


@pytest.mark.parametrize(("url", "problem"), [
    ("mysql://fleet@db/fleet", "unknown scheme 'mysql'"),
    ("sqlite://relative/tgfleet.sqlite3", "absolute path"),
    ("sqlite:tgfleet.sqlite3", "not a URL"),
    ("sqlite:///srv/fleet/", "names a directory"),
    ("sqlite:///srv/fleet.sqlite3?mode=ro", "takes no parameters"),
    ("postgresql://fleet@db:99999/fleet", "port '99999'"),
    ("postgresql://fleet@[::1/fleet", "malformed"),
    ("postgresql://fleet@db/fleet?sslmode=always", "sslmode 'always'"),
    ("postgresql://fleet@db/fleet?sslmode", "malformed parameters"),
    ("postgresql://fleet@db/a/b", "database name"),
    (f"postgresql://fleet:{SECRET}@db/fleet", "password in the URL is refused"),
    (f"postgres://fleet@db/fleet?sslmode=require&password={SECRET}", "password in the URL is refused"),
    (f"postgresql://fleet@db/fleet?sslpassword={SECRET}", "password in the URL is refused"),
    (f"postgresql:/fleet:{SECRET}@db/fleet", "not a URL"),  # refused for its shape, the password still hidden
    (f"postgresql://fleet:{SECRET}@db/fleet#x", "no #fragment"),
])
def test_a_bad_store_url_is_one_line_naming_the_key_and_never_the_password(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_url(url)
    message = str(info.value)
    assert message.startswith("environment (TGFLEET_*): store.url: ") and problem in message, message
    assert "\n" not in message and SECRET not in message and info.value.exit_code == 2


@pytest.mark.parametrize(("url", "kind", "shown"), [
    ("sqlite:///srv/fleet/tgfleet.sqlite3", "sqlite", "sqlite:///srv/fleet/tgfleet.sqlite3"),
    ("sqlite:////srv/fleet/tgfleet.sqlite3", "sqlite", "sqlite:///srv/fleet/tgfleet.sqlite3"),
    ("postgresql://fleet@db.internal:6432/fleet?sslmode=verify-full", "postgresql",
     "postgresql://fleet@db.internal:6432/fleet?sslmode=verify-full"),
    ("postgres://fleet@a:5432,[::1]:5433/fleet", "postgresql", "postgres://fleet@a:5432,[::1]:5433/fleet"),
    ("postgresql://postgres:@/postgres?host=/tmp/pg", "postgresql", "postgresql://postgres@/postgres?host=/tmp/pg"),
    # an empty password is none (pgserver's own URLs look like this)
])
def test_store_urls_of_both_kinds(url: str, kind: str, shown: str) -> None:
    target = load_url(url).store_url()
    assert (target.kind, target.url) == (kind, shown)
    if kind == "sqlite":
        assert target.path == Path("/srv/fleet/tgfleet.sqlite3")


def test_the_default_store_is_the_data_dirs_sqlite_file(tmp_path: Path) -> None:
    cfg = config.load(None, env={"TGFLEET_CONFIG": "/dev/null", "TGFLEET_DATA_DIR": str(tmp_path)})
    assert cfg.store.url == "" and cfg.store_url().url == f"sqlite://{tmp_path}/tgfleet.sqlite3"


def test_pgpassword_is_one_of_the_secrets_the_log_never_shows() -> None:
    cfg = config.load(None, env={"TGFLEET_CONFIG": "/dev/null"})
    assert configured_secrets(cfg, {"PGPASSWORD": SECRET}) == [SECRET]
    assert configured_secrets(cfg, {}) == []


def run_args(fl: Fleet, *extra: str) -> tuple[str, ...]:
    return ("run", "--simulate", "--accounts", "5", "--config", str(fl.config), "--data-dir", str(fl.data_dir),
            "--socket", str(fl.socket_path), "--http", "127.0.0.1:0", *extra)


def test_run_refuses_a_bad_store_or_password_file_before_touching_anything(fl: Fleet) -> None:
    in_file = fl.root / "url.toml"
    in_file.write_text('[store]\nurl = "sqlite://data/tgfleet.sqlite3"\n')
    results = fl.cli_batch(
        (run_args(fl, "--store", f"postgresql://fleet:{SECRET}@127.0.0.1:1/fleet"), None),
        (run_args(fl), {"TGFLEET_STORE__URL": f"postgresql://fleet@127.0.0.1:1/fleet?password={SECRET}"}),
        (run_args(fl), {"TGFLEET_STORE__URL": "redis://127.0.0.1/0"}),
        (run_args(fl, "--config", str(in_file)), None),
        (run_args(fl), {"TGFLEET_STORE__PASSWORD_FILE": str(fl.root / "missing")}),
        (run_args(fl), {"TGFLEET_STORE__PASSWORD_FILE": str(fl.root)}),  # a directory
    )
    lines = []
    for result in results:
        assert result.returncode == 2, f"{result.args}: {result.returncode} {result.stderr}"
        no_traceback(result)
        lines.append(one_line(result.stderr))
    assert all(line.startswith("tgdaemon: ") and SECRET not in line for line in lines), lines
    assert "command line: store.url: a password in the URL is refused" in lines[0] and "password_file" in lines[0]
    assert "TGFLEET_STORE__URL" not in lines[1] and "store.url: a password in the URL is refused" in lines[1]
    assert "store.url: unknown scheme 'redis'" in lines[2]
    assert f"config {in_file}: store.url: a sqlite URL names an absolute path" in lines[3], lines[3]
    assert f"store.password_file {fl.root / 'missing'}: cannot read: No such file" in lines[4], lines[4]
    assert f"store.password_file {fl.root}: cannot read" in lines[5], lines[5]
    assert not fl.data_dir.exists() and not fl.socket_path.exists()


def test_a_server_that_does_not_answer_is_one_line_naming_the_host_exit_1(fl: Fleet) -> None:
    """Port 1 on 127.0.0.1: nothing listens there. The data dir's lock is let go, nothing else is left."""
    password = fl.root / "pw"
    password.write_text(SECRET + "\n")
    password.chmod(0o600)
    daemon = fl.start(accounts=5, extra_args=("--store", "postgresql://fleet@127.0.0.1:1/fleet"),
                      env={"TGFLEET_STORE__PASSWORD_FILE": str(password)})
    assert daemon.wait_exit() == 1
    line = one_line(daemon.log())
    assert line.startswith("tgdaemon: database 127.0.0.1:1/fleet: cannot connect: "), line
    assert "connect call failed" in line.lower() or "refused" in line.lower(), line
    assert SECRET not in daemon.log()
    assert not fl.socket_path.exists()
    assert (fl.data_dir / "tgdaemon.lock").read_text() == ""  # released


@pytest.fixture
def password_db(pg_server: pgtest.PgServer) -> Iterator[tuple[pgtest.PgServer, str]]:
    """A database owned by the password role (its password: SECRET), and the server."""
    role = pg_server.password_role(SECRET)
    name = pg_server.create(owner=role)
    try:
        if not pg_server.asks_password(name):
            pytest.skip(f"{pgtest.URL_ENV} names a server that does not ask {role} for a password")
        yield pg_server, name
    finally:
        pg_server.drop(name)


def test_a_wrong_password_is_one_line_exit_1_and_never_shown(fl: Fleet,
                                                             password_db: tuple[pgtest.PgServer, str]) -> None:
    server, name = password_db
    url = server.url(name, user=pgtest.PASSWORD_ROLE)
    wrong = fl.root / "wrong"
    wrong.write_text("not-" + SECRET)
    wrong.chmod(0o600)
    from_file = fl.start(accounts=5, extra_args=("--store", url), env={"TGFLEET_STORE__PASSWORD_FILE": str(wrong)})
    from_env = fl.start(accounts=5, data_dir=fl.root / "data2", socket_path=fl.root / "d2.sock",
                        extra_args=("--store", url), env={"PGPASSWORD": "not-" + SECRET})
    for daemon in (from_file, from_env):
        assert daemon.wait_exit() == 1
        line = one_line(daemon.log())
        assert line.startswith("tgdaemon: database ") and f"/{name}: cannot connect: " in line, line
        assert "password authentication failed" in line, line
        assert SECRET not in daemon.log()


def test_status_shows_the_store_without_its_password_and_the_log_never_has_it(
        fl: Fleet, password_db: tuple[pgtest.PgServer, str]) -> None:
    """The password from a file readable by others (a warning, one line), the daemon at debug level."""
    server, name = password_db
    url = server.url(name, user=pgtest.PASSWORD_ROLE)
    password = fl.root / "pw"
    password.write_text(f"  {SECRET}\n")  # surrounding whitespace is not part of it
    password.chmod(0o644)
    daemon = fl.start(accounts=5, extra_args=("--store", url),
                      env={"TGFLEET_STORE__PASSWORD_FILE": str(password), "TGFLEET_LOG_LEVEL": "debug"}).wait_ready()
    status, human = fl.cli_many(("status", "--json", "--socket", str(fl.socket_path)),
                                ("status", "--socket", str(fl.socket_path)), env={"COLUMNS": "400"})
    assert status.returncode == 0 and human.returncode == 0, status.stderr + human.stderr
    data = json.loads(status.stdout)
    assert data["store"] == {"kind": "postgresql", "url": url, "down": None, "down_since": None}
    assert data["data_dir"] == str(fl.data_dir) and data["accounts"]["ready"] >= 1
    assert f"store postgresql {url}  synchronous full" in human.stdout, human.stdout
    assert SECRET not in status.stdout + human.stdout
    assert "asyncpg" in Path(f"/proc/{daemon.pid}/maps").read_text()  # what the SQLite test's check looks for
    assert daemon.stop() == 0, daemon.log()
    log = daemon.log()
    assert SECRET not in log
    warnings = [ln for ln in log.splitlines() if "store.password_file" in ln]
    assert len(warnings) == 1 and "WARNING" in warnings[0] and "readable by group and others" in warnings[0]
    assert f"store {url}" in log, log  # the ready line names the store, without the password


def test_a_sqlite_url_puts_the_database_where_it_says_and_locks_it_there(fl: Fleet) -> None:
    db = fl.root / "elsewhere" / "fleet.sqlite3"
    daemon = fl.start(accounts=5, extra_args=("--store", f"sqlite://{db}")).wait_ready()
    status = json.loads(fl.cli("status", "--json", "--socket", str(fl.socket_path)).stdout)
    assert status["store"] == {"kind": "sqlite", "url": f"sqlite://{db}", "down": None, "down_since": None}
    assert status["database"]["path"] == str(db)
    # another data dir, the same file: refused by the lock in the file's directory
    second = fl.start(accounts=5, data_dir=fl.root / "data2", socket_path=fl.root / "d2.sock",
                      extra_args=("--store", f"sqlite://{db}"))
    assert second.wait_exit() == 1
    line = one_line(second.log())
    assert "another tgdaemon" in line and str(daemon.pid) in line and str(db.parent) in line, line
    assert "asyncpg" not in Path(f"/proc/{daemon.pid}/maps").read_text()  # the driver was never imported
    assert daemon.stop() == 0, daemon.log()
    assert db.exists() and not (fl.data_dir / "tgfleet.sqlite3").exists()
    assert (fl.data_dir / "tgdaemon.lock").exists() and (db.parent / "tgdaemon.lock").exists()


async def test_the_database_password_is_redacted_from_every_log_line_while_the_daemon_runs(
        daemon_factory: Callable[..., Any], password_db: tuple[pgtest.PgServer, str], tmp_path: Path) -> None:
    server, name = password_db
    password = tmp_path / "pw"
    password.write_text(SECRET)
    password.chmod(0o600)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(RedactingFormatter(logging.Formatter("%(message)s")))
    logger = logging.getLogger("tgdaemon.test_store_choice")
    logger.addHandler(handler)
    try:
        async with daemon_factory(store={"url": server.url(name, user=pgtest.PASSWORD_ROLE),
                                         "password_file": str(password)}) as (daemon, client):
            logger.warning("connected with %s", SECRET)  # what a careless line anywhere would write
            assert (await client.status())["store"]["kind"] == "postgresql"
    finally:
        logger.removeHandler(handler)
    assert out.getvalue() == "connected with [redacted]\n"
    assert REDACTOR.redact(SECRET) == SECRET  # held for the daemon's life only


def test_a_postgresql_store_keeps_its_world_and_its_kind_of_fleet(pg_server: pgtest.PgServer) -> None:
    """What a store remembers lives in the store: a second daemon with another data dir, on the same
    database, is refused another world, and a real gateway is refused the simulated fleet; both name
    the store's URL and --store (another data dir would not help)."""
    name = pg_server.create()
    url = pg_server.url(name)
    try:
        with fleet(store=url) as f:
            first = f.start(accounts=5).wait_ready()
            assert first.stop() == 0, first.log()
            other = f.start(accounts=7, data_dir=f.root / "data2")
            assert other.wait_exit() == 1
            line = one_line([ln for ln in other.log().splitlines() if "tgdaemon: " in ln][-1])
            assert line.startswith(f"tgdaemon: store {url} holds a simulated world of 5 accounts (seed 1)"), line
            assert "simulator.accounts = 7 (command line)" in line and line.endswith("use another --store"), line
            real = f.cli("run", "--config", str(f.config), "--data-dir", str(f.root / "data3"), "--socket",
                         str(f.root / "d3.sock"), "--http", "127.0.0.1:0", "--store", url,
                         env={"TGFLEET_TELEGRAM__API_ID": "12345", "TGFLEET_TELEGRAM__API_HASH": "0" * 32})
            assert real.returncode == 1, real.stderr
            no_traceback(real)
            last = real.stderr.strip().splitlines()[-1]
            assert last == (f"tgdaemon: store {url} holds a simulator fleet, but the daemon was started with the"
                            " telethon gateway; use another --store"), real.stderr
    finally:
        pg_server.drop(name)


async def test_a_password_file_for_a_sqlite_store_is_read_and_said_to_be_unused(
        daemon_factory: Callable[..., Any], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    password = tmp_path / "pw"
    password.write_text(SECRET)
    password.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="tgdaemon.store.connect"):
        async with daemon_factory(store={"password_file": str(password)}) as (daemon, client):
            assert (await client.status())["store"]["kind"] == "sqlite"
    [line] = [r.getMessage() for r in caplog.records if r.name == "tgdaemon.store.connect"]
    assert line.startswith("store.password_file is set, but the store is SQLite (sqlite:///"), line
