"""The real gateway: Telethon clients over sessions kept in the store.

Every client runs with ``flood_sleep_threshold = 0`` (set on the client: the
per-call argument is ignored), few request retries and
``raise_last_call_error``, so the real Telegram error reaches the one
classification; and every call has a timeout, because Telethon's own covers
connecting only. No updates are processed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from pathlib import Path
from typing import Any

from telethon import TelegramClient, connection, errors, helpers, utils
from telethon.tl import functions, types

from tgdaemon.classify import (
    MEDIA_FILE_MISSING,
    MEDIA_UNREADABLE,
    NO_2FA_PASSWORD,
    ProxyDead,
    TaskInputError,
)
from tgdaemon.config import ProxiesConfig, ProxyConfig, TelegramConfig
from tgdaemon.gateway import servers
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
from tgdaemon.gateway.gate import check as check_gate
from tgdaemon.gateway.pool import ClientPool
from tgdaemon.gateway.session import StoreSession
from tgdaemon.proxies.url import remember_secret
from tgdaemon.store import (
    ClientParams,
    Device,
    EntityRow,
    ProxyTarget,
    SessionData,
    Store,
)
from tgdaemon.store.views import shown_proxy

log = logging.getLogger(__name__)


def client_options(cfg: TelegramConfig, params: ClientParams | None = None) -> dict[str, Any]:
    """TelegramClient keyword arguments: the account's own device and proxy where it has them, else the
    config's; retries and timeouts from the config."""
    device = params.device if params is not None else Device()
    options: dict[str, Any] = {
        "device_model": device.device_model or cfg.device_model,
        "system_version": device.system_version or cfg.system_version,
        "app_version": device.app_version or cfg.app_version,
        "lang_code": device.lang_code or cfg.lang_code,
        "system_lang_code": device.system_lang_code or cfg.system_lang_code,
        "request_retries": cfg.request_retries, "connection_retries": 1, "retry_delay": 1,
        "timeout": cfg.connect_timeout_seconds, "flood_sleep_threshold": 0, "raise_last_call_error": True,
        "receive_updates": False, "auto_reconnect": False,
    }
    own = params.proxy if params is not None else None
    proxy = cfg.proxy if own is None else ProxyConfig(
        type=own.scheme, host=own.host, port=own.port,  # type: ignore[arg-type]  # the store's CHECK keeps it one of them
        username=own.username, password=own.secret, secret=own.secret)
    if own is not None:
        remember_secret(own.secret)  # whatever Telethon may log of it is redacted
    if proxy.type == "mtproxy":
        options["connection"] = connection.ConnectionTcpMTProxyRandomizedIntermediate
        options["proxy"] = (proxy.host, proxy.port, proxy.secret)
    elif proxy.type:
        options["proxy"] = {"proxy_type": proxy.type, "addr": proxy.host, "port": proxy.port,
                            "username": proxy.username or None, "password": proxy.password or None, "rdns": True}
    return options


def proxy_key(proxy: ProxyTarget | None) -> tuple[str, str, int, str, str] | None:
    """What a client's connection goes through, as far as changing it needs a new client (not its state)."""
    return None if proxy is None else (proxy.scheme, proxy.host, proxy.port, proxy.username, proxy.secret)


def me_from_user(user: types.User) -> Me:
    return Me(user.id, f"+{user.phone}" if user.phone else None, user.first_name or "", user.last_name or "",
              user.username)


def input_channel(channel: Channel) -> types.InputChannel:
    return types.InputChannel(channel.peer_id, channel.access_hash)


def input_peer(channel: Channel) -> types.InputPeerChannel:
    return types.InputPeerChannel(channel.peer_id, channel.access_hash)


def channel_from(chat: Any) -> Channel:
    """A Channel from a TL chat; anything but a channel is not a target we observe."""
    if not isinstance(chat, types.Channel) or chat.access_hash is None:
        raise errors.ChannelInvalidError(request=None)
    return Channel(chat.id, chat.access_hash, chat.title, chat.username)


class TelethonGateway(Gateway):
    name = "telethon"

    def __init__(self, cfg: TelegramConfig, *, proxies: ProxiesConfig | None = None) -> None:
        self.cfg = cfg
        # Where new logins go; its key is in Telethon's list from here on (a bad key file: ConfigError, at start).
        self.login_server = servers.prepare(cfg)
        # Telethon caches the DC table of the first server a client migrates on in a class attribute: clients
        # on the login server get a class of their own, so a test or self-hosted login migrates within its
        # own server's DCs, never to the production DC of the same number.
        self._login_class: type[TelegramClient] = type("LoginServerClient", (TelegramClient,),
                                                      {"_config": None, "_cdn_config": None})
        self.proxy_hold_seconds = (proxies or ProxiesConfig()).hold_seconds()
        self.pool = ClientPool(self._client_for, max_connected=cfg.max_connected,
                               idle_seconds=cfg.idle_disconnect_seconds, connect_timeout=cfg.connect_timeout_seconds,
                               check=lambda account_id: check_gate(self.gate, account_id),
                               seconds_left=lambda: self.gate.seconds_left(), prepare=self._prepare)
        self._built: dict[int, tuple[str, str, int, str, str] | None] = {}  # the proxy each client was made with
        self._writes: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None

    async def start(self, store: Store) -> None:
        self.store = store
        self._reaper = asyncio.create_task(self._reap_idle(), name="telegram idle reaper")

    async def _reap_idle(self) -> None:
        while True:
            await asyncio.sleep(min(30.0, self.cfg.idle_disconnect_seconds / 2))
            await self.pool.reap_idle()

    def new_client(self, session: StoreSession, params: ClientParams | None = None) -> TelegramClient:
        """A client with the account's own app, device and proxy, else the fleet's; tests replace its
        network layer here."""
        device = params.device if params is not None else Device()
        on_login_server = self.login_server is not None and session.server_address == self.login_server.host
        cls = self._login_class if on_login_server else TelegramClient
        client = cls(session, device.api_id or self.cfg.api_id, device.api_hash or self.cfg.api_hash,
                     **client_options(self.cfg, params))
        client.flood_sleep_threshold = 0
        return client

    def session_for(self, account_id: int | None, data: SessionData | None,
                    entities: list[EntityRow]) -> StoreSession:
        """A store-backed session; with no account yet (login) its writes wait for the account to exist."""
        def on_session(new: SessionData) -> None:
            # Fenced by the epoch the node owns the account under; none at all once it is not the node's.
            epoch = None if account_id is None else self.gate.epoch(account_id)
            if account_id is not None and (epoch is not None or self.gate.allows(account_id)):
                self._spawn(self.store.save_session(account_id, new, epoch=epoch))

        def on_entities(rows: list[EntityRow]) -> None:
            if account_id is not None:
                self._spawn(self.store.save_entities(account_id, rows))

        return StoreSession(data, entities, on_session, on_entities)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _client_for(self, account_id: int) -> TelegramClient:
        data = await self.store.load_session(account_id)
        if data is None or not data.auth_key:
            raise errors.AuthKeyUnregisteredError(request=None)  # no session: as good as a revoked one
        session = self.session_for(account_id, data, await self.store.load_entities(account_id))
        params = await self.store.client_params(account_id)
        self._built[account_id] = proxy_key(params.proxy)
        return self.new_client(session, params)

    def login_session(self) -> StoreSession:
        """The session a new login starts from: the configured server's (no key yet), else an empty one that
        Telethon dials at its built-in production address."""
        return self.session_for(None, self.login_server.session() if self.login_server else None, [])

    async def _prepare(self, account_id: int, client: TelegramClient) -> TelegramClient:
        """Just before a connect: never through a proxy the health checker found dead (the account waits in
        a 'proxy' cooldown instead, and never goes out another way); a client whose proxy the operator changed
        since it was made is made anew, on the same session."""
        params = await self.store.client_params(account_id)
        refuse_dead(params.proxy, self.proxy_hold_seconds)
        if (key := proxy_key(params.proxy)) != self._built.get(account_id):
            log.info("account %s: connecting through %s from now on", account_id, shown(params.proxy))
            client = self.new_client(client.session, params)  # type: ignore[arg-type]  # ours: a StoreSession
            self._built[account_id] = key
        return client

    async def retire(self, account_id: int) -> None:
        await self.pool.retire(account_id)

    async def check_session(self, data: SessionData, params: ClientParams | None = None) -> Me:
        """Who a session (about to be imported) signs in as, on a throwaway client that is let go at once;
        ``params``: the app and device the account will present and its own proxy, so that the check presents
        the same device and its first connection is already the one through its proxy."""
        refuse_dead(params.proxy if params is not None else None, self.proxy_hold_seconds)
        client = self.new_client(self.session_for(None, data, []), params)
        try:
            await asyncio.wait_for(client.connect(), self.cfg.connect_timeout_seconds)
            users = await asyncio.wait_for(
                client(functions.users.GetUsersRequest([types.InputUserSelf()])), self.cfg.call_timeout_seconds)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), 5)
        if not users or not isinstance(users[0], types.User):
            raise errors.AuthKeyUnregisteredError(request=None)
        return me_from_user(users[0])

    async def call(self, account: AccountRef, request: Any) -> Any:
        """One request as one account, bounded by ``telegram.call_timeout_seconds``; the gate is asked first."""
        async with self.pool.use(account.id) as client:
            check_gate(self.gate, account.id)
            return await asyncio.wait_for(client(request), self.cfg.call_timeout_seconds)

    async def forget(self, account_id: int) -> None:
        await self.pool.forget(account_id)

    async def let_go(self, ids: list[int]) -> None:
        await asyncio.gather(*(self.pool.forget(account_id) for account_id in ids))

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        await self.pool.close()
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    async def get_me(self, account: AccountRef) -> Me:
        users = await self.call(account, functions.users.GetUsersRequest([types.InputUserSelf()]))
        return me_from_user(users[0])

    async def resolve_channel(self, account: AccountRef, target: str) -> Channel:
        name, is_invite = parse_target(target)
        if name is None:
            raise errors.UsernameInvalidError(request=None)
        if is_invite:
            invite = await self.call(account, functions.messages.CheckChatInviteRequest(hash=name))
            if isinstance(invite, (types.ChatInviteAlready, types.ChatInvitePeek)):
                return channel_from(invite.chat)
            raise errors.ChannelPrivateError(request=None)  # seeing it would mean joining: out of scope
        if (row := await self.store.find_entity(account.id, name)) is not None:
            return Channel(utils.resolve_id(row[0])[0], row[1], row[4] or name, row[2])
        resolved = await self.call(account, functions.contacts.ResolveUsernameRequest(username=name))
        if not isinstance(resolved.peer, types.PeerChannel):
            raise errors.ChannelInvalidError(request=None)
        channel = channel_from(next(c for c in resolved.chats if c.id == resolved.peer.channel_id))
        # Cached before returning, so the next task of this account never resolves it again.
        await self.store.save_entities(account.id, [(utils.get_peer_id(types.PeerChannel(channel.peer_id)),
                                                     channel.access_hash, (channel.username or name).lower(), None,
                                                     channel.title)])
        return channel

    async def last_post_ids(self, account: AccountRef, channel: Channel, n: int) -> list[int]:
        history = await self.call(account, functions.messages.GetHistoryRequest(
            peer=input_peer(channel), offset_id=0, offset_date=None, add_offset=0, limit=n, max_id=0, min_id=0,
            hash=0))
        return [m.id for m in history.messages if isinstance(m, types.Message)]

    async def post_stats(self, account: AccountRef, channel: Channel, post_id: int) -> PostStats:
        viewed = await self.call(account, functions.messages.GetMessagesViewsRequest(
            peer=input_peer(channel), id=[post_id], increment=False))
        found = await self.call(account, functions.channels.GetMessagesRequest(
            channel=input_channel(channel), id=[types.InputMessageID(post_id)]))
        message = found.messages[0] if found.messages else None
        if not viewed.views or not isinstance(message, types.Message):
            raise errors.MsgIdInvalidError(request=None)  # a deleted post: a target problem
        views = viewed.views[0]
        return PostStats(post_id, views.views or 0, views.forwards or 0,
                         views.replies.replies if views.replies else 0, reaction_counts(message))

    async def channel_stats(self, account: AccountRef, channel: Channel) -> ChannelStats:
        full = await self.call(account, functions.channels.GetFullChannelRequest(channel=input_channel(channel)))
        chat = next((c for c in full.chats if c.id == channel.peer_id), None)
        return ChannelStats(channel.peer_id, chat.title if chat else channel.title,
                            full.full_chat.participants_count or 0)

    # -- setup: what an owner does to their own account -----------------------------------------------

    async def has_2fa(self, account: AccountRef) -> bool:
        password = await self.call(account, functions.account.GetPasswordRequest())
        return bool(password.has_password)

    async def enable_2fa(self, account: AccountRef, password: str) -> None:
        """Telethon's edit_2fa: GetPassword, then UpdatePasswordSettings with the SRP digest (never the text).

        Two round trips, so twice the call timeout. The password is in no request, log line or
        exception text: an exception whose text would quote it is replaced by one that does not.
        """
        if not password:
            raise TaskInputError(NO_2FA_PASSWORD, "an empty 2FA password would set none")
        leaked: str | None = None
        async with self.pool.use(account.id) as client:
            try:
                await asyncio.wait_for(client.edit_2fa(new_password=password), 2 * self.cfg.call_timeout_seconds)
            except Exception as exc:
                if password not in f"{exc}{exc!r}":
                    raise
                leaked = type(exc).__name__
        if leaked is not None:  # raised out here, so that not even __context__ holds the original
            raise RuntimeError(f"enabling 2FA failed with {leaked} (its text withheld)")

    async def set_name(self, account: AccountRef, first_name: str, last_name: str) -> None:
        await self.call(account, functions.account.UpdateProfileRequest(first_name=first_name, last_name=last_name))

    async def get_privacy(self, account: AccountRef, key: PrivacyKey) -> PrivacyValue:
        result = await self.call(account, functions.account.GetPrivacyRequest(key=PRIVACY_KEYS[PrivacyKey(key)]()))
        return privacy_value(result.rules)

    async def set_privacy(self, account: AccountRef, key: PrivacyKey, value: PrivacyValue) -> None:
        rules = privacy_rules(PrivacyValue(value))
        await self.call(account, functions.account.SetPrivacyRequest(key=PRIVACY_KEYS[PrivacyKey(key)](), rules=rules))

    async def profile_photos(self, account: AccountRef) -> list[Owned]:
        result = await self.call(account, functions.photos.GetUserPhotosRequest(
            user_id=types.InputUserSelf(), offset=0, max_id=0, limit=20))
        return [Owned(p.id, _date(p.date), bool(p.video_sizes)) for p in result.photos if isinstance(p, types.Photo)]

    async def set_profile_photo(self, account: AccountRef, media: MediaFile) -> int:
        async with self.pool.use(account.id) as client:
            uploaded = await self._upload(client, media.path)
            if media.kind == "video":
                request = functions.photos.UploadProfilePhotoRequest(video=uploaded, video_start_ts=0.0)
            else:
                request = functions.photos.UploadProfilePhotoRequest(file=uploaded)
            result = await asyncio.wait_for(client(request), self.cfg.call_timeout_seconds)
        return result.photo.id

    async def can_send_story(self, account: AccountRef) -> bool:
        return can_send(await self.call(account, functions.stories.CanSendStoryRequest(peer=types.InputPeerSelf())))

    async def my_stories(self, account: AccountRef) -> list[Owned]:
        result = await self.call(account, functions.stories.GetPeerStoriesRequest(peer=types.InputPeerSelf()))
        items = [s for s in result.stories.stories if isinstance(s, (types.StoryItem, types.StoryItemSkipped))]
        return sorted((Owned(s.id, _date(s.date), story_is_video(s)) for s in items),
                      key=lambda o: (o.date, o.id), reverse=True)

    async def send_story(self, account: AccountRef, media: MediaFile) -> int:
        random_id = helpers.generate_random_long()
        async with self.pool.use(account.id) as client:
            uploaded = await self._upload(client, media.path)
            if media.kind == "video":
                story_media: Any = types.InputMediaUploadedDocument(
                    file=uploaded, mime_type=media.mime_type, attributes=[types.DocumentAttributeVideo(
                        duration=media.duration, w=media.width, h=media.height, supports_streaming=True)])
            else:
                story_media = types.InputMediaUploadedPhoto(file=uploaded)
            updates = await asyncio.wait_for(client(functions.stories.SendStoryRequest(
                peer=types.InputPeerSelf(), media=story_media, privacy_rules=[types.InputPrivacyValueAllowAll()],
                random_id=random_id)), self.cfg.call_timeout_seconds)
        return story_id_from(updates, random_id)

    # -- health and sessions ----------------------------------------------------------------------------

    async def app_config(self, account: AccountRef) -> dict[str, Any]:
        result = await self.call(account, functions.help.GetAppConfigRequest(hash=0))
        config = json_value(getattr(result, "config", None))  # AppConfigNotModified only answers a hash we never send
        return config if isinstance(config, dict) else {}

    async def authorizations(self, account: AccountRef) -> list[Authorization]:
        result = await self.call(account, functions.account.GetAuthorizationsRequest())
        return [authorization_of(a) for a in result.authorizations]

    async def reset_authorization(self, account: AccountRef, hash: int) -> None:
        if not hash:
            raise ValueError("hash 0 is the current session: it is never reset")
        await self.call(account, functions.account.ResetAuthorizationRequest(hash=hash))

    async def ask_spambot(self, account: AccountRef, wait_seconds: float) -> str | None:
        """/start to @SpamBot, then its history read until its answer is there (no updates are received):
        at most one read a second, none after ``wait_seconds``."""
        peer = await self._spambot_peer(account)
        random_id = helpers.generate_random_long()
        sent = await self.call(account, functions.messages.SendMessageRequest(
            peer=peer, message="/start", random_id=random_id, no_webpage=True))
        sent_id = sent_message_id(sent, random_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        pause = min(SPAMBOT_POLL_SECONDS, wait_seconds / 4)
        for _ in range(int(wait_seconds / pause) + 1):
            await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
            history = await self.call(account, functions.messages.GetHistoryRequest(
                peer=peer, offset_id=0, offset_date=None, add_offset=0, limit=5, max_id=0, min_id=sent_id, hash=0))
            answers = sorted((m for m in history.messages if isinstance(m, types.Message) and not m.out
                              and m.id > sent_id), key=lambda m: m.id)
            if answers:
                return answers[0].message or ""
            if loop.time() >= deadline:
                break
        return None

    async def _spambot_peer(self, account: AccountRef) -> types.InputPeerUser:
        """@SpamBot as this account sees it: from the entity cache, else resolved once and cached (a
        username resolved on every check is what earns long flood waits)."""
        if (row := await self.store.find_entity(account.id, SPAMBOT)) is not None:
            return types.InputPeerUser(utils.resolve_id(row[0])[0], row[1])
        resolved = await self.call(account, functions.contacts.ResolveUsernameRequest(username=SPAMBOT))
        bot = next((u for u in resolved.users if isinstance(u, types.User) and isinstance(resolved.peer, types.PeerUser)
                    and u.id == resolved.peer.user_id), None)
        if bot is None or not bot.bot or bot.access_hash is None or (bot.username or "").lower() != SPAMBOT:
            raise errors.UsernameInvalidError(request=None)  # not Telegram's bot: nothing is sent to it
        await self.store.save_entities(account.id, [(bot.id, bot.access_hash, SPAMBOT, None, "Spam Info Bot")])
        return types.InputPeerUser(bot.id, bot.access_hash)

    async def _upload(self, client: TelegramClient, path: Path) -> Any:
        """Telethon's upload (one upload.saveFilePart per part), bounded by the call timeout per part."""
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise TaskInputError(MEDIA_FILE_MISSING, f"{path}: no such file") from None
        except OSError as exc:
            raise TaskInputError(MEDIA_UNREADABLE, f"{path}: cannot read it ({exc.strerror or exc})") from None
        parts = max(1, math.ceil(size / (utils.get_appropriated_part_size(size) * 1024)))
        try:
            return await asyncio.wait_for(client.upload_file(path), self.cfg.call_timeout_seconds * parts)
        except FileNotFoundError:
            raise TaskInputError(MEDIA_FILE_MISSING, f"{path}: no such file") from None
        except (PermissionError, IsADirectoryError) as exc:
            raise TaskInputError(MEDIA_UNREADABLE, f"{path}: cannot read it ({exc.strerror or exc})") from None


SPAMBOT = "spambot"  # Telegram's official support bot for spam limits, by its (case-insensitive) username
SPAMBOT_POLL_SECONDS = 1.0


def json_value(value: Any) -> Any:
    """A TL JSONValue (help.getAppConfig's) as Python values."""
    if isinstance(value, types.JsonObject):
        return {item.key: json_value(item.value) for item in value.value}
    if isinstance(value, types.JsonArray):
        return [json_value(item) for item in value.value]
    if isinstance(value, (types.JsonString, types.JsonNumber, types.JsonBool)):
        return value.value
    return None


def authorization_of(a: types.Authorization) -> Authorization:
    return Authorization(a.hash, bool(a.current), a.device_model, a.platform, a.system_version, a.app_name,
                         a.app_version, a.api_id, bool(a.official_app), a.country, a.region, _date(a.date_created),
                         _date(a.date_active))


def sent_message_id(updates: Any, random_id: int) -> int:
    """Our message's id in messages.sendMessage's answer: UpdateShortSentMessage to a user, else the
    UpdateMessageID that names our random_id; 0 when neither does (then any newer incoming message counts)."""
    if isinstance(updates, types.UpdateShortSentMessage):
        return updates.id
    for update in getattr(updates, "updates", None) or []:
        if isinstance(update, types.UpdateMessageID) and update.random_id == random_id:
            return update.id
    return 0


def shown(proxy: ProxyTarget | None) -> str:
    if proxy is None:
        return "no proxy of its own"
    return f"proxy {proxy.id} ({shown_proxy(proxy.scheme, proxy.host, proxy.port)})"


def refuse_dead(proxy: ProxyTarget | None, hold_seconds: float) -> None:
    if proxy is not None and proxy.state == "dead":
        raise ProxyDead(proxy.id, shown_proxy(proxy.scheme, proxy.host, proxy.port), hold_seconds)


PRIVACY_KEYS: dict[PrivacyKey, type] = {
    PrivacyKey.PHONE_NUMBER: types.InputPrivacyKeyPhoneNumber,
    PrivacyKey.LAST_SEEN: types.InputPrivacyKeyStatusTimestamp,
}


def privacy_value(rules: list[Any]) -> PrivacyValue:
    """The setting Telegram's rules amount to; any exception (users, chats, close friends, premium, bots...)
    makes it CUSTOM. No rule at all disallows everyone."""
    kinds = [type(rule) for rule in rules]
    if kinds == [types.PrivacyValueAllowAll]:
        return PrivacyValue.EVERYBODY
    if kinds in ([types.PrivacyValueAllowContacts], [types.PrivacyValueAllowContacts, types.PrivacyValueDisallowAll]):
        return PrivacyValue.CONTACTS
    if kinds in ([types.PrivacyValueDisallowAll], []):
        return PrivacyValue.NOBODY
    return PrivacyValue.CUSTOM


def privacy_rules(value: PrivacyValue) -> list[Any]:
    """The input rules that set ``value``; CUSTOM cannot be set (it is whatever the owner made it)."""
    if value == PrivacyValue.EVERYBODY:
        return [types.InputPrivacyValueAllowAll()]
    if value == PrivacyValue.CONTACTS:
        return [types.InputPrivacyValueAllowContacts(), types.InputPrivacyValueDisallowAll()]
    if value == PrivacyValue.NOBODY:
        return [types.InputPrivacyValueDisallowAll()]
    raise ValueError(f"cannot set privacy to {value!r}")


def _date(value: Any) -> float:
    return value.timestamp() if value is not None else 0.0


def story_id_from(updates: Any, random_id: int) -> int:
    """The new story's id in stories.sendStory's Updates: UpdateStoryID (ours by random_id), else UpdateStory."""
    items = list(getattr(updates, "updates", None) or [])
    if (single := getattr(updates, "update", None)) is not None:  # UpdateShort
        items.append(single)
    for update in items:
        if isinstance(update, types.UpdateStoryID) and update.random_id in (random_id, None):
            return update.id
    for update in items:
        if isinstance(update, types.UpdateStory) and isinstance(update.story, types.StoryItem):
            return update.story.id
    raise RuntimeError("stories.sendStory answered without the new story's id")


def can_send(result: Any) -> bool:
    """stories.canSendStory: a Bool up to layer 199 (Telethon 1.39), stories.CanSendStoryCount later."""
    if isinstance(result, bool):
        return result
    return (getattr(result, "count_remains", 0) or 0) > 0


def reaction_counts(message: types.Message) -> dict[str, int]:
    """Emoji (or ``custom:<document id>``, ``paid``) to count."""
    out: dict[str, int] = {}
    for result in getattr(message.reactions, "results", None) or []:
        reaction = result.reaction
        if isinstance(reaction, types.ReactionEmoji):
            key = reaction.emoticon
        elif isinstance(reaction, types.ReactionCustomEmoji):
            key = f"custom:{reaction.document_id}"
        else:
            key = "paid"
        out[key] = out.get(key, 0) + result.count
    return out


def story_is_video(story: Any) -> bool | None:
    """A skipped story item carries no media, so it cannot say."""
    media = getattr(story, "media", None)
    if isinstance(media, types.MessageMediaDocument):
        return True
    if isinstance(media, types.MessageMediaPhoto):
        return False
    return None
