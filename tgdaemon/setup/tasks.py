"""The setup tasks (eight, and the opt-in terminate_other_sessions). Each reads the account's current state first and skips what already holds.

A task returns its result (``meta``, and the id of a photo or story it made)
or raises; the scheduler classifies what it raises. A photo or story task
records what it created, and on a retry looks for it (by id, or by date for
an attempt that crashed before recording it) before posting anything.

Every account's media task posts one of the same four files: a file is probed
(or converted) once, and again only when its size or mtime changed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from telethon.errors import BadRequestError, RPCError

from tgdaemon import media
from tgdaemon.classify import TaskWait, classify
from tgdaemon.config import SetupConfig
from tgdaemon.gateway.base import (
    AccountRef,
    Gateway,
    MediaFile,
    Owned,
    PrivacyKey,
    PrivacyValue,
)
from tgdaemon.logredact import REDACTOR
from tgdaemon.setup.secrets import PasswordSource
from tgdaemon.store import ClaimedTask
from tgdaemon.timeutil import iso

Result = dict[str, Any]


class MediaProbes:
    """What probing (or converting) each media file gave, with the size and mtime the file had then."""

    def __init__(self) -> None:
        self._found: dict[tuple[Path, str], tuple[tuple[int, int], MediaFile]] = {}

    async def get(self, path: Path, how: str, probe: Callable[[], MediaFile]) -> MediaFile:
        """``probe()``'s result for the file as it is now: in a thread (it reads the file, converting runs
        ffmpeg), unless the file is unchanged since, by a stat, and what it gave is still there. Failures
        are not kept: the next task probes again and says what is wrong."""
        try:
            info = path.stat()
        except OSError:
            return await asyncio.to_thread(probe)  # which raises, naming the problem
        stamp = (info.st_size, info.st_mtime_ns)
        found = self._found.get((path, how))
        if found is not None and found[0] == stamp and (found[1].path == path or found[1].path.exists()):
            return found[1]
        file = await asyncio.to_thread(probe)
        self._found[(path, how)] = (stamp, file)
        return file


@dataclass(frozen=True, slots=True)
class TaskContext:
    gateway: Gateway
    account: AccountRef
    task: ClaimedTask
    cfg: SetupConfig
    passwords: PasswordSource
    workdir: Path
    media: MediaProbes = field(default_factory=MediaProbes)  # the scheduler's, shared by its tasks


def skipped(why: str, **result: Any) -> Result:
    return {**result, "meta": {"skipped": why}}


async def ensure_2fa(ctx: TaskContext) -> Result:
    if await ctx.gateway.has_2fa(ctx.account):
        return skipped("2FA is already on")
    if not ctx.cfg.twofa.enable:
        return {"meta": {"checked": True, "has_password": False, "note": "setup.2fa.enable is off"}}
    password = await ctx.passwords.password_for(ctx.account.id, ctx.account.phone)
    with REDACTOR.secret(password):
        await ctx.gateway.enable_2fa(ctx.account, password)
    return {"meta": {"enabled": True}}


async def update_name(ctx: TaskContext) -> Result:
    first = ctx.task.profile.get("first_name") or ctx.task.payload.get("first_name") or ""
    last = ctx.task.profile.get("last_name") or ctx.task.payload.get("last_name") or ""
    if not first:
        return skipped("no name declared (setup.profile or the account's overrides)")
    me = await ctx.gateway.get_me(ctx.account)
    if (me.first_name, me.last_name) == (first, last):
        return skipped("the name is already set", name=[first, last])
    await ctx.gateway.set_name(ctx.account, first, last)
    return {"name": [first, last], "meta": {"first_name": first, "last_name": last}}


def privacy_task(key: PrivacyKey, value: PrivacyValue) -> Callable[[TaskContext], Awaitable[Result]]:
    async def run(ctx: TaskContext) -> Result:
        if await ctx.gateway.get_privacy(ctx.account, key) == value:
            return skipped(f"{key} is already visible to {value}")
        await ctx.gateway.set_privacy(ctx.account, key, value)
        return {"meta": {str(key): str(value)}}

    return run


def _made_by_this_task(owned: list[Owned], ctx: TaskContext, key: str, video: bool) -> Owned | None:
    """What an earlier attempt of this task made: the recorded id, or (when an earlier attempt was
    cut off before recording it) one of the same kind made since the task first started."""
    recorded = ctx.task.result.get(key)
    for item in owned:
        if item.id == recorded:
            return item
    if ctx.task.resumed:
        return next((item for item in owned if item.date >= ctx.task.started_at - 1
                     and item.video in (None, video)), None)
    return None


def photo_task(animated: bool) -> Callable[[TaskContext], Awaitable[Result]]:
    async def run(ctx: TaskContext) -> Result:
        path = Path(ctx.task.payload["path"])
        ffmpeg = ctx.cfg.media.ffmpeg_path or None
        file = await (ctx.media.get(path, f"avatar in {ctx.workdir} by {ffmpeg}",
                                    lambda: media.animated_avatar(path, ctx.workdir, ffmpeg))
                      if animated else ctx.media.get(path, "photo", lambda: media.probe(path, "photo")))
        if mine := _made_by_this_task(await ctx.gateway.profile_photos(ctx.account), ctx, "photo_id", animated):
            return skipped("this task's photo is already on the profile", photo_id=mine.id)
        photo_id = await ctx.gateway.set_profile_photo(ctx.account, file)
        return {"photo_id": photo_id, "meta": {"path": str(path), "animated": animated}}

    return run


def story_task(kind: str) -> Callable[[TaskContext], Awaitable[Result]]:
    async def run(ctx: TaskContext) -> Result:
        path = Path(ctx.task.payload["path"])
        probed: Literal["photo", "video"] = "video" if kind == "video" else "photo"
        file = await ctx.media.get(path, probed, lambda: media.probe(path, probed))
        if mine := _made_by_this_task(await ctx.gateway.my_stories(ctx.account), ctx, "story_id", kind == "video"):
            return skipped("this task's story is already posted", story_id=mine.id)
        if not await ctx.gateway.can_send_story(ctx.account):
            raise BadRequestError(None, "STORIES_TOO_MUCH")  # the account's story limit: a wait, classified so
        story_id = await ctx.gateway.send_story(ctx.account, file)
        return {"story_id": story_id, "meta": {"path": str(path)}}

    return run


FRESH_RESET = "FRESH_RESET_AUTHORISATION_FORBIDDEN"
FRESH_SESSION_SECONDS = 86400  # Telegram: a session ends the others only once it is 24 hours old


async def terminate_other_sessions(ctx: TaskContext) -> Result:
    """Every authorization but the daemon's own ended, one by one; the current one never (nor hash 0, which
    names it). A session younger than 24 hours may not do this: the task waits until it is 24 hours old
    (TaskWait: no cooldown, no attempt spent), and on its retry reads the sessions again."""
    sessions = await ctx.gateway.authorizations(ctx.account)
    others = [s for s in sessions if not s.current and s.hash]
    if not others:
        return skipped("no other sessions", sessions=len(sessions))
    own = next((s for s in sessions if s.current), None)
    ended: list[str] = []
    for session in others:
        try:
            await ctx.gateway.reset_authorization(ctx.account, session.hash)
        except RPCError as exc:
            if classify(exc).code != FRESH_RESET:
                raise
            until = (own.created if own is not None and own.created else time.time()) + FRESH_SESSION_SECONDS
            raise TaskWait(FRESH_RESET, until, f"the daemon's session is younger than 24 hours: Telegram lets it end"
                           f" other sessions from {iso(until)}; the task waits until then") from None
        ended.append(f"{session.app_name} {session.app_version} on {session.device_model}".strip())
    return {"meta": {"ended": len(ended), "sessions": ended}}


@dataclass(frozen=True, slots=True)
class TaskSpec:
    queue: str
    run: Callable[[TaskContext], Awaitable[Result]]
    media_key: str | None = None  # the [setup.media] key whose file the task needs; None: always required
    switch: Callable[[SetupConfig], bool] | None = None  # an opt-in task: required only while this says so

    def required(self, cfg: SetupConfig) -> bool:
        if self.switch is not None:
            return self.switch(cfg)
        return self.media_key is None or bool(getattr(cfg.media, self.media_key))

    def payload(self, cfg: SetupConfig) -> dict[str, Any]:
        if self.media_key is not None:
            return {"path": str(Path(getattr(cfg.media, self.media_key)).expanduser())}
        if self.run is update_name:
            return {"first_name": cfg.profile.first_name, "last_name": cfg.profile.last_name}
        return {}


TASKS: dict[str, TaskSpec] = {
    "ensure_2fa": TaskSpec("fast", ensure_2fa),
    "update_name": TaskSpec("fast", update_name),
    "privacy_phone_hidden": TaskSpec("fast", privacy_task(PrivacyKey.PHONE_NUMBER, PrivacyValue.NOBODY)),
    "privacy_last_seen_everybody": TaskSpec("fast", privacy_task(PrivacyKey.LAST_SEEN, PrivacyValue.EVERYBODY)),
    "set_photo_jpg": TaskSpec("media", photo_task(animated=False), "default_jpg_path"),
    "set_photo_gif": TaskSpec("media", photo_task(animated=True), "default_gif_path"),
    "story_image": TaskSpec("media", story_task("image"), "story_image_path"),
    "story_video": TaskSpec("media", story_task("video"), "story_video_path"),
    "terminate_other_sessions": TaskSpec("fast", terminate_other_sessions,
                                         switch=lambda cfg: cfg.sessions.terminate_others),
}
QUEUES = ("fast", "media")


def required_tasks(cfg: SetupConfig) -> dict[str, dict[str, Any]]:
    """Task type → payload, for every task this config requires of each account."""
    return {name: spec.payload(cfg) for name, spec in TASKS.items() if spec.required(cfg)}
