"""The one interface to Telegram, with two implementations: Telethon and the simulator.

Calls raise Telethon's own error classes in both, so the error classification
is exercised on the same code path in tests as in production. No call ever
sleeps out a flood wait: it raises, and the scheduler holds the account.
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from telethon import utils

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


class Gateway(abc.ABC):
    """Telegram as the daemon sees it; every method acts as one account."""

    name: str

    async def start(self, store: Store) -> None:
        """Prepare, with the store that holds sessions; connections are made lazily, on first use."""

    async def close(self) -> None:
        """Disconnect everything; called once at shutdown."""

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
