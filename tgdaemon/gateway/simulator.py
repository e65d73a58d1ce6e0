"""The in-process Telegram for ``tgdaemon demo`` and the tests.

It raises Telethon's own error classes at the configured rates, so the daemon's
error handling runs the same code path as in production. Faults are
deterministic per account under the seed: the n-th call of an account in one
process always has the same outcome, however calls of different accounts interleave.

Started with a store (a daemon), the world's changing part lives in the store,
shared with every daemon on it: profiles, and connections that refuse a second
live one per account with ``AUTH_KEY_DUPLICATED`` (tgdaemon/gateway/simshare.py).
Used without one (tests of the simulator itself), it is one process's, in memory.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec
from telethon import errors
from telethon.tl import types

from tgdaemon.classify import NO_2FA_PASSWORD, TaskInputError
from tgdaemon.config import SimulatorConfig, TelegramConfig
from tgdaemon.gateway import gate
from tgdaemon.gateway.base import (
    AccountRef,
    Authorization,
    Channel,
    ChannelStats,
    Gateway,
    Me,
    MediaFile,
    Owned,
    PostStats,
    PrivacyKey,
    PrivacyValue,
    parse_target,
)
from tgdaemon.gateway.simshare import SharedWorld
from tgdaemon.gateway.simworld import (
    AVATAR_VIDEO_MAX_SECONDS,
    FREEZE_APPEAL_URL,
    PRIVATE_CHANNEL,
    SPAMBOT_BLOCKED,
    SPAMBOT_FREE,
    SPAMBOT_LIMITED,
    SPAMBOT_LIMITED_UNTIL,
    STORY_LIMIT,
    WORLD_EPOCH,
    WORLD_KEYS,
    SimAccount,
    SimChannel,
    SimMedia,
    SimProfile,
    build_accounts,
    build_channels,
    health_state,
    initial_profile,
    initial_sessions,
    unit,
)
from tgdaemon.store import Store

NAME_MAX = 64  # Telegram's limit on first and last names
FRESH_RESET_SECONDS = 86400  # a session younger than this may not end the others
ANY_API_ID = 2040  # the api_id the simulated sessions of other apps show
SETTABLE_PRIVACY = (PrivacyValue.EVERYBODY, PrivacyValue.CONTACTS, PrivacyValue.NOBODY)


def rpc_error(code: int, message: str) -> errors.RPCError:
    """The exception Telethon builds from this RPC error on the wire (a plain class when Telethon has none)."""
    return errors.rpc_message_to_error(types.RpcError(code, message), None)


class Simulator(Gateway):
    name = "simulator"

    def __init__(self, cfg: SimulatorConfig, *, clock: Callable[[], float] = time.time,
                 chosen: Mapping[str, str] | None = None, node: str = "local",
                 idle_seconds: float = TelegramConfig().idle_disconnect_seconds, pid: int | None = None) -> None:
        """``node`` names this process's connections on the record (the daemon's node; it may set it before
        ``start``); ``pid`` is the process they belong to: this one, unless a test runs two simulators in
        one process, each standing for the process whose pid it is given."""
        self._clock = clock
        # The world keys the operator set, and where (e.g. "command line"): a data dir's recorded world
        # replaces the defaults, never these (lifecycle.worlds).
        self.chosen = {key: origin for key, origin in (chosen or {}).items() if key in WORLD_KEYS}
        self.node = node
        self.pid = os.getpid() if pid is None else pid
        self.idle_seconds = idle_seconds
        self.shared: SharedWorld | None = None  # with a store: the world every process on it shares
        self._tg_user_ids: dict[int, int] = {}  # store account id -> tg_user_id: forget names the account by id
        self._build(cfg)

    def world(self) -> dict[str, Any]:
        """What shapes the accounts this simulator seeds: a data dir keeps it, so that its accounts stay alive."""
        return {key: getattr(self.cfg, key) for key in WORLD_KEYS}

    def adopt(self, world: Mapping[str, Any]) -> None:
        """Become the world a data dir recorded; called before the gateway starts."""
        self._build(msgspec.structs.replace(self.cfg, **{k: v for k, v in world.items() if k in WORLD_KEYS}))

    def _build(self, cfg: SimulatorConfig) -> None:
        self.cfg = cfg
        self.accounts = build_accounts(cfg)
        self.channels = build_channels(cfg)
        self._accounts = {a.tg_user_id: a for a in self.accounts}
        self._by_username = {c.username.lower(): c for c in self.channels}
        self._by_invite = {c.invite_hash: c for c in self.channels}
        self._by_peer = {c.peer_id: c for c in self.channels}
        # Profiles are made on first use: a 200k-account world should not cost 200k dicts.
        self._profiles: dict[int, SimProfile] = {}
        # A call counter, not a random.Random, per account: one int instead of 2.5 KB each.
        self._calls: dict[int, int] = {}
        self._latency = random.Random(f"{cfg.seed}:latency")

    async def start(self, store: Store) -> None:
        self.shared = SharedWorld(store, node=self.node, pid=self.pid, server_timeout=self.cfg.server_timeout_seconds,
                                  idle_seconds=self.idle_seconds)
        self.shared.start()

    async def close(self) -> None:
        if self.shared is not None:
            await self.shared.stop()

    async def forget(self, account_id: int) -> None:
        if self.shared is not None and (tg_user_id := self._tg_user_ids.get(account_id)) is not None:
            await self.shared.close(tg_user_id, "forgotten")

    def seeds(self) -> list[SimAccount]:
        """The accounts to seed a fresh data dir with."""
        return list(self.accounts)

    def channel_usernames(self) -> list[str]:
        return [c.username for c in self.channels]

    def describe(self) -> dict[str, object]:
        """What ``tgdaemon status`` shows of the simulated world: the channels to point quotas at."""
        return {"seed": self.cfg.seed, "accounts": len(self.accounts), "channels": self.channel_usernames()}

    def profile(self, tg_user_id: int) -> SimProfile:
        """The account's mutable profile as this process has it (the store's as of its connection's
        opening, and this process's changes since); raises KeyError for an unknown account."""
        if (profile := self._profiles.get(tg_user_id)) is None:
            profile = self._profiles[tg_user_id] = initial_profile(self.cfg.seed, self._accounts[tg_user_id],
                                                                   self._clock())
        if not profile.sessions:  # stored before sessions were kept
            profile.sessions = initial_sessions(self.cfg.seed, self._accounts[tg_user_id], self._clock())
        return profile

    def _install(self, tg_user_id: int, stored: str | None) -> None:
        """A connection opened: the profile the store has (another process may have changed it) replaces
        this process's; none stored yet, this process's stands (the seeded one, at first)."""
        if stored is not None:
            self._profiles[tg_user_id] = msgspec.json.decode(stored, type=SimProfile)

    async def _changed(self, tg_user_id: int) -> None:
        """Every change is written through before the call returns: the account may move next."""
        if self.shared is not None:
            await self.shared.save(tg_user_id, msgspec.json.encode(self._profiles[tg_user_id]).decode())

    async def get_me(self, account: AccountRef) -> Me:
        sim = await self._call(account)
        profile = self.profile(sim.tg_user_id)
        return Me(sim.tg_user_id, sim.phone, profile.first_name, profile.last_name, None)

    async def resolve_channel(self, account: AccountRef, target: str) -> Channel:
        sim = await self._call(account)
        name, is_invite = parse_target(target)
        if name is None:
            raise errors.UsernameInvalidError(request=None)
        if is_invite:
            if (channel := self._by_invite.get(name)) is None:
                raise errors.InviteHashExpiredError(request=None)
        elif (channel := self._by_username.get(name)) is None:
            if name == PRIVATE_CHANNEL:
                raise errors.ChannelPrivateError(request=None)
            raise errors.UsernameNotOccupiedError(request=None)
        return channel.as_seen_by(sim.tg_user_id)

    async def last_post_ids(self, account: AccountRef, channel: Channel, n: int) -> list[int]:
        sim_channel = self._channel(await self._call(account), channel)
        count = sim_channel.post_count(self._clock())
        return list(range(count, max(0, count - n), -1))

    async def post_stats(self, account: AccountRef, channel: Channel, post_id: int) -> PostStats:
        sim_channel = self._channel(await self._call(account), channel)
        now = self._clock()
        if not 1 <= post_id <= sim_channel.post_count(now):
            raise errors.MsgIdInvalidError(request=None)
        return sim_channel.post_stats(post_id, now, self.cfg.views_per_minute)

    async def channel_stats(self, account: AccountRef, channel: Channel) -> ChannelStats:
        sim_channel = self._channel(await self._call(account), channel)
        return sim_channel.stats(self._clock())

    # -- setup: what an owner does to their own account ---------------------------------------------

    async def has_2fa(self, account: AccountRef) -> bool:
        return self.profile((await self._call(account)).tg_user_id).has_password

    async def enable_2fa(self, account: AccountRef, password: str) -> None:
        if not password:
            raise TaskInputError(NO_2FA_PASSWORD, "an empty 2FA password would set none")
        sim = await self._call(account)
        profile = self.profile(sim.tg_user_id)
        if profile.has_password:
            # What Telegram answers to a new password sent without proof of the current one.
            raise errors.PasswordHashInvalidError(request=None)
        profile.has_password = True  # the password itself is not kept, as on Telegram's side
        await self._changed(sim.tg_user_id)

    async def set_name(self, account: AccountRef, first_name: str, last_name: str) -> None:
        sim = await self._call(account)
        profile = self.profile(sim.tg_user_id)
        if not first_name.strip() or len(first_name) > NAME_MAX:
            raise rpc_error(400, "FIRSTNAME_INVALID")
        if len(last_name) > NAME_MAX:
            raise errors.LastnameInvalidError(request=None)
        profile.first_name, profile.last_name = first_name, last_name
        await self._changed(sim.tg_user_id)

    async def get_privacy(self, account: AccountRef, key: PrivacyKey) -> PrivacyValue:
        profile = self.profile((await self._call(account)).tg_user_id)
        return PrivacyValue(profile.privacy[PrivacyKey(key)])

    async def set_privacy(self, account: AccountRef, key: PrivacyKey, value: PrivacyValue) -> None:
        if value not in SETTABLE_PRIVACY:
            raise ValueError(f"cannot set privacy to {value!r}: only {', '.join(SETTABLE_PRIVACY)}")
        sim = await self._call(account)
        profile = self.profile(sim.tg_user_id)
        profile.privacy[PrivacyKey(key).value] = PrivacyValue(value).value
        await self._changed(sim.tg_user_id)

    async def profile_photos(self, account: AccountRef) -> list[Owned]:
        profile = self.profile((await self._call(account)).tg_user_id)
        return [photo.owned() for photo in profile.photos]

    async def set_profile_photo(self, account: AccountRef, media: MediaFile) -> int:
        sim = await self._call(account)
        profile = self.profile(sim.tg_user_id)
        if media.kind == "video":
            if media.width != media.height or not 0 < media.duration <= AVATAR_VIDEO_MAX_SECONDS:
                raise errors.VideoFileInvalidError(request=None)
        elif media.width <= 0 or media.height <= 0 or media.width + media.height > 10_000 \
                or max(media.width, media.height) > 20 * min(media.width, media.height):
            raise errors.PhotoInvalidDimensionsError(request=None)
        photo = SimMedia(profile.new_id(), self._clock(), media.kind, media.path.name)
        profile.photos.insert(0, photo)
        await self._changed(sim.tg_user_id)
        return photo.id

    async def can_send_story(self, account: AccountRef) -> bool:
        profile = self.profile((await self._call(account)).tg_user_id)
        return len(profile.active_stories(self._clock())) < STORY_LIMIT

    async def my_stories(self, account: AccountRef) -> list[Owned]:
        profile = self.profile((await self._call(account)).tg_user_id)
        return [story.owned() for story in profile.active_stories(self._clock())]

    async def send_story(self, account: AccountRef, media: MediaFile) -> int:
        sim = await self._call(account)
        profile = self.profile(sim.tg_user_id)
        now = self._clock()
        active = profile.active_stories(now)
        if len(active) >= STORY_LIMIT:
            raise rpc_error(400, "STORIES_TOO_MUCH")  # no Telethon class: a plain BadRequestError
        story = SimMedia(profile.new_id(), now, media.kind, media.path.name)
        profile.stories = [story, *active]  # expired stories are gone, as on Telegram
        await self._changed(sim.tg_user_id)
        return story.id

    # -- health and sessions ---------------------------------------------------------------------------

    def health(self, tg_user_id: int) -> str:
        """The account's health in this world (simworld.health_state): what a check should find."""
        return health_state(self.cfg, self._accounts[tg_user_id])

    async def app_config(self, account: AccountRef) -> dict[str, Any]:
        sim = await self._call(account)
        config: dict[str, Any] = {"reactions_uniq_max": 11, "stories_all_hidden": False}
        if self.health(sim.tg_user_id) == "frozen":
            since = WORLD_EPOCH + int(unit(self.cfg.seed, sim.tg_user_id, "frozen at") * 300) * 86400
            config.update(freeze_since_date=int(since), freeze_until_date=int(since + 30 * 86400),
                          freeze_appeal_url=FREEZE_APPEAL_URL)
        return config

    async def authorizations(self, account: AccountRef) -> list[Authorization]:
        sim = await self._call(account)
        self._refuse_frozen(sim)
        return [Authorization(s.hash, s.hash == 0, s.device_model, s.platform, "", s.app_name, s.app_version,
                              ANY_API_ID, s.hash != 0, s.country, "", s.created, s.active)
                for s in self.profile(sim.tg_user_id).sessions]

    async def reset_authorization(self, account: AccountRef, hash: int) -> None:
        sim = await self._call(account)
        self._refuse_frozen(sim)
        profile = self.profile(sim.tg_user_id)
        own = next(s for s in profile.sessions if s.hash == 0)
        if hash == 0 or not any(s.hash == hash for s in profile.sessions):
            raise rpc_error(400, "HASH_INVALID")
        if own.created > self._clock() - FRESH_RESET_SECONDS:
            raise errors.FreshResetAuthorisationForbiddenError(request=None)
        profile.sessions = [s for s in profile.sessions if s.hash != hash]
        await self._changed(sim.tg_user_id)

    async def ask_spambot(self, account: AccountRef, wait_seconds: float) -> str | None:
        sim = await self._call(account)
        state = self.health(sim.tg_user_id)
        if state == "limited":
            day = int(self._clock() // 86400) + 2 + int(unit(self.cfg.seed, sim.tg_user_id, "limit days") * 14)
            until = datetime.fromtimestamp(day * 86400 + 12 * 3600 + 30 * 60, UTC)
            return SPAMBOT_LIMITED_UNTIL.format(until=f"{until.day} {until:%b %Y, %H:%M} UTC")
        return {"hard_limited": SPAMBOT_LIMITED, "frozen": SPAMBOT_BLOCKED}.get(state, SPAMBOT_FREE)

    def _refuse_frozen(self, sim: SimAccount) -> None:
        """A frozen account may read its app configuration and talk to @SpamBot; account methods refuse it."""
        if self.health(sim.tg_user_id) == "frozen":
            raise errors.FrozenMethodInvalidError(request=None)

    # -- internals -------------------------------------------------------------------------------------

    async def _call(self, account: AccountRef) -> SimAccount:
        """What every call goes through: the gate, latency, the account's connection, then its faults."""
        gate.check(self.gate, account.id)
        if self.cfg.latency_max_ms > 0:
            low, high = sorted((self.cfg.latency_min_ms, self.cfg.latency_max_ms))
            await asyncio.sleep(self._latency.uniform(low, high) / 1000)
        sim = self._accounts.get(account.tg_user_id) if account.tg_user_id is not None else None
        if sim is None:
            raise errors.AuthKeyUnregisteredError(request=None)
        if sim.dead is not None:
            raise sim.dead(request=None)
        if self.shared is not None and not self.shared.connected(uid := sim.tg_user_id):
            self._tg_user_ids[account.id] = uid
            await self.shared.connect(uid, lambda: gate.check(self.gate, account.id),
                                      lambda stored: self._install(uid, stored))
        self._maybe_fault(sim.tg_user_id)
        return sim

    def _maybe_fault(self, tg_user_id: int) -> None:
        """One uniform draw per call decides the fault, and a flood wait's length too."""
        cfg = self.cfg
        calls = self._calls.get(tg_user_id, 0)
        self._calls[tg_user_id] = calls + 1
        u = unit(cfg.seed, "fault", tg_user_id, calls)
        if u < cfg.flood_wait_rate:
            seconds = 1 + int(u / cfg.flood_wait_rate * cfg.flood_wait_max_seconds)
            raise errors.FloodWaitError(request=None, capture=min(seconds, cfg.flood_wait_max_seconds))
        if u < cfg.flood_wait_rate + cfg.peer_flood_rate:
            raise errors.PeerFloodError(request=None)
        if u < cfg.flood_wait_rate + cfg.peer_flood_rate + cfg.transient_rate:
            raise errors.RpcCallFailError(request=None)

    def _channel(self, sim: SimAccount, channel: Channel) -> SimChannel:
        """Telegram refuses an unknown peer or another account's access hash alike."""
        found = self._by_peer.get(channel.peer_id)
        if found is None or channel.access_hash != found.as_seen_by(sim.tg_user_id).access_hash:
            raise errors.ChannelInvalidError(request=None)
        return found
