"""The one interface to Telegram, with two implementations: Telethon and the simulator.

Calls raise Telethon's own error classes in both, so the error classification
is exercised on the same code path in tests as in production. No call ever
sleeps out a flood wait: it raises, and the scheduler holds the account.
"""

from __future__ import annotations

import abc
import enum
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from telethon import utils

from tgdaemon.gateway.gate import Gate, OpenGate

if TYPE_CHECKING:
    from tgdaemon.store import Store

_POST_LINK = re.compile(r"^((?:https?://)?(?:www\.)?(?:t\.me|telegram\.(?:me|dog))/[A-Za-z]\w*)/\d+/?$")


def parse_target(target: str) -> tuple[str | None, bool]:
    """(lower-case username or invite hash, is_invite), as Telethon parses it; None if invalid.

    A post link (``t.me/name/123``) stands for its channel.
    """
    target = target.strip()
    if match := _POST_LINK.match(target):
        target = match[1]
    return utils.parse_username(target.rstrip("/"))


@dataclass(frozen=True, slots=True)
class AccountRef:
    """What a gateway needs to act as an account: the store id (sessions) and who it is."""

    id: int
    tg_user_id: int | None = None
    phone: str | None = None


@dataclass(frozen=True, slots=True)
class Me:
    user_id: int
    phone: str | None
    first_name: str
    last_name: str
    username: str | None


@dataclass(frozen=True, slots=True)
class Channel:
    """A resolved public channel; the access hash is the resolving account's own."""

    peer_id: int
    access_hash: int
    title: str
    username: str | None


@dataclass(frozen=True, slots=True)
class PostStats:
    post_id: int
    views: int
    forwards: int
    replies: int
    reactions: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChannelStats:
    peer_id: int
    title: str
    subscribers: int


class PrivacyKey(enum.StrEnum):
    PHONE_NUMBER = "phone_number"  # who can see the phone number
    LAST_SEEN = "last_seen"  # who can see last seen and online


class PrivacyValue(enum.StrEnum):
    EVERYBODY = "everybody"
    CONTACTS = "contacts"
    NOBODY = "nobody"
    CUSTOM = "custom"  # anything with exceptions: not the baseline, whatever its base


@dataclass(frozen=True, slots=True)
class MediaFile:
    """A checked media file: setup probes it (dimensions, duration) before any upload."""

    path: Path
    kind: Literal["photo", "video"]
    width: int
    height: int
    duration: float = 0.0  # seconds; videos only
    mime_type: str = "image/jpeg"


@dataclass(frozen=True, slots=True)
class Owned:
    """A profile photo or a story the account has: its id, when it was made (Unix seconds), and
    whether it is a video (an animated photo, a video story); None when Telegram did not say."""

    id: int
    date: float
    video: bool | None = None


@dataclass(frozen=True, slots=True)
class Authorization:
    """One of the account's active sessions (account.getAuthorizations); ``current`` is the daemon's own.
    ``hash`` names it to account.resetAuthorization; times are Unix seconds (0: Telegram did not say)."""

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
    created: float
    active: float


class Gateway(abc.ABC):
    """Telegram as the daemon sees it; every method acts as one account."""

    name: str
    gate: Gate = OpenGate()  # which accounts this node may act as; the node's own once it has one

    async def start(self, store: Store) -> None:
        """Prepare, with the store that holds sessions; connections are made lazily, on first use."""

    async def close(self) -> None:
        """Disconnect everything; called once at shutdown."""

    async def forget(self, account_id: int) -> None:
        """Let go of what is held for an account that was just disabled (its connection)."""

    async def retire(self, account_id: int) -> None:
        """The account's proxy changed: its next call connects anew, through the new one (a connection with a
        call in flight is let finish first). Nothing to do for a gateway whose connections have no address."""

    async def let_go(self, ids: list[int]) -> None:
        """Disconnect these accounts' clients: their node gives them up (a move, a stop, its fence)."""
        for account_id in ids:
            await self.forget(account_id)

    @abc.abstractmethod
    async def get_me(self, account: AccountRef) -> Me: ...

    @abc.abstractmethod
    async def resolve_channel(self, account: AccountRef, target: str) -> Channel:
        """``@name``, ``name``, ``https://t.me/name`` or an invite link ``https://t.me/+HASH``."""

    @abc.abstractmethod
    async def last_post_ids(self, account: AccountRef, channel: Channel, n: int) -> list[int]:
        """The ids of the newest ``n`` posts, newest first."""

    @abc.abstractmethod
    async def post_stats(self, account: AccountRef, channel: Channel, post_id: int) -> PostStats:
        """Counters of one post, read without incrementing its view counter."""

    @abc.abstractmethod
    async def channel_stats(self, account: AccountRef, channel: Channel) -> ChannelStats: ...

    # Setup: what an owner does to their own account. Each read comes before its write,
    # so a task can see that the baseline already holds and skip.

    @abc.abstractmethod
    async def has_2fa(self, account: AccountRef) -> bool: ...

    @abc.abstractmethod
    async def enable_2fa(self, account: AccountRef, password: str) -> None:
        """Set a 2FA password on an account that has none; the password is never logged or kept."""

    @abc.abstractmethod
    async def set_name(self, account: AccountRef, first_name: str, last_name: str) -> None: ...

    @abc.abstractmethod
    async def get_privacy(self, account: AccountRef, key: PrivacyKey) -> PrivacyValue: ...

    @abc.abstractmethod
    async def set_privacy(self, account: AccountRef, key: PrivacyKey, value: PrivacyValue) -> None: ...

    @abc.abstractmethod
    async def profile_photos(self, account: AccountRef) -> list[Owned]:
        """The account's profile photos (static and animated), newest first."""

    @abc.abstractmethod
    async def set_profile_photo(self, account: AccountRef, media: MediaFile) -> int:
        """Upload a profile photo (animated when ``media.kind == "video"``); returns the new photo's id."""

    @abc.abstractmethod
    async def can_send_story(self, account: AccountRef) -> bool: ...

    @abc.abstractmethod
    async def my_stories(self, account: AccountRef) -> list[Owned]:
        """The account's own active stories, newest first."""

    @abc.abstractmethod
    async def send_story(self, account: AccountRef, media: MediaFile) -> int:
        """Post one story visible to everybody; returns its id."""

    # Health and sessions: what the owner can see of their own account, and ending its other sessions.

    @abc.abstractmethod
    async def app_config(self, account: AccountRef) -> dict[str, Any]:
        """Telegram's app configuration as the account gets it (help.getAppConfig), JSON as Python values:
        a frozen account finds ``freeze_since_date`` (Unix seconds), ``freeze_until_date`` and
        ``freeze_appeal_url`` in it."""

    @abc.abstractmethod
    async def authorizations(self, account: AccountRef) -> list[Authorization]:
        """The account's active sessions, the daemon's own among them (``current``)."""

    @abc.abstractmethod
    async def reset_authorization(self, account: AccountRef, hash: int) -> None:
        """End one other session. Telegram refuses it while the current session is younger than 24 h
        (FRESH_RESET_AUTHORISATION_FORBIDDEN)."""

    @abc.abstractmethod
    async def ask_spambot(self, account: AccountRef, wait_seconds: float) -> str | None:
        """Send /start to the official @SpamBot, as the account, and return its answer's text; None when
        no answer came within ``wait_seconds``. The owner's own question to Telegram's support bot about
        their own account."""
