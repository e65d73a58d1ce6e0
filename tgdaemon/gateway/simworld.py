"""The simulator's world: accounts and public channels, fixed by a seed and the time.

Nothing here keeps time or runs in the background. A post's counters at time t
are computed from (seed, channel, post id, t), so every reader sees the same
numbers, reading never changes them, and a restarted daemon finds the same world.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
from dataclasses import dataclass, field

from telethon import errors

from tgdaemon.config import SimulatorConfig
from tgdaemon.gateway.base import Channel, ChannelStats, Owned, PostStats

# 2024-01-01T00:00:00Z; every channel has exactly INITIAL_POSTS posts at this instant.
WORLD_EPOCH = 1_704_067_200.0
INITIAL_POSTS = 30
# Views come fast at first and level off over a couple of days, as on real channels.
VIEWS_TAU_MINUTES = 2 * 24 * 60.0
PRIVATE_CHANNEL = "tgfleet_private"
BASELINE_PRIVACY = {"phone_number": "nobody", "last_seen": "everybody"}
# "custom" stands for a setting with exceptions: not the baseline, whatever its base.
PRIVACY_VALUES = ("everybody", "contacts", "nobody", "custom")
STORY_LIMIT = 3  # active stories an account may hold; one more is STORIES_TOO_MUCH
STORY_LIFETIME = 86400.0  # a story is active for 24 h
AVATAR_VIDEO_MAX_SECONDS = 10.0
DEAD_ERRORS: tuple[type[errors.RPCError], ...] = (
    errors.AuthKeyUnregisteredError,
    errors.UserDeactivatedBanError,
    errors.SessionRevokedError,
    errors.SessionExpiredError,
    errors.UserDeactivatedError,
    errors.PhoneNumberBannedError,
    errors.AuthKeyDuplicatedError,
)
REACTIONS = ("👍", "❤", "🔥", "🎉", "😁", "😢")
# Call signs, not human names: simulated accounts must not pass for people.
FIRST_NAMES = ("Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel",
               "India", "Juliett", "Kilo", "Lima", "Mike", "November", "Oscar", "Papa")
LAST_NAMES = ("Amber", "Blue", "Cedar", "Dune", "Ember", "Frost", "Granite", "Harbor")
# Health (tgdaemon.health): what the app configuration of a frozen account says, and @SpamBot's answers, in
# the words Telegram uses. Frozen and limited accounts are chosen by [simulator] frozen_fraction and
# limited_fraction, never among probes or dead accounts; half the limited ones are limited until a date.
FREEZE_APPEAL_URL = "https://t.me/spambot"
SPAMBOT_FREE = "Good news, no limits are currently applied to your account. You\u2019re free as a bird!"
SPAMBOT_LIMITED_UNTIL = ("I\u2019m afraid some Telegram users found your messages annoying and forwarded them to our"
                         " team of moderators for inspection. The moderators have confirmed the report and your"
                         " account is now limited until {until}.\n\nWhile the account is limited, you will not be"
                         " able to send messages to people who do not have your number in their phone contacts.")
SPAMBOT_LIMITED = ("Unfortunately, some phone numbers may trigger a harsh response from our anti-spam systems. If you"
                   " think this is the case with you, you can submit a complaint to our moderators.\n\nWhile the"
                   " account is limited, you will not be able to send messages to people who do not have your number"
                   " in their phone contacts or add them to groups and channels.")
SPAMBOT_BLOCKED = ("Your account was blocked for violations of the Telegram Terms of Service based on user reports"
                   " confirmed by our moderators.")
# Sessions: the daemon's own (hash 0, as Telegram shows the current one) and up to three others, from before
# the world began. A share of the accounts has a daemon session made when its profile was (now, in the
# world): Telegram lets such a session end the others only once it is 24 hours old.
FRESH_SESSION_SHARE = 0.1
OTHER_DEVICES = (("iPhone 15", "iOS", "Telegram iOS", "11.2"), ("Pixel 8", "Android", "Telegram Android", "11.4.2"),
                 ("MacBook Pro", "macOS", "Telegram macOS", "11.3"), ("PC 64bit", "Windows", "Telegram Desktop",
                                                                     "5.8.3"))
COUNTRIES = ("Germany", "Netherlands", "Spain", "Brazil", "Japan")

# The [simulator] keys build_accounts reads: a data dir records them (the channels depend on the seed alone).
WORLD_KEYS = ("accounts", "seed", "probe_fraction", "dead_fraction")



def _digest(*parts: object) -> bytes:
    return hashlib.blake2b(repr(parts).encode(), digest_size=12).digest()


def unit(*parts: object) -> float:
    """A uniform number in [0, 1) fixed by ``parts``: randomness without state."""
    return int.from_bytes(_digest(*parts)[:7], "big") / 2**56


def access_hash(seed: int, peer_id: int, tg_user_id: int) -> int:
    """Access hashes are per account, as on Telegram: another account's hash is invalid."""
    return int.from_bytes(_digest(seed, "access", peer_id, tg_user_id)[:8], "big", signed=True)


@dataclass(frozen=True, slots=True)
class SimAccount:
    """Who an account is; ``dead`` is the error class every call of a dead account raises."""

    tg_user_id: int
    phone: str
    label: str
    first_name: str
    last_name: str
    is_probe: bool
    dead: type[errors.RPCError] | None = None


@dataclass(frozen=True, slots=True)
class SimMedia:
    """A profile photo or a story: ``kind`` is "photo" or "video" (an animated photo, a video story)."""

    id: int
    date: float
    kind: str
    source: str  # the uploaded file's name, so tests can tell what was posted

    def owned(self) -> Owned:
        return Owned(self.id, self.date, self.kind == "video")


@dataclass(slots=True)
class SimSession:
    """One authorization of an account; hash 0 is the daemon's own (the current one)."""

    hash: int
    device_model: str
    platform: str
    app_name: str
    app_version: str
    country: str
    created: float
    active: float


@dataclass(slots=True)
class SimProfile:
    """What an owner can change on their account; setup tasks read it and converge it.

    ``photos`` and ``stories`` are newest first; their ids come from ``last_id``,
    one counter per account, as Telegram's ids are per owner.
    """

    first_name: str
    last_name: str
    has_password: bool
    privacy: dict[str, str]
    photos: list[SimMedia] = field(default_factory=list)
    stories: list[SimMedia] = field(default_factory=list)
    last_id: int = 0
    sessions: list[SimSession] = field(default_factory=list)  # none: a profile stored before sessions were kept

    def new_id(self) -> int:
        self.last_id += 1
        return self.last_id

    def active_stories(self, now: float) -> list[SimMedia]:
        return [s for s in self.stories if s.date + STORY_LIFETIME > now]


def build_accounts(cfg: SimulatorConfig) -> list[SimAccount]:
    """Exact counts of probes and dead accounts; dead ones are never probes."""
    rng = random.Random(f"{cfg.seed}:accounts")
    n = cfg.accounts
    user_ids = rng.sample(range(1_000_000_000, 8_000_000_000), n)
    phones = rng.sample(range(10**7), n)
    order = rng.sample(range(n), n)
    n_probes = min(n, max(1, round(n * cfg.probe_fraction)))
    n_dead = min(n - n_probes, round(n * cfg.dead_fraction))
    probes = set(order[:n_probes])
    dead = set(order[n_probes:n_probes + n_dead])
    return [
        SimAccount(
            tg_user_id=user_ids[i],
            phone=f"+1555{phones[i]:07d}",
            label=f"sim-{i + 1:04d}",
            first_name=rng.choice(FIRST_NAMES),
            last_name=rng.choice(LAST_NAMES),
            is_probe=i in probes,
            dead=rng.choice(DEAD_ERRORS) if i in dead else None,
        )
        for i in range(n)
    ]


def health_state(cfg: SimulatorConfig, account: SimAccount) -> str:
    """``ok``, ``frozen``, ``limited`` (until a date) or ``hard_limited`` (no date): fixed by the seed."""
    if account.is_probe or account.dead is not None:
        return "ok"
    u = unit(cfg.seed, account.tg_user_id, "health")
    if u < cfg.frozen_fraction:
        return "frozen"
    if u < cfg.frozen_fraction + cfg.limited_fraction:
        return "limited" if unit(cfg.seed, account.tg_user_id, "limit kind") < 0.5 else "hard_limited"
    return "ok"


def initial_sessions(seed: int, account: SimAccount, now: float) -> list[SimSession]:
    fresh = unit(seed, account.tg_user_id, "fresh") < FRESH_SESSION_SHARE
    created = now if fresh else WORLD_EPOCH - 90 * 86400
    own = SimSession(0, "tgfleet", "Linux", "tgfleet", "0.1", "Germany", created, now)
    others = []
    for n in range(int(unit(seed, account.tg_user_id, "sessions") * 4)):
        device, platform, app, version = OTHER_DEVICES[int(unit(seed, account.tg_user_id, "device", n) * 4)]
        others.append(SimSession(
            1 + int(unit(seed, account.tg_user_id, "session hash", n) * 2**62), device, platform, app, version,
            COUNTRIES[int(unit(seed, account.tg_user_id, "country", n) * len(COUNTRIES))],
            WORLD_EPOCH - (200 + 30 * n) * 86400, WORLD_EPOCH - (n + 1) * 86400))
    return [own, *others]


def initial_profile(seed: int, account: SimAccount, now: float = WORLD_EPOCH) -> SimProfile:
    """Most accounts start away from the setup baseline, so that setup has work to do."""

    def pick(key: str, options: tuple[str, ...]) -> str:
        return options[int(unit(seed, account.tg_user_id, key) * len(options))]

    profile = SimProfile(
        first_name=account.first_name,
        last_name=account.last_name,
        has_password=unit(seed, account.tg_user_id, "2fa") < 0.2,
        privacy={key: pick(key, PRIVACY_VALUES) for key in BASELINE_PRIVACY},
        sessions=initial_sessions(seed, account, now),
    )
    if unit(seed, account.tg_user_id, "photo") < 0.3:  # an old photo, from before the world began
        profile.photos.append(SimMedia(profile.new_id(), WORLD_EPOCH - 30 * 86400, "photo", "initial.jpg"))
    return profile


@dataclass(frozen=True, slots=True)
class SimChannel:
    """A public channel posting every ``interval`` seconds since ``origin``."""

    seed: int
    username: str
    peer_id: int
    title: str
    invite_hash: str
    origin: float
    interval: float
    subscribers_base: int
    subscribers_per_day: float

    def post_count(self, now: float) -> int:
        """Post ids are 1..post_count(now): none is ever deleted."""
        return max(0, int((now - self.origin) // self.interval))

    def as_seen_by(self, tg_user_id: int) -> Channel:
        return Channel(self.peer_id, access_hash(self.seed, self.peer_id, tg_user_id),
                       self.title, self.username)

    def stats(self, now: float) -> ChannelStats:
        days = max(0.0, now - self.origin) / 86400
        return ChannelStats(self.peer_id, self.title,
                            self.subscribers_base + int(self.subscribers_per_day * days))

    def post_stats(self, post_id: int, now: float, views_per_minute: float) -> PostStats:
        """Counters grow with the post's age; every one is non-decreasing in ``now``."""

        def share(key: str, scale: float) -> float:
            return scale * unit(self.seed, self.peer_id, post_id, key)

        age_minutes = max(0.0, now - self.origin - post_id * self.interval) / 60
        pace = views_per_minute * (0.5 + share("pace", 1.0))
        views = int(pace * VIEWS_TAU_MINUTES * -math.expm1(-age_minutes / VIEWS_TAU_MINUTES))
        reactions = {emoji: count for emoji in REACTIONS
                     if (count := int(views * share(emoji, 0.2) ** 2))}
        return PostStats(post_id, views, int(views * share("forwards", 0.02)),
                         int(views * share("replies", 0.01)), reactions)


def build_channels(cfg: SimulatorConfig) -> list[SimChannel]:
    rng = random.Random(f"{cfg.seed}:channels")
    peer_ids = rng.sample(range(1_100_000_000, 2_100_000_000), len(cfg.channels))
    channels = []
    for username, peer_id in zip(cfg.channels, peer_ids, strict=True):
        invite = base64.urlsafe_b64encode(_digest(cfg.seed, "invite", peer_id)).decode()
        channels.append(SimChannel(
            seed=cfg.seed,
            username=username,
            peer_id=peer_id,
            title=username.replace("_", " ").title(),
            invite_hash=invite,
            origin=WORLD_EPOCH - (INITIAL_POSTS + rng.random()) * cfg.post_interval_seconds,
            interval=cfg.post_interval_seconds,
            subscribers_base=rng.randrange(1_000, 100_000),
            subscribers_per_day=rng.uniform(5, 50),
        ))
    return channels

