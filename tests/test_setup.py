"""Issue 4: the account setup pipeline, end to end inside one process.

Real parts only: the real ``Daemon`` with the ``Simulator`` (or a subclass that
scripts a chosen error for a chosen call), real SQLite in a tmp data dir, the
real control API over a real Unix socket, the real CLI as a subprocess. Waits
are polls bounded both in count and in time; nothing asserts how long anything
took. Who ran when is read from the events table, in id order (commit order).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import pytest
from conftest import STOP_TIMEOUT, build_config, start_in_process
from daemon_proc import isolated_env
from PIL import Image
from telethon import errors

from tgdaemon import config, media
from tgdaemon.config import Config, SimulatorConfig
from tgdaemon.control.client import ControlClient
from tgdaemon.gateway.base import AccountRef, MediaFile, Owned, PrivacyKey, PrivacyValue
from tgdaemon.gateway.simulator import Simulator, rpc_error
from tgdaemon.gateway.simworld import SimAccount, initial_profile
from tgdaemon.lifecycle.daemon import Daemon
from tgdaemon.lifecycle.datadir import DB_NAME
from tgdaemon.setup.scheduler import SetupScheduler
from tgdaemon.setup.secrets import PasswordSource
from tgdaemon.setup.tasks import TASKS, MediaProbes, TaskContext
from tgdaemon.store import ClaimedTask
from tgdaemon.store.sqlite import SQLiteStore
from tgdaemon.store.sqlite.locks import release_lock, take_lock

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
# The baseline's fast tasks; the opt-in terminate_other_sessions ([setup.sessions]) has tests of its own.
FAST = tuple(name for name, spec in TASKS.items() if spec.queue == "fast" and spec.switch is None)
BASELINE = tuple(name for name, spec in TASKS.items() if spec.switch is None)
MEDIA_TASKS = tuple(name for name, spec in TASKS.items() if spec.queue == "media")
QUIET = {"flood_wait_rate": 0.0, "peer_flood_rate": 0.0, "transient_rate": 0.0, "dead_fraction": 0.0}
DEAD_CODES = {
    "AuthKeyUnregisteredError": "AUTH_KEY_UNREGISTERED", "UserDeactivatedBanError": "USER_DEACTIVATED_BAN",
    "SessionRevokedError": "SESSION_REVOKED", "SessionExpiredError": "SESSION_EXPIRED",
    "UserDeactivatedError": "USER_DEACTIVATED", "PhoneNumberBannedError": "PHONE_NUMBER_BANNED",
    "AuthKeyDuplicatedError": "AUTH_KEY_DUPLICATED",
}
END_KINDS = ("setup.done", "setup.retry", "setup.failed", "setup.recovered")
NAME = ("Fleet", "Baseline")
POLL = 0.05


# -- media made here -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Media:
    jpg: Path
    png: Path
    gif: Path
    mp4: Path

    def config(self, **over: str) -> dict[str, str]:
        return {"default_jpg_path": str(self.jpg), "default_gif_path": str(self.gif),
                "story_image_path": str(self.png), "story_video_path": str(self.mp4), "ffmpeg_path": FFMPEG,
                **over}


@pytest.fixture(scope="module")
def media_set(tmp_path_factory: pytest.TempPathFactory) -> Media:
    d = tmp_path_factory.mktemp("media")
    jpg, png, gif, mp4 = d / "avatar.jpg", d / "story.png", d / "avatar.gif", d / "story.mp4"
    Image.new("RGB", (640, 480), "teal").save(jpg, "JPEG")
    Image.new("RGB", (720, 1280), "navy").save(png, "PNG")
    frames = [Image.new("RGB", (160, 120), (i * 23 % 256, 90, 200 - i * 9)) for i in range(10)]
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    done = subprocess.run([FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                           "testsrc=size=360x640:rate=10:duration=1", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                           str(mp4)], capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return Media(jpg, png, gif, mp4)


def password_file(path: Path, accounts: Iterable[SimAccount]) -> Path:
    """The 2FA secret source: a mode-600 TOML table of phone -> password."""
    path.write_text("".join(f'"{a.phone}" = "pw-{a.tg_user_id}"\n' for a in accounts))
    path.chmod(0o600)
    return path


# -- a simulator with scripted faults --------------------------------------------------------------


class FaultySim(Simulator):
    """The simulator, plus errors scripted per (call, tg_user_id), gates per call, and a hang after a post.

    Call names: has_2fa, enable_2fa, get_me, set_name, get_privacy:<key>, set_privacy:<key>,
    profile_photos, set_profile_photo:<kind>, can_send_story, my_stories, send_story:<kind>.
    """

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.script: dict[tuple[str, int], list[Callable[[], BaseException]]] = {}
        self.always: dict[int, Callable[[], BaseException]] = {}  # every call of this account raises
        self.once: dict[int, Callable[[], BaseException]] = {}  # the account's next call raises, whatever it is
        self.gates: dict[str, asyncio.Event] = {}
        self.hang_after: set[str] = set()  # calls that do their work, then never answer
        self.calls: Counter[str] = Counter()

    def fail(self, call: str, account: SimAccount, make: Callable[[], BaseException], times: int = 1) -> None:
        self.script.setdefault((call, account.tg_user_id), []).extend([make] * times)

    async def _scripted(self, call: str, account: AccountRef) -> None:
        self.calls[call] += 1
        if (gate := self.gates.get(call)) is not None:
            await asyncio.wait_for(gate.wait(), 30)
        if (make := self.always.get(account.tg_user_id) or self.once.pop(account.tg_user_id, None)) is not None:
            raise make()
        if queue := self.script.get((call, account.tg_user_id)):
            raise queue.pop(0)()

    async def _hang(self, call: str) -> None:
        if call in self.hang_after:
            await asyncio.Event().wait()  # the answer never comes: only a cancel ends this

    async def has_2fa(self, account: AccountRef) -> bool:
        await self._scripted("has_2fa", account)
        return await super().has_2fa(account)

    async def enable_2fa(self, account: AccountRef, password: str) -> None:
        await self._scripted("enable_2fa", account)
        await super().enable_2fa(account, password)

    async def get_me(self, account: AccountRef) -> Any:
        await self._scripted("get_me", account)
        return await super().get_me(account)

    async def set_name(self, account: AccountRef, first_name: str, last_name: str) -> None:
        await self._scripted("set_name", account)
        await super().set_name(account, first_name, last_name)

    async def get_privacy(self, account: AccountRef, key: PrivacyKey) -> PrivacyValue:
        await self._scripted(f"get_privacy:{key}", account)
        return await super().get_privacy(account, key)

    async def set_privacy(self, account: AccountRef, key: PrivacyKey, value: PrivacyValue) -> None:
        await self._scripted(f"set_privacy:{key}", account)
        await super().set_privacy(account, key, value)

    async def profile_photos(self, account: AccountRef) -> list[Owned]:
        await self._scripted("profile_photos", account)
        return await super().profile_photos(account)

    async def set_profile_photo(self, account: AccountRef, file: MediaFile) -> int:
        call = f"set_profile_photo:{file.kind}"
        await self._scripted(call, account)
        photo_id = await super().set_profile_photo(account, file)
        await self._hang(call)
        return photo_id

    async def can_send_story(self, account: AccountRef) -> bool:
        await self._scripted("can_send_story", account)
        return await super().can_send_story(account)

    async def my_stories(self, account: AccountRef) -> list[Owned]:
        await self._scripted("my_stories", account)
        return await super().my_stories(account)

    async def send_story(self, account: AccountRef, file: MediaFile) -> int:
        call = f"send_story:{file.kind}"
        await self._scripted(call, account)
        story_id = await super().send_story(account, file)
        await self._hang(call)
        return story_id


def flood(seconds: int) -> Callable[[], BaseException]:
    return lambda: errors.FloodWaitError(request=None, capture=seconds)


def peer_flood() -> BaseException:
    return errors.PeerFloodError(request=None)


def rpc_call_fail() -> BaseException:
    return errors.RpcCallFailError(request=None)


def banned() -> BaseException:
    return errors.UserDeactivatedBanError(request=None)


# -- the daemon under test -------------------------------------------------------------------------


@dataclass
class Run:
    daemon: Daemon
    client: ControlClient
    sim: FaultySim
    cfg: Config
    env: dict[str, str]
    ids: dict[int, int] = field(default_factory=dict)  # tg_user_id -> account id

    @property
    def store(self) -> Any:
        assert self.daemon.runtime is not None
        return self.daemon.runtime.store

    def id(self, account: SimAccount) -> int:
        return self.ids[account.tg_user_id]

    def live(self) -> list[SimAccount]:
        """The accounts setup works on: neither probes nor dead."""
        return [a for a in self.sim.accounts if not a.is_probe and a.dead is None]

    async def tasks(self, **params: Any) -> list[dict[str, Any]]:
        return (await self.client.request("GET", "/tasks", params=params))["tasks"]

    async def by_type(self, account: SimAccount) -> dict[str, dict[str, Any]]:
        return {t["task_type"]: t for t in await self.tasks(account_id=self.id(account))}

    async def account_row(self, account: SimAccount) -> dict[str, Any]:
        rows = await self.store.read("SELECT * FROM accounts WHERE id = ?", (self.id(account),))
        return dict(next(iter(rows)))

    async def events(self, kinds: str = "setup.%") -> list[dict[str, Any]]:
        rows = await self.store.read("SELECT id, at, kind, account_id, task_id, data_json FROM events"
                                     " WHERE kind LIKE ? ORDER BY id", (kinds,))
        return [{**dict(r), "data": json.loads(r["data_json"])} for r in rows]

    async def cli(self, *args: str) -> tuple[int, str, str]:
        """``python -m tgdaemon ARGS --socket S``, without blocking the daemon's loop."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tgdaemon", *args, "--socket", str(self.cfg.socket_path()), env=self.env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        assert "Traceback" not in out.decode() + err.decode(), err.decode()
        return proc.returncode or 0, out.decode(), err.decode()

    async def cli_json(self, *args: str) -> Any:
        code, out, err = await self.cli(*args, "--json")
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def setup_daemon(tmp_path: Path, short_dir: Path) -> Callable[..., Any]:
    """``async with setup_daemon(sim=None, **sections) as run``; runs share tmp_path's data dir."""
    env = isolated_env(short_dir)

    @contextlib.asynccontextmanager
    async def start(*, sim: FaultySim | None = None, **sections: dict[str, Any]) -> AsyncIterator[Run]:
        cfg = build_config(tmp_path, short_dir / "d.sock", **sections)
        gateway = sim if sim is not None else FaultySim(cfg.simulator)
        daemon = Daemon(cfg, gateway, install_signal_handlers=False)
        task = await start_in_process(daemon)
        client = ControlClient(cfg.socket_path(), timeout=15)
        run = Run(daemon, client, gateway, cfg, env)
        try:
            rows = await run.store.read("SELECT id, tg_user_id FROM accounts")
            run.ids = {r["tg_user_id"]: r["id"] for r in rows}
            yield run
        finally:
            await client.close()
            daemon.stop()
            exit_code = await asyncio.wait_for(task, STOP_TIMEOUT)
            assert exit_code == 0

    return start


async def wait_for(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 20.0) -> Any:
    """Poll ``check`` until it returns something truthy; bounded in count and in time."""
    deadline = time.monotonic() + timeout
    last: Any = None
    for _ in range(int(timeout / POLL) + 1):
        last = await check()
        if last:
            return last
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(POLL)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last: {last!r}")


def statuses(tasks: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {name: t["status"] for name, t in tasks.items()}


# -- the lock, from the events ---------------------------------------------------------------------


@dataclass
class Intervals:
    peak: Counter[str]
    still_running: dict[int, int]  # account -> task
    starts: Counter[int]  # task -> how many times it started


def check_intervals(events: list[dict[str, Any]], limits: dict[str, int]) -> Intervals:
    """Replay setup.started / done / retry / failed / recovered in id order: one running task per account at
    most, and per queue never more running than its limit."""
    running: dict[int, int] = {}
    queue_of: dict[int, str] = {}
    in_queue: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    starts: Counter[int] = Counter()
    for e in events:
        account, task = e["account_id"], e["task_id"]
        if e["kind"] == "setup.started":
            assert account not in running, (
                f"event {e['id']}: account {account} started task {task} while task {running[account]} ran")
            running[account] = task
            queue = queue_of[task] = TASKS[e["data"]["task_type"]].queue
            in_queue[queue] += 1
            peak[queue] = max(peak[queue], in_queue[queue])
            assert in_queue[queue] <= limits[queue], f"event {e['id']}: {in_queue[queue]} running in {queue}"
            starts[task] += 1
        elif e["kind"] in END_KINDS:
            assert running.get(account) == task, f"event {e['id']}: {e['kind']} of task {task}, not running"
            del running[account]
            in_queue[queue_of[task]] -= 1
    return Intervals(peak, running, starts)


# -- convergence with faults on --------------------------------------------------------------------


async def test_seeded_faulty_run_converges_to_the_baseline(setup_daemon: Any, tmp_path: Path,
                                                           media_set: Media) -> None:
    sim_cfg = {"accounts": 60, "seed": 7, "dead_fraction": 0.05, "flood_wait_rate": 0.05,
               "flood_wait_max_seconds": 2, "peer_flood_rate": 0.01, "transient_rate": 0.05}
    world = Simulator(build_config(tmp_path, tmp_path / "x.sock", simulator=sim_cfg).simulator)
    secrets = password_file(tmp_path / "passwords.toml", world.accounts)
    limits = {"fast": 6, "media": 3}
    async with setup_daemon(
            simulator=sim_cfg,
            limits={"peer_flood_cooldown_seconds": 2, "flood_wait_jitter_seconds": 0},
            setup={"enabled": True, "retry": {"backoff_seconds": [0.1], "max_attempts": 40},
                   "queues": {"fast_concurrency": limits["fast"], "media_concurrency": limits["media"]},
                   "2fa": {"enable": True, "password_file": str(secrets)},
                   "profile": {"first_name": NAME[0], "last_name": NAME[1]}, "media": media_set.config()},
    ) as run:
        live, dead = run.live(), [a for a in run.sim.accounts if a.dead is not None]
        probes = [a for a in run.sim.accounts if a.is_probe]
        assert len(dead) == 3 and len(probes) == 3 and len(live) == 54

        async def settled() -> bool:
            tasks = await run.tasks(limit=10_000)
            return all(t["status"] == "done" or t["blocked_by"] == "disabled" or t["status"] == "failed"
                       for t in tasks) and len(tasks) == 57 * 8

        await wait_for(settled, "every task done, or failed / waiting on a disabled account", timeout=40)
        tasks = await run.tasks(limit=10_000)
        by_account: dict[int, dict[str, dict[str, Any]]] = {}
        for t in tasks:
            by_account.setdefault(t["account_id"], {})[t["task_type"]] = t

        # no task lost, none for probes; every live account all-done
        assert set(by_account) == {run.id(a) for a in live + dead}
        assert all(set(by_account[run.id(a)]) == set(BASELINE) for a in live + dead)
        for a in live:
            assert statuses(by_account[run.id(a)]) == dict.fromkeys(BASELINE, "done"), a.label
        # every dead account: disabled with its code, the task that met it failed, the rest wait on "disabled"
        for a in dead:
            code = DEAD_CODES[a.dead.__name__]
            row = await run.account_row(a)
            assert row["disabled_at"] is not None and row["disabled_reason"] == code, (a.label, row)
            mine = by_account[run.id(a)].values()
            failed = [t for t in mine if t["status"] == "failed"]
            assert len(failed) == 1 and failed[0]["last_error_code"] == code and failed[0]["attempts"] == 1
            assert all(t["status"] == "pending" and t["blocked_by"] == "disabled" for t in mine if t not in failed)

        # the simulated Telegram now holds the baseline, each photo and story posted once
        for a in live:
            p = run.sim.profile(a.tg_user_id)
            results = {name: t["result"] for name, t in by_account[run.id(a)].items()}
            assert p.has_password, a.label
            assert (p.first_name, p.last_name) == NAME, a.label
            assert p.privacy == {"phone_number": "nobody", "last_seen": "everybody"}, a.label
            made_photos = [m for m in p.photos if m.source != "initial.jpg"]
            kinds = Counter(m.kind for m in made_photos)
            story_kinds = Counter(m.kind for m in p.stories)
            # never a double post: at most one of each
            assert max(kinds.values(), default=0) <= 1 and max(story_kinds.values(), default=0) <= 1, a.label
            photo_ids = {m.id: m for m in made_photos}
            story_ids = {m.id: m for m in p.stories}
            recorded = {name: results[name].get("photo_id") or results[name].get("story_id") for name in MEDIA_TASKS}
            kind_of = {"set_photo_jpg": "photo", "set_photo_gif": "video", "story_image": "photo",
                       "story_video": "video"}
            owned = {name: (photo_ids if name.startswith("set_photo") else story_ids).get(recorded[name])
                     for name in MEDIA_TASKS}
            assert all(owned.values()), (a.label, recorded)
            assert {name: m.kind for name, m in owned.items() if m} == kind_of, a.label  # its own kind of post
            assert kinds == {"photo": 1, "video": 1}, (a.label, made_photos)
            assert story_kinds == {"photo": 1, "video": 1}, (a.label, p.stories)
            assert {m.source for m in p.stories} == {media_set.png.name, media_set.mp4.name}

        # the run did meet the faults it was meant to
        codes = Counter(e["data"]["error_code"] for e in await run.events() if e["kind"] == "setup.retry")
        assert codes["FLOOD_WAIT"] and codes["PEER_FLOOD"] and codes["RPC_CALL_FAIL"], codes
        assert await run.events("account.cooldown") and len(await run.events("account.disabled")) == 3

        # the lock held: never two tasks of an account at once, never more per queue than its limit
        spans = check_intervals(await run.events(), limits)
        assert spans.still_running == {}
        assert spans.peak["fast"] >= 2 and spans.peak["media"] >= 2, spans.peak
        # the API's progress matches
        accounts = {a["id"]: a for a in await run.client.all_accounts()}
        for a in live:
            assert accounts[run.id(a)]["setup"] == {"done": 8, "total": 8}
        for a in probes:
            assert accounts[run.id(a)]["setup"] == {"done": 0, "total": 0}


# -- idempotency -----------------------------------------------------------------------------------


def claimed(row: Any, account: SimAccount) -> ClaimedTask:
    return ClaimedTask(row["id"], row["account_id"], row["task_type"], json.loads(row["payload_json"]),
                       row["attempts"], json.loads(row["result_json"] or "{}"), row["started_at"],
                       account.tg_user_id, account.phone, {}, resumed=row["started_at"] is not None)


async def test_running_a_done_task_again_changes_nothing(setup_daemon: Any, tmp_path: Path,
                                                         media_set: Media) -> None:
    sim_cfg = {"accounts": 6, "seed": 3, **QUIET}
    world = Simulator(build_config(tmp_path, tmp_path / "x.sock", simulator=sim_cfg).simulator)
    secrets = password_file(tmp_path / "passwords.toml", world.accounts)
    async with setup_daemon(simulator=sim_cfg, setup={
            "enabled": True, "queues": {"media_concurrency": 1},
            "2fa": {"enable": True, "password_file": str(secrets)},
            "profile": {"first_name": NAME[0], "last_name": NAME[1]}, "media": media_set.config()}) as run:
        live = run.live()

        async def all_done() -> bool:
            tasks = await run.tasks()
            return len(tasks) == 8 * len(live) and all(t["status"] == "done" for t in tasks)

        await wait_for(all_done, "all tasks done")
        passwords = PasswordSource(run.cfg.setup.twofa)
        for a in live:
            before = copy.deepcopy(run.sim.profile(a.tg_user_id))
            rows = await run.store.read("SELECT * FROM account_tasks WHERE account_id = ? ORDER BY id", (run.id(a),))
            assert len(rows) == 8
            for row in rows:
                ctx = TaskContext(run.sim, AccountRef(run.id(a), a.tg_user_id, a.phone), claimed(row, a),
                                  run.cfg.setup, passwords, run.cfg.data_dir() / "media")
                result = await TASKS[row["task_type"]].run(ctx)
                assert result["meta"].get("skipped"), (a.label, row["task_type"], result)
            assert run.sim.profile(a.tg_user_id) == before, a.label
        assert run.sim.calls["set_profile_photo:photo"] == len(live)  # the daemon's posts, none from the reruns
        assert run.sim.calls["send_story:video"] == len(live)


async def test_a_media_file_is_probed_again_only_once_it_changed(tmp_path: Path, media_set: Media) -> None:
    """Every account's media task posts the same file: probed (or converted) once while it stays the same."""
    probes = MediaProbes()
    photo = tmp_path / "avatar.jpg"
    photo.write_bytes(media_set.jpg.read_bytes())
    runs: list[str] = []

    def probe(path: Path, how: str) -> MediaFile:
        runs.append(how)
        return media.probe(path, "photo") if how == "photo" else media.animated_avatar(path, tmp_path, FFMPEG)

    first = await probes.get(photo, "photo", lambda: probe(photo, "photo"))
    assert await probes.get(photo, "photo", lambda: probe(photo, "photo")) == first
    avatar = await probes.get(media_set.gif, "avatar", lambda: probe(media_set.gif, "avatar"))  # converted
    assert avatar.path.parent == tmp_path and avatar.kind == "video"
    assert await probes.get(media_set.gif, "avatar", lambda: probe(media_set.gif, "avatar")) == avatar
    assert runs == ["photo", "avatar"]
    avatar.path.unlink()  # what the conversion made is gone: made again
    again = await probes.get(media_set.gif, "avatar", lambda: probe(media_set.gif, "avatar"))
    assert again.path.exists() and runs == ["photo", "avatar", "avatar"]
    Image.new("RGB", (800, 600), "teal").save(photo, "JPEG")  # another picture at the same path
    assert (await probes.get(photo, "photo", lambda: probe(photo, "photo"))).width == 800
    photo.unlink()
    for _ in range(2):  # a failure is not kept: each task says what is wrong
        with pytest.raises(media.TaskInputError, match="no such file"):
            await probes.get(photo, "photo", lambda: probe(photo, "photo"))
    assert runs == ["photo", "avatar", "avatar", "photo", "photo", "photo"]


@pytest.mark.parametrize("task_type", MEDIA_TASKS)
async def test_a_post_made_before_a_crash_is_found_not_repeated(tmp_path: Path, media_set: Media,
                                                                task_type: str) -> None:
    cfg = build_config(tmp_path, tmp_path / "x.sock", simulator={"accounts": 3, **QUIET},
                       setup={"media": media_set.config()})
    sim = Simulator(cfg.simulator)
    account = next(a for a in sim.accounts if not a.is_probe)
    ref = AccountRef(1, account.tg_user_id, account.phone)
    spec = TASKS[task_type]
    payload = spec.payload(cfg.setup)
    workdir = tmp_path / "media-work"
    file = (media.animated_avatar(media_set.gif, workdir, FFMPEG) if task_type == "set_photo_gif"
            else media.probe(Path(payload["path"]), "video" if task_type == "story_video" else "photo"))
    started = time.time() - 5
    # attempt 1 posted, then the daemon died before recording what it made
    post = sim.set_profile_photo if task_type.startswith("set_photo") else sim.send_story
    posted = await post(ref, file)
    before = copy.deepcopy(sim.profile(account.tg_user_id))
    task = ClaimedTask(1, 1, task_type, payload, 2, {}, started, account.tg_user_id, account.phone, {}, resumed=True)
    result = await spec.run(TaskContext(sim, ref, task, cfg.setup, PasswordSource(cfg.setup.twofa), workdir))
    assert result["meta"].get("skipped"), result
    assert result.get("photo_id", result.get("story_id")) == posted
    assert sim.profile(account.tg_user_id) == before
    # the control: a first attempt on another account does post, once
    other = [a for a in sim.accounts if not a.is_probe][1]
    oref = AccountRef(2, other.tg_user_id, other.phone)
    first = ClaimedTask(2, 2, task_type, payload, 1, {}, time.time(), other.tg_user_id, other.phone, {})
    made = await spec.run(TaskContext(sim, oref, first, cfg.setup, PasswordSource(cfg.setup.twofa), workdir))
    assert "skipped" not in made["meta"]
    owned = await (sim.profile_photos(oref) if task_type.startswith("set_photo") else sim.my_stories(oref))
    assert [o.id for o in owned].count(made.get("photo_id", made.get("story_id"))) == 1


async def test_the_other_media_tasks_post_is_not_taken_for_this_tasks(setup_daemon: Any, media_set: Media) -> None:
    """A resumed photo task looks by date for what it may have posted: only its own kind counts (before
    07adf14 the GIF task's animated photo made set_photo_jpg skip, and the JPEG was never set)."""
    sim_cfg = {"accounts": 4, "seed": 5, **QUIET}
    async with setup_daemon(simulator=sim_cfg, setup={
            "enabled": True, "retry": {"backoff_seconds": [0.3]}, "queues": {"media_concurrency": 1},
            "media": {"default_jpg_path": str(media_set.jpg), "default_gif_path": str(media_set.gif),
                      "ffmpeg_path": FFMPEG}}) as run:
        a = run.live()[0]
        # the JPEG's first upload fails (a transient error); the GIF task runs meanwhile and posts
        run.sim.fail("set_profile_photo:photo", a, rpc_call_fail)

        async def both_done() -> dict[str, dict[str, Any]] | None:
            tasks = await run.by_type(a)
            ok = [tasks.get(t, {}).get("status") for t in ("set_photo_jpg", "set_photo_gif")] == ["done", "done"]
            return tasks if ok else None

        tasks = await wait_for(both_done, "both photo tasks done")
        assert tasks["set_photo_jpg"]["attempts"] == 2  # the scenario happened: one failed attempt, one more
        made = [m for m in run.sim.profile(a.tg_user_id).photos if m.source != "initial.jpg"]
        assert sorted(m.kind for m in made) == ["photo", "video"], made


# -- waits and errors (design section 6) -----------------------------------------------------------


async def test_waits_errors_and_retries(setup_daemon: Any, media_set: Media, tmp_path: Path) -> None:
    sim_cfg = {"accounts": 9, "seed": 11, **QUIET}
    missing = tmp_path / "nowhere" / "story.png"
    async with setup_daemon(
            simulator=sim_cfg, limits={"flood_wait_jitter_seconds": 0},
            setup={"enabled": True, "retry": {"backoff_seconds": [0.2, 0.6], "max_attempts": 3},
                   "2fa": {"enable": True},  # and no secret source at all
                   "profile": {"first_name": NAME[0], "last_name": NAME[1]},
                   "media": {"default_jpg_path": str(media_set.jpg), "default_gif_path": str(media_set.gif),
                             "ffmpeg_path": "/nonexistent/ffmpeg", "story_image_path": str(missing)}},
    ) as run:
        live = run.live()
        waiting, quick, flaky, dead, *plain = live
        run.sim.fail("has_2fa", waiting, flood(30))
        run.sim.fail("get_privacy:phone_number", quick, flood(1))
        run.sim.fail("get_me", flaky, rpc_call_fail, times=99)
        run.sim.always[dead.tg_user_id] = banned
        types = {"ensure_2fa", "update_name", "privacy_phone_hidden", "privacy_last_seen_everybody",
                 "set_photo_jpg", "set_photo_gif", "story_image"}
        initially = {a.tg_user_id: initial_profile(run.cfg.simulator.seed, a).has_password for a in live}
        assert set(initially.values()) == {True, False}, "the seed should give both kinds of account"

        def finished(t: dict[str, Any]) -> bool:
            return t["status"] in ("done", "failed")

        async def settled() -> bool:
            views = {a.label: await run.by_type(a) for a in live}
            return (all(finished(t) for a in [quick, flaky, *plain] for t in views[a.label].values())
                    and views[waiting.label].get("ensure_2fa", {}).get("last_error_code") == "FLOOD_WAIT"
                    and any(t["status"] == "failed" for t in views[dead.label].values())
                    and all(set(v) == types for v in views.values()))

        await wait_for(settled, "the scripted accounts to settle")
        events = await run.events()

        # FLOOD_WAIT: cooldown for X seconds, the task retries at its end, and no attempt is spent
        w = await run.by_type(waiting)
        row = await run.account_row(waiting)
        assert row["cooldown_reason"] == "FLOOD_WAIT" and row["disabled_at"] is None
        assert (w["ensure_2fa"]["status"], w["ensure_2fa"]["attempts"]) == ("retry", 0)
        start, retry = [e for e in events if e["task_id"] == w["ensure_2fa"]["id"]]
        assert (start["kind"], retry["kind"], retry["data"]["error_code"]) == ("setup.started", "setup.retry",
                                                                              "FLOOD_WAIT")
        assert retry["data"]["retry_at"] == pytest.approx(row["cooldown_until"], abs=1e-6)
        # cooldown_until = (a moment between the start and the retry event) + 30 s (no jitter configured)
        assert row["cooldown_until"] - retry["at"] <= 30.0 <= row["cooldown_until"] - start["at"]
        waits = [t for t in w.values() if t["status"] in ("pending", "retry")]
        assert len(waits) >= 2 and all(t["blocked_by"].startswith("cooldown until")
                                       and "FLOOD_WAIT" in t["blocked_by"] for t in waits), w
        cooldown = [e for e in await run.events("account.cooldown") if e["account_id"] == run.id(waiting)]
        assert [e["data"] for e in cooldown] == [{"reason": "FLOOD_WAIT", "seconds": 30}]
        assert not [e for e in events if e["kind"] == "setup.started" and e["account_id"] == run.id(waiting)
                    and e["id"] > retry["id"]], "a task of an account in cooldown was started"

        # a short FLOOD_WAIT: the task ran again only once the cooldown was over, as attempt 1 again
        q = await run.by_type(quick)
        assert (q["privacy_phone_hidden"]["status"], q["privacy_phone_hidden"]["attempts"]) == ("done", 1)
        mine = [e for e in events if e["task_id"] == q["privacy_phone_hidden"]["id"]]
        assert [e["kind"] for e in mine] == ["setup.started", "setup.retry", "setup.started", "setup.done"]
        assert mine[2]["at"] >= mine[1]["data"]["retry_at"]

        # transient: backoff by setup.retry.backoff_seconds, failed after max_attempts
        f = await run.by_type(flaky)
        assert (f["update_name"]["status"], f["update_name"]["attempts"]) == ("failed", 3)
        assert f["update_name"]["last_error_code"] == "RPC_CALL_FAIL"
        mine = [e for e in events if e["task_id"] == f["update_name"]["id"]]
        assert [e["kind"] for e in mine] == ["setup.started", "setup.retry"] * 2 + ["setup.started", "setup.failed"]
        for (start, retry_event), backoff in zip([(mine[0], mine[1]), (mine[2], mine[3])], [0.2, 0.6]):
            # retry_at = (a moment between the start and the retry event) + backoff
            assert retry_event["data"]["retry_at"] - retry_event["at"] <= backoff
            assert retry_event["data"]["retry_at"] - start["at"] >= backoff
        assert mine[2]["at"] >= mine[1]["data"]["retry_at"] and mine[4]["at"] >= mine[3]["data"]["retry_at"]
        assert (await run.account_row(flaky))["disabled_at"] is None

        # a dead account: disabled with the reason, that task failed, nothing of it runs any more
        d = await run.by_type(dead)
        row = await run.account_row(dead)
        assert row["disabled_reason"] == "USER_DEACTIVATED_BAN" and row["disabled_at"] is not None
        hit = [t for t in d.values() if t["last_error_code"] == "USER_DEACTIVATED_BAN"]
        assert len(hit) == 1 and hit[0]["status"] == "failed" and hit[0]["attempts"] == 1
        fail_event = next(e for e in events if e["task_id"] == hit[0]["id"] and e["kind"] == "setup.failed")
        assert not [e for e in events if e["kind"] == "setup.started" and e["account_id"] == run.id(dead)
                    and e["id"] > fail_event["id"]]
        assert all(t["blocked_by"] == "disabled" for t in d.values() if t["status"] == "pending")
        assert not [t for t in d.values() if t["status"] == "done"]
        disabled = [e for e in await run.events("account.disabled") if e["account_id"] == run.id(dead)]
        assert [e["data"] for e in disabled] == [{"reason": "USER_DEACTIVATED_BAN", "automatic": True}]

        # input errors fail only their task, at once, and leave the account be
        for a in [flaky, *plain]:
            t = await run.by_type(a)
            if a is flaky:
                t.pop("update_name")
            if initially[a.tg_user_id]:
                assert (t["ensure_2fa"]["status"], t["ensure_2fa"]["result"]["meta"].get("skipped")) == (
                    "done", "2FA is already on")
            else:
                assert (t["ensure_2fa"]["status"], t["ensure_2fa"]["last_error_code"]) == ("failed", "NO_2FA_PASSWORD")
            assert (t["story_image"]["status"], t["story_image"]["last_error_code"]) == ("failed", "MEDIA_FILE_MISSING")
            assert str(missing) in t["story_image"]["last_error"]
            assert (t["set_photo_gif"]["status"], t["set_photo_gif"]["last_error_code"]) == ("failed", "FFMPEG_MISSING")
            assert str(media_set.gif) in t["set_photo_gif"]["last_error"]
            assert all(x["attempts"] == 1 for x in t.values() if x["status"] == "failed")
            assert {k for k, x in t.items() if x["status"] == "done"} >= {
                "privacy_phone_hidden", "privacy_last_seen_everybody", "set_photo_jpg"}
            if a is not flaky:
                assert t["update_name"]["status"] == "done"
            row = await run.account_row(a)
            assert (row["disabled_at"], row["cooldown_until"]) == (None, None), a.label
        check_intervals(events, {"fast": 32, "media": 4})


# -- dispatch, blocked_by, the lock shared with quota tasks -----------------------------------------


async def test_dispatch_and_why_tasks_wait(setup_daemon: Any, media_set: Media) -> None:
    sections = {"simulator": {"accounts": 10, "seed": 2, **QUIET},
                "setup": {"enabled": False, "profile": {"first_name": NAME[0], "last_name": NAME[1]},
                          # two media files configured, two not: their tasks are not required
                          "media": {"default_jpg_path": str(media_set.jpg), "story_video_path": str(media_set.mp4)}}}
    wanted = {*FAST, "set_photo_jpg", "story_video"}
    async with setup_daemon(**sections) as run:
        accounts = run.live()
        probe = next(a for a in run.sim.accounts if a.is_probe)
        off, inactive, locked, later_off, *rest = accounts
        await run.client.disable(run.id(off), "sim card gone")
        async with run.store.tx() as tx:
            await tx.execute("UPDATE accounts SET is_active = 0 WHERE id = ?", (run.id(inactive),))
            assert await take_lock(tx, run.id(locked), "quota:999", 600)
        assert await run.tasks() == []  # setup off: no periodic dispatch

        code, out, err = await run.cli("setup", "dispatch")
        n_accounts = len(accounts) - 2
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0] == f"created {n_accounts * len(wanted)} setup tasks; {(n_accounts - 1) * len(wanted)} due now"
        assert "setup is off" in lines[1] and "wait" in lines[1]
        code, out, _ = await run.cli("setup", "dispatch")
        assert code == 0 and out.splitlines()[0].startswith("created 0 setup tasks")

        await run.client.disable(run.id(later_off), "lost the phone")
        tasks = await run.cli_json("tasks", "list")
        got: dict[int, set[str]] = {}
        for t in tasks:
            got.setdefault(t["account_id"], set()).add(t["task_type"])
        assert got == {run.id(a): wanted for a in [locked, later_off, *rest]}
        assert run.id(probe) not in got and run.id(off) not in got and run.id(inactive) not in got
        for t in tasks:
            expected = {run.id(locked): "lock held by quota task 999", run.id(later_off): "disabled"}
            assert t["blocked_by"] == expected.get(t["account_id"], "setup off"), t
            assert (t["status"], t["attempts"], t["last_error_code"]) == ("pending", 0, None)

    sections["setup"]["enabled"] = True
    async with setup_daemon(**sections) as run:

        async def rest_done() -> bool:
            tasks = [t for a in rest for t in (await run.by_type(a)).values()]
            return len(tasks) == len(rest) * len(wanted) and all(t["status"] == "done" for t in tasks)

        await wait_for(rest_done, "the unlocked, enabled accounts to converge")
        # the account whose lock a quota task holds was never touched
        held = await run.by_type(locked)
        assert all((t["status"], t["blocked_by"]) == ("pending", "lock held by quota task 999") for t in held.values())
        assert all((t["status"], t["blocked_by"]) == ("pending", "disabled")
                   for t in (await run.by_type(later_off)).values())
        started = {e["account_id"] for e in await run.events() if e["kind"] == "setup.started"}
        assert run.id(locked) not in started and run.id(later_off) not in started
        assert (await run.cli_json("tasks", "list", "--account", str(run.id(locked)), "--status", "pending"))[0][
            "blocked_by"] == "lock held by quota task 999"

        # the earlier-disabled account is enabled and dispatched (the locked one's tasks are not due); then
        # the quota task lets go of its lock
        await run.client.enable(run.id(off))
        code, out, err = await run.cli("setup", "dispatch")
        assert code == 0 and out.splitlines() == [f"created {len(wanted)} setup tasks; {len(wanted)} due now"], out
        async with run.store.tx() as tx:
            await release_lock(tx, run.id(locked), "quota:999")

        async def converged() -> bool:
            tasks = [t for a in [locked, off] for t in (await run.by_type(a)).values()]
            return len(tasks) == 2 * len(wanted) and all(t["status"] == "done" for t in tasks)

        await wait_for(converged, "the released and the re-enabled account to converge")
        assert await run.by_type(inactive) == {}
        check_intervals(await run.events(), {"fast": 32, "media": 4})


async def test_queue_full_and_lock_held_by_a_running_task(setup_daemon: Any) -> None:
    async with setup_daemon(simulator={"accounts": 5, "seed": 4, **QUIET},
                            setup={"enabled": True, "queues": {"fast_concurrency": 1}}) as run:
        gate = run.sim.gates["has_2fa"] = asyncio.Event()  # the first fast task hangs until let go
        live = run.live()

        async def one_waiting_at_the_gate() -> bool:
            return run.sim.calls["has_2fa"] == 1  # a task is inside its Telegram call: it holds the queue's slot

        await wait_for(one_waiting_at_the_gate, "a running task")
        tasks = await run.tasks()
        assert len(tasks) == 4 * len(live)
        running = [t for t in tasks if t["status"] == "running"]
        assert len(running) == 1 and running[0]["blocked_by"] is None
        for t in tasks:
            if t["status"] == "running":
                continue
            if t["account_id"] == running[0]["account_id"]:
                assert t["blocked_by"] == f"lock held by setup task {running[0]['id']}", t
            else:
                assert t["blocked_by"] == "queue full", t
        gate.set()

        async def all_done() -> bool:
            return all(t["status"] == "done" for t in await run.tasks())

        await wait_for(all_done, "all tasks done")
        spans = check_intervals(await run.events(), {"fast": 1, "media": 4})
        assert spans.peak["fast"] == 1 and sum(spans.starts.values()) == 4 * len(live)


# -- operator commands -----------------------------------------------------------------------------


async def test_operator_retry_and_listings(setup_daemon: Any, media_set: Media) -> None:
    async with setup_daemon(
            simulator={"accounts": 7, "seed": 9, **QUIET}, limits={"peer_flood_cooldown_seconds": 5000},
            setup={"enabled": True, "retry": {"backoff_seconds": [1000]},
                   "profile": {"first_name": NAME[0], "last_name": NAME[1]},
                   "media": {"default_jpg_path": str(media_set.jpg)}},
    ) as run:
        flaky, spammy, *rest = run.live()
        run.sim.fail("get_me", flaky, lambda: rpc_error(400, "FIRSTNAME_INVALID"))  # input: failed at once
        run.sim.fail("get_privacy:last_seen", flaky, rpc_call_fail)  # transient: retry in 1000 s
        run.sim.once[spammy.tg_user_id] = peer_flood  # whichever of its tasks runs first meets it

        async def settled() -> bool:
            f, s = await run.by_type(flaky), await run.by_type(spammy)
            others = [t for a in rest for t in (await run.by_type(a)).values()]
            return (len(others) == 5 * len(rest) and all(t["status"] == "done" for t in others)
                    and f.get("update_name", {}).get("status") == "failed"
                    and f.get("privacy_last_seen_everybody", {}).get("status") == "retry"
                    and sum(t["status"] == "done" for t in f.values()) == 3
                    and any(t["last_error_code"] == "PEER_FLOOD" for t in s.values()))

        await wait_for(settled, "the scripted accounts to settle")
        spammy_row = await run.account_row(spammy)
        assert spammy_row["cooldown_reason"] == "PEER_FLOOD"
        start, peer = [e for e in await run.events() if e["account_id"] == run.id(spammy)]
        assert (start["kind"], peer["kind"]) == ("setup.started", "setup.retry")
        # limits.peer_flood_cooldown_seconds from a moment between the start and the retry event
        assert spammy_row["cooldown_until"] - peer["at"] <= 5000.0 <= spammy_row["cooldown_until"] - start["at"]
        retrying, spam_tasks, failed, listing = await asyncio.gather(
            run.cli_json("tasks", "list", "--account", str(run.id(flaky)), "--status", "retry"),
            run.cli_json("tasks", "list", "--account", str(run.id(spammy))),
            run.cli_json("tasks", "list", "--status", "failed"),
            run.cli_json("accounts", "list"))
        assert [(t["task_type"], t["attempts"], t["last_error_code"]) for t in retrying] == [
            ("privacy_last_seen_everybody", 1, "RPC_CALL_FAIL")]
        assert retrying[0]["blocked_by"].startswith("retry_at ")
        assert [(t["account_id"], t["task_type"], t["attempts"], t["last_error_code"]) for t in failed] == [
            (run.id(flaky), "update_name", 1, "FIRSTNAME_INVALID")]
        assert sorted((t["status"], t["attempts"], t["last_error_code"]) for t in spam_tasks) == [
            ("pending", 0, None)] * 4 + [("retry", 0, "PEER_FLOOD")]
        (spam_task,) = [t for t in spam_tasks if t["status"] == "retry"]
        assert all(t["blocked_by"].startswith("cooldown until") and "PEER_FLOOD" in t["blocked_by"]
                   for t in spam_tasks)
        progress = {a["id"]: a["setup"] for a in listing}
        assert progress[run.id(flaky)] == {"done": 3, "total": 5}
        assert progress[run.id(spammy)] == {"done": 0, "total": 5}
        assert all(progress[run.id(a)] == {"done": 5, "total": 5} for a in rest)
        assert all(progress[run.id(a)] == {"done": 0, "total": 0} for a in run.sim.accounts if a.is_probe)

        # retry: failed and waiting tasks due now with attempts reset; they run (the faults are spent)
        code, out, err = await run.cli("accounts", "retry", str(run.id(flaky)))
        assert (code, out.strip()) == (0, f"account {run.id(flaky)}: 2 setup tasks due now"), err

        async def flaky_done() -> dict[str, dict[str, Any]] | None:
            f = await run.by_type(flaky)
            return f if all(t["status"] == "done" for t in f.values()) else None

        f = await wait_for(flaky_done, "the retried account to converge")
        assert f["update_name"]["attempts"] == 1 and f["privacy_last_seen_everybody"]["attempts"] == 1
        requested = [e for e in await run.events("setup.retry_requested") if e["account_id"] == run.id(flaky)]
        assert [e["data"] for e in requested] == [{"tasks": 2}]

        # retry in a cooldown: due as far as the task goes, but the cooldown stays and holds it
        code, out, _ = await run.cli("accounts", "retry", str(run.id(spammy)))
        assert (code, out.strip()) == (0, f"account {run.id(spammy)}: 1 setup tasks due now")
        s = (await run.by_type(spammy))[spam_task["task_type"]]
        assert (s["status"], s["attempts"], s["retry_at"]) == ("retry", 0, None)
        assert s["blocked_by"].startswith("cooldown until")
        assert (await run.account_row(spammy))["cooldown_until"] == spammy_row["cooldown_until"]
        (listed,) = [a for a in await run.cli_json("accounts", "list") if a["id"] == run.id(spammy)]
        assert (listed["state"], listed["setup"]) == ("cooldown", {"done": 0, "total": 5})
        started = [e for e in await run.events() if e["kind"] == "setup.started" and e["account_id"] == run.id(spammy)]
        assert len(started) == 1  # only the attempt that met PEER_FLOOD
        check_intervals(await run.events(), {"fast": 32, "media": 4})


# -- a stop mid-post, and concurrent GIF conversions ---------------------------------------------


async def test_a_photo_posted_by_an_attempt_cut_off_at_shutdown_is_not_posted_again(
        setup_daemon: Any, media_set: Media, tmp_path: Path) -> None:
    """A stop cancels a task whose upload landed; its attempt is refunded, yet the next run must still look
    for the post by date (before 07adf14 it posted the photo a second time)."""
    # a drain of shutdown_timeout/4 = 1 s: the hanging task is cancelled then, well before the store closes
    sections = {"daemon": {"shutdown_timeout_seconds": 4.0}, "simulator": {"accounts": 3, "seed": 6, **QUIET},
                "setup": {"enabled": True, "media": {"default_jpg_path": str(media_set.jpg)}}}
    async with setup_daemon(**sections) as run:
        sim = run.sim
        a = run.live()[0]
        sim.hang_after.add("set_profile_photo:photo")  # the upload lands, the answer never comes

        async def posted() -> bool:
            return any(m.source == media_set.jpg.name for m in sim.profile(a.tg_user_id).photos)

        await wait_for(posted, "the photo to be posted")
    db = sqlite3.connect(tmp_path / "data" / DB_NAME)
    try:
        row = db.execute("SELECT status, attempts, last_error FROM account_tasks WHERE account_id = ?"
                         " AND task_type = 'set_photo_jpg'", (run.id(a),)).fetchone()
    finally:
        db.close()
    assert row == ("retry", 0, "the daemon stopped during the task")  # cut off, and the attempt refunded
    sim.hang_after.clear()
    async with setup_daemon(sim=sim, **sections) as run:

        async def jpg_done() -> bool:
            return (await run.by_type(a)).get("set_photo_jpg", {}).get("status") == "done"

        await wait_for(jpg_done, "the photo task to finish")
        mine = [m for m in sim.profile(a.tg_user_id).photos if m.source == media_set.jpg.name]
        assert len(mine) == 1, mine


BARRIER_FFMPEG = """#!/bin/sh
# Hold each conversion until two have started (at most ~3 s), so that two always overlap.
touch "{dir}/started.$$"
i=0
while [ "$(ls "{dir}" | grep -c '^started')" -lt 2 ] && [ $i -lt 60 ]; do sleep 0.05; i=$((i+1)); done
exec "{ffmpeg}" "$@"
"""


async def test_concurrent_gif_conversions_all_succeed(setup_daemon: Any, media_set: Media, tmp_path: Path) -> None:
    """Two set_photo_gif tasks convert the same GIF at once (before 07adf14 they shared one partial file
    and the loser failed for good with MEDIA_INVALID)."""
    marks = tmp_path / "marks"
    marks.mkdir()
    wrapper = tmp_path / "ffmpeg"
    wrapper.write_text(BARRIER_FFMPEG.format(dir=marks, ffmpeg=FFMPEG))
    wrapper.chmod(0o755)
    async with setup_daemon(simulator={"accounts": 4, "seed": 8, **QUIET}, setup={
            "enabled": True, "queues": {"media_concurrency": 2},
            "media": {"default_gif_path": str(media_set.gif), "ffmpeg_path": str(wrapper)}}) as run:

        async def settled() -> list[dict[str, Any]]:
            gifs = [t for t in await run.tasks() if t["task_type"] == "set_photo_gif"]
            return gifs if len(gifs) == len(run.live()) and all(t["status"] in ("done", "failed") for t in gifs) else []

        gifs = await wait_for(settled, "the GIF tasks to finish")
        assert len(list(marks.iterdir())) >= 2  # the scenario happened: two conversions overlapped
        assert [(t["status"], t["last_error_code"]) for t in gifs] == [("done", None)] * len(gifs)


async def test_the_account_list_shows_the_name_update_name_set(setup_daemon: Any) -> None:
    async with setup_daemon(simulator={"accounts": 3, "seed": 12, **QUIET}, setup={
            "enabled": True, "profile": {"first_name": NAME[0], "last_name": NAME[1]}}) as run:
        a = run.live()[0]

        async def named() -> bool:
            return (await run.by_type(a)).get("update_name", {}).get("status") == "done"

        await wait_for(named, "update_name done")
        assert (run.sim.profile(a.tg_user_id).first_name, run.sim.profile(a.tg_user_id).last_name) == NAME
        assert (await run.client.account(run.id(a)))["name"] == " ".join(NAME)


class ForgetfulSimulator(Simulator):
    """Records which accounts the scheduler told the gateway to let go of."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.forgotten: list[int] = []

    async def forget(self, account_id: int) -> None:
        self.forgotten.append(account_id)


async def dispatched(store: SQLiteStore, sim: Simulator, tmp_path: Path) -> SetupScheduler:
    """A scheduler (setup on, defaults otherwise) over the simulator's accounts, their tasks dispatched."""
    async with store.tx() as tx:
        await store.insert_accounts(tx, ({"phone": a.phone, "tg_user_id": a.tg_user_id, "label": a.label,
                                          "is_probe": int(a.is_probe), "profile_json": "{}"} for a in sim.seeds()))
    scheduler = SetupScheduler(config.load(None, env={}, overrides={"setup": {"enabled": True}}), store, sim,
                               tmp_path / "media")
    await scheduler.dispatch()
    return scheduler


async def test_a_dead_account_is_let_go_by_the_gateway(tmp_path: Path) -> None:
    cfg = SimulatorConfig(accounts=12, seed=5, dead_fraction=0.2, latency_min_ms=0, latency_max_ms=0,
                          flood_wait_rate=0, peer_flood_rate=0, transient_rate=0)
    sim = ForgetfulSimulator(cfg)
    store = await SQLiteStore.open(tmp_path / "db.sqlite3")
    try:
        scheduler = await dispatched(store, sim, tmp_path)
        dead = {row["id"] for row in await store.read("SELECT id, tg_user_id FROM accounts")
                if any(a.dead and a.tg_user_id == row["tg_user_id"] for a in sim.accounts)}
        assert dead
        for _ in range(50):  # bounded: claim and run until every dead account has been disabled
            for task in await store.claim_setup(list(TASKS), 100, 60):
                await scheduler._execute(task)
            if dead <= set(sim.forgotten):
                break
        assert set(sim.forgotten) == dead
        disabled = {r[0] for r in await store.read("SELECT id FROM accounts WHERE disabled_at IS NOT NULL")}
        assert disabled == dead
    finally:
        await store.close()


async def test_a_claim_in_flight_at_stop_goes_back_to_retry_even_when_the_idle_queue_stops_first(
        tmp_path: Path) -> None:
    """The stop cancels both queue loops; the media one (idle) ends at once, which used to end the run's gather
    and cancel the fast loop a second time while its claim was being written: the claimed tasks stayed
    'running' with their locks held (seen in CI as a task left running after SIGTERM)."""
    cfg = SimulatorConfig(accounts=3, seed=5, dead_fraction=0, latency_min_ms=0, latency_max_ms=0,
                          flood_wait_rate=0, peer_flood_rate=0, transient_rate=0)
    sim = Simulator(cfg)
    store = await SQLiteStore.open(tmp_path / "db.sqlite3")
    try:
        scheduler = await dispatched(store, sim, tmp_path)
        claimed, answer = asyncio.Event(), asyncio.Event()
        real_claim = store.claim_setup
        due = {r["task_type"] for r in await store.read("SELECT task_type FROM account_tasks")}
        assert due and {TASKS[t].queue for t in due} == {"fast"}  # the media queue has nothing to do

        async def slow_claim(types: Any, limit: int, lock_seconds: float, **kw: Any) -> list[ClaimedTask]:
            if not due & set(types):
                return []  # the media queue: nothing to claim, so it waits for a wake (and is cancelled at once)
            got = await real_claim(types, limit, lock_seconds, **kw)  # committed: the tasks are 'running'
            claimed.set()
            await answer.wait()  # the answer is on its way back when the stop lands
            return got

        store.claim_setup = slow_claim  # type: ignore[method-assign]
        run = asyncio.create_task(scheduler.run())
        await asyncio.wait_for(claimed.wait(), 10)
        running = await store.read("SELECT id FROM account_tasks WHERE status = 'running'")
        assert running  # the claim took some
        run.cancel()
        await asyncio.sleep(0.05)  # the fast loop's end has been seen by now
        answer.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(run, 10)
        left = await store.read("SELECT id FROM account_tasks WHERE status = 'running'")
        assert left == []
        ids = ",".join(str(r["id"]) for r in running)
        back = await store.read(f"SELECT status, attempts, last_error FROM account_tasks WHERE id IN ({ids})")
        assert {tuple(r) for r in back} == {("retry", 0, "the daemon stopped")}
        assert await store.read("SELECT holder FROM account_locks") == []
    finally:
        await store.close()
