"""A scripted responder in place of Telethon's network layer, for tests of the real gateway.

The clients are real ``TelegramClient`` objects; only their ``_sender`` (Telethon's
``MTProtoSender``) is replaced, after construction, by a :class:`ScriptedSender`.
Everything above it stays Telethon's own: ``connect()`` with its InitConnection
handshake, ``_call`` (request resolving, the ``InvokeWithoutUpdatesRequest``
wrapping, retries, ``flood_sleep_threshold``, ``raise_last_call_error``), error
construction from an RPC error, and ``process_entities`` into the session.

A sender never opens a socket. It receives the real TL request objects,
serialises them (so a malformed request fails as it would on the wire), records
them and answers from a script: ``(matcher, answer)`` pairs consumed in order,
where ``matcher`` is a request class or a predicate and ``answer`` is

* a TL object (or a list of them, or a bool), serialised and read back through
  the request's own ``read_result`` exactly as the real sender does;
* ``rpc_error(code, message)``: the exception Telethon builds from that RpcError;
* an exception instance, raised as is;
* :data:`NEVER`: no answer at all (the request stays pending until disconnect);
* a callable ``(request) -> answer`` (possibly async), whose result is any of the above.

A request that matches no expectation fails the call with :class:`UnexpectedRequest`
(an ``AssertionError``) listing the request and the script; it is also kept in
``sender.unexpected`` so that a test can assert none was swallowed.

The handshake that ``TelegramClient.connect()`` performs (InitConnection+GetConfig,
then ``get_me`` and, on success, ``updates.GetState`` / ``updates.GetDifference``)
is answered automatically while ``connect()`` runs; ``sender.handshake`` overrides
those answers by request class. ``sender.calls`` holds the requests made outside
``connect()``, ``sender.requests`` all of them, ``sender.init_requests`` the
``InitConnectionRequest`` objects (device model etc.).

Example::

    gw = ScriptedGateway(telegram_config())
    await gw.start(store)
    gw.sender(account_id).expect(functions.contacts.ResolveUsernameRequest,
                                 resolved_channel(channel(id=77, username="news")))
    await gw.resolve_channel(AccountRef(account_id), "@news")
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import os
import struct
import typing
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from telethon import TelegramClient
from telethon.crypto import AuthKey
from telethon.errors import rpc_message_to_error
from telethon.extensions import BinaryReader
from telethon.tl import TLObject, TLRequest, functions, types

from tgdaemon.config import TelegramConfig
from tgdaemon.gateway.session import StoreSession
from tgdaemon.gateway.telegram import TelethonGateway
from tgdaemon.store import ClientParams

API_ID = 12345
API_HASH = "0123456789abcdef0123456789abcdef"
DC_IPS = {1: "149.154.175.53", 2: "149.154.167.51", 3: "149.154.175.100", 4: "149.154.167.91",
          5: "91.108.56.130"}
_VECTOR = 0x1CB5C415
_BOOL_TRUE, _BOOL_FALSE = 0x997275B5, 0xBC799737
_WRAPPERS = (functions.InvokeWithoutUpdatesRequest, functions.InvokeWithLayerRequest, functions.InitConnectionRequest)


class _Never:
    def __repr__(self) -> str:
        return "NEVER"


NEVER: Any = _Never()
"""An answer that never comes (a hung request)."""


@dataclass(frozen=True)
class RpcErrorAnswer:
    code: int
    message: str


def rpc_error(code: int, message: str) -> RpcErrorAnswer:
    """An RPC error answer; the sender raises ``rpc_message_to_error(RpcError(code, message), request)``."""
    return RpcErrorAnswer(code, message)


class UnexpectedRequest(AssertionError):
    """A request the script did not expect."""


Matcher = type | Callable[[TLRequest], bool]


def describe(obj: Any) -> str:
    try:
        return obj.stringify() if isinstance(obj, TLObject) else repr(obj)
    except Exception:  # noqa: BLE001 - stringify is best effort
        return repr(obj)


def serialize(answer: Any) -> bytes:
    """The wire bytes of an answer: a TL object, a bool or a vector of TL objects."""
    if isinstance(answer, bool):
        return struct.pack("<I", _BOOL_TRUE if answer else _BOOL_FALSE)
    if isinstance(answer, (list, tuple)):
        return struct.pack("<Ii", _VECTOR, len(answer)) + b"".join(serialize(x) for x in answer)
    if isinstance(answer, TLObject):
        return bytes(answer)
    raise TypeError(f"not a TL answer: {answer!r}")


class ScriptedSender:
    """Stands in for ``telethon.network.MTProtoSender``; see the module doc."""

    def __init__(self, *, me: Any = None, config: Any = None, script: Iterable[tuple[Matcher, Any]] = (),
                 new_auth_key: bytes | None = None, connect_error: BaseException | None = None,
                 name: str = "") -> None:
        self.name = name
        self.me = me if me is not None else user()
        self.config = config if config is not None else tl_config()
        self.script: deque[tuple[Matcher, Any]] = deque(script)
        self.handshake: dict[type, Any] = {}  # request class -> answer, overriding the defaults in connect()
        self.new_auth_key = new_auth_key
        self.connect_error = connect_error
        self.auth_key: AuthKey = AuthKey(None)
        self._auth_key_callback: Callable[[AuthKey], Any] | None = None
        self.connection: Any = None  # the Telethon Connection object connect() was given (never opened)
        self.requests: list[TLRequest] = []  # every request, unwrapped
        self.calls: list[TLRequest] = []  # the requests made outside connect()
        self.sent: list[TLRequest] = []  # every request as sent (wrapped)
        self.init_requests: list[functions.InitConnectionRequest] = []
        self.layers: list[int] = []
        self.unexpected: list[str] = []
        self.connects = 0
        self.disconnects = 0
        self.in_connect = False
        self._connected = False
        self._disconnected_future: asyncio.Future[None] | None = None
        self._pending: set[asyncio.Future[Any]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- the script --------------------------------------------------------------------------------

    def expect(self, matcher: Matcher, answer: Any) -> ScriptedSender:
        self.script.append((matcher, answer))
        return self

    def assert_done(self) -> None:
        assert not self.unexpected, "unexpected requests:\n" + "\n".join(self.unexpected)
        assert not self.script, "expected requests never made:\n" + "\n".join(
            f"  {_matcher_name(m)} -> {describe(a)[:200]}" for m, a in self.script)

    def calls_of(self, cls: type) -> list[Any]:
        return [r for r in self.calls if isinstance(r, cls)]

    # -- what TelegramClient uses ------------------------------------------------------------------

    async def connect(self, connection: Any) -> bool:
        if self._connected:
            return False
        self.connection = connection
        if self.connect_error is not None:
            raise self.connect_error
        await asyncio.sleep(0)
        if not self.auth_key:  # the real sender would run the DH exchange here
            self.auth_key.key = self.new_auth_key or os.urandom(256)
            if self._auth_key_callback is not None:  # sync in Telethon 1.39, async in 1.45
                result = self._auth_key_callback(self.auth_key)
                if inspect.isawaitable(result):
                    await result
        self._connected = True
        self.connects += 1
        self._disconnected_future = asyncio.get_running_loop().create_future()
        return True

    def is_connected(self) -> bool:
        return self._connected

    def _transport_connected(self) -> bool:
        return self._connected

    def _keepalive_ping(self, rnd_id: int) -> None:
        """Telethon's keepalive loop pings every 60 s; nothing to do here."""

    async def disconnect(self) -> None:
        if not self._connected:
            return
        self._connected = False
        self.disconnects += 1
        for future in list(self._pending):
            future.cancel()
        self._pending.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._disconnected_future is not None and not self._disconnected_future.done():
            self._disconnected_future.set_result(None)

    @property
    def disconnected(self) -> Any:
        if self._disconnected_future is None:
            self._disconnected_future = asyncio.get_running_loop().create_future()
            self._disconnected_future.set_result(None)
        return asyncio.shield(self._disconnected_future)

    def send(self, request: Any, ordered: bool = False) -> Any:
        if not self._connected:
            raise ConnectionError("Cannot send requests while disconnected")
        if isinstance(request, list):
            return [self._send_one(r) for r in request]
        return self._send_one(request)

    # -- internals ---------------------------------------------------------------------------------

    def _send_one(self, request: TLRequest) -> asyncio.Future[Any]:
        bytes(request)  # what goes on the wire: a malformed request fails here, as in RequestState
        self.sent.append(request)
        inner = request
        while isinstance(inner, _WRAPPERS):
            if isinstance(inner, functions.InvokeWithLayerRequest):
                self.layers.append(inner.layer)
            if isinstance(inner, functions.InitConnectionRequest):
                self.init_requests.append(inner)
            inner = inner.query
        self.requests.append(inner)
        answer = self._handshake_answer(request, inner) if self.in_connect else None
        if answer is None:
            self.calls.append(inner)
            answer = self._scripted_answer(inner)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        self._resolve_later(future, request, inner, answer)
        return future

    def _handshake_answer(self, raw: TLRequest, inner: TLRequest) -> Any:
        for cls, answer in self.handshake.items():
            if isinstance(inner, cls):
                return answer
        if isinstance(raw, functions.InvokeWithLayerRequest) and isinstance(inner, functions.help.GetConfigRequest):
            return self.config
        if isinstance(inner, functions.users.GetUsersRequest) and len(inner.id) == 1 \
                and isinstance(inner.id[0], types.InputUserSelf):
            return [self.me] if isinstance(self.me, TLObject) else self.me
        if isinstance(inner, functions.updates.GetStateRequest):
            return types.updates.State(pts=1, qts=0, date=_now(), seq=1, unread_count=0)
        if isinstance(inner, functions.updates.GetDifferenceRequest):
            return types.updates.DifferenceEmpty(date=_now(), seq=1)
        return None

    def _scripted_answer(self, inner: TLRequest) -> Any:
        if self.script:
            matcher, answer = self.script[0]
            if _matches(matcher, inner):
                self.script.popleft()
                return answer
        expected = _matcher_name(self.script[0][0]) if self.script else "nothing (script empty)"
        message = (f"sender {self.name!r}: unexpected request {describe(inner)}\n"
                   f"  expected next: {expected}; {len(self.script)} expectation(s) left; "
                   f"calls so far: {[type(r).__name__ for r in self.calls[:-1]]}")
        self.unexpected.append(message)
        return UnexpectedRequest(message)

    def _resolve_later(self, future: asyncio.Future[Any], raw: TLRequest, inner: TLRequest, answer: Any) -> None:
        if answer is NEVER:
            return
        if callable(answer) and not isinstance(answer, (TLObject, type, BaseException)):
            async def run() -> None:
                try:
                    result = answer(inner)
                    if inspect.isawaitable(result):
                        result = await result
                except BaseException as exc:  # noqa: BLE001 - delivered to the caller
                    result = exc
                if not future.done():
                    self._resolve_later(future, raw, inner, result)

            task = asyncio.get_running_loop().create_task(run())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        asyncio.get_running_loop().call_soon(self._deliver, future, raw, answer)

    @staticmethod
    def _deliver(future: asyncio.Future[Any], raw: TLRequest, answer: Any) -> None:
        if future.done():
            return
        if isinstance(answer, RpcErrorAnswer):
            future.set_exception(rpc_message_to_error(types.RpcError(answer.code, answer.message), raw))
        elif isinstance(answer, BaseException):
            future.set_exception(answer)
        elif answer is NEVER:
            pass
        else:
            try:  # as the real sender: the request reads its own result from the wire bytes
                result = raw.read_result(BinaryReader(serialize(answer)))
            except BaseException as exc:  # noqa: BLE001
                future.set_exception(exc)
            else:
                future.set_result(result)


def _matches(matcher: Matcher, request: TLRequest) -> bool:
    if isinstance(matcher, type):
        return isinstance(request, matcher)
    return bool(matcher(request))


def _matcher_name(matcher: Matcher) -> str:
    return matcher.__name__ if isinstance(matcher, type) else getattr(matcher, "__name__", repr(matcher))


def install(client: TelegramClient, sender: ScriptedSender) -> ScriptedSender:
    """Put ``sender`` in place of the client's network layer; connect() is tracked for the handshake."""
    real = client._sender
    if not sender.auth_key:
        sender.auth_key = real.auth_key  # the session's key object, as MTProtoSender shares it
    sender._auth_key_callback = real._auth_key_callback
    client._sender = sender
    connect = client.connect

    async def tracked_connect() -> None:
        sender.in_connect = True
        try:
            await connect()
        finally:
            sender.in_connect = False

    client.connect = tracked_connect  # type: ignore[method-assign]
    return sender


# -- the gateway ---------------------------------------------------------------------------------


def telegram_config(**overrides: Any) -> TelegramConfig:
    """A TelegramConfig with api credentials and short timeouts; ``overrides`` win."""
    values: dict[str, Any] = {"api_id": API_ID, "api_hash": API_HASH, "connect_timeout_seconds": 2.0,
                              "call_timeout_seconds": 2.0, "request_retries": 0}
    values.update(overrides)
    return TelegramConfig(**values)


class ScriptedGateway(TelethonGateway):
    """The real TelethonGateway whose clients talk to ScriptedSenders.

    ``gw.sender(account_id)`` is that account's current sender (made on first use, so a
    test can script it before the client exists); a client made for an account whose
    current sender is already in use (a second client: after ``pool.forget`` or a bug)
    gets a fresh one, which becomes current, unless ``gw.next_sender(account_id)``
    prepared it. ``gw.clients[account_id]`` lists every TelegramClient made for the account.
    """

    def __init__(self, cfg: TelegramConfig, *, me: Callable[[int], Any] | None = None) -> None:
        super().__init__(cfg)
        self._me = me or (lambda account_id: user(id=1000 + (account_id or 0), phone=f"1555000{account_id or 0:04d}"))
        self.senders: dict[int, ScriptedSender] = {}
        self.clients: dict[int, list[TelegramClient]] = {}
        self.all_senders: list[ScriptedSender] = []
        self._installed: set[int] = set()  # id() of senders in use by a client

    def sender(self, account_id: int) -> ScriptedSender:
        if account_id not in self.senders:
            return self.next_sender(account_id)
        return self.senders[account_id]

    def next_sender(self, account_id: int) -> ScriptedSender:
        """A fresh sender for the account's next client; it becomes ``sender(account_id)``."""
        n = sum(1 for s in self.all_senders if s.name.startswith(f"account {account_id} ")) + 1
        sender = ScriptedSender(me=self._me(account_id), name=f"account {account_id} #{n}")
        self.senders[account_id] = sender
        self.all_senders.append(sender)
        return sender

    def session_for(self, account_id: Any, data: Any, entities: Any) -> StoreSession:
        session = super().session_for(account_id, data, entities)
        session._tgscript_account = account_id  # type: ignore[attr-defined]
        return session

    def new_client(self, session: StoreSession, params: ClientParams | None = None) -> TelegramClient:
        client = super().new_client(session, params)
        account_id: int = getattr(session, "_tgscript_account", None)  # type: ignore[assignment]
        sender = self.sender(account_id)
        if id(sender) in self._installed:
            sender = self.next_sender(account_id)
        self._installed.add(id(sender))
        self.clients.setdefault(account_id, []).append(client)
        install(client, sender)
        return client

    async def flush(self) -> None:
        """Wait for the store writes the sessions spawned."""
        while self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)

    def assert_clean(self) -> None:
        problems = [m for s in self.all_senders for m in s.unexpected]
        assert not problems, "unexpected requests:\n" + "\n".join(problems)


# -- real TL objects, for Telethon 1.39 (layer 199) and 1.45 (layer 229) alike --------------------

_EMPTY_VARIANTS = ("Empty", "None", "")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _filler(annotation: Any, owner: str, name: str) -> Any:
    if annotation is int:
        return 0
    if annotation is str:
        return ""
    if annotation is bool:
        return False
    if annotation is bytes:
        return b""
    if annotation is float:
        return 0.0
    origin = typing.get_origin(annotation)
    if origin is list:
        return []
    if origin is typing.Union:  # a required Optional[datetime]: serialised as 0
        return None
    ref = annotation if isinstance(annotation, str) else getattr(annotation, "__forward_arg__", None)
    if ref and ref.startswith("Type"):
        for suffix in _EMPTY_VARIANTS:
            cls = getattr(types, ref[4:] + suffix, None)
            if isinstance(cls, type) and issubclass(cls, TLObject):
                return make(cls)
    raise TypeError(f"tgscript: no default for {owner}.{name}: {annotation!r}; pass it explicitly")


def make(cls: type, **fields: Any) -> Any:
    """``cls(**fields)``, every other required field filled with an empty value of its type.

    Keyword arguments only, so the same call works across layers that add fields.
    """
    kwargs = dict(fields)
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or name in kwargs or param.default is not inspect.Parameter.empty:
            continue
        kwargs[name] = _filler(param.annotation, cls.__name__, name)
    return cls(**kwargs)


def tl_config(this_dc: int = 2) -> Any:
    return make(types.Config, date=_now(), expires=_now() + dt.timedelta(hours=1), this_dc=this_dc,
                dc_options=[types.DcOption(id=dc, ip_address=ip, port=443) for dc, ip in DC_IPS.items()],
                dc_txt_domain_name="apv3.stel.com", chat_size_max=200, megagroup_size_max=200000,
                me_url_prefix="https://t.me/", caption_length_max=1024, message_length_max=4096,
                webfile_dc_id=4)


def user(id: int = 1001, phone: str | None = "15550001001", *, first_name: str = "Ann", last_name: str = "Lee",
         username: str | None = None, access_hash: int = 0x1111, is_self: bool = True) -> Any:
    return make(types.User, id=id, is_self=is_self, access_hash=access_hash, first_name=first_name,
                last_name=last_name, username=username, phone=phone)


def channel(id: int = 777000, *, access_hash: int = 0x5EC2E7, username: str | None = "news",
            title: str = "News", broadcast: bool = True, participants_count: int | None = None) -> Any:
    return make(types.Channel, id=id, title=title, photo=types.ChatPhotoEmpty(), date=_now(),
                access_hash=access_hash, username=username, broadcast=broadcast,
                participants_count=participants_count)


def resolved_channel(chat: Any) -> Any:
    return types.contacts.ResolvedPeer(peer=types.PeerChannel(chat.id), chats=[chat], users=[])


def resolved_user(u: Any) -> Any:
    return types.contacts.ResolvedPeer(peer=types.PeerUser(u.id), chats=[], users=[u])


def reactions(counts: dict[str, int]) -> Any:
    return types.MessageReactions(results=[
        types.ReactionCount(reaction=types.ReactionEmoji(emoticon=e), count=n) for e, n in counts.items()])


def message(id: int, channel_id: int = 777000, *, text: str = "post", views: int | None = 10,
            forwards: int | None = 1, reacts: dict[str, int] | None = None) -> Any:
    return make(types.Message, id=id, peer_id=types.PeerChannel(channel_id), date=_now(), message=text,
                post=True, views=views, forwards=forwards,
                reactions=reactions(reacts) if reacts is not None else reactions({"👍": 5}))


def service_message(id: int, channel_id: int = 777000) -> Any:
    return make(types.MessageService, id=id, peer_id=types.PeerChannel(channel_id), date=_now(),
                action=types.MessageActionChatEditTitle(title="renamed"))


def message_empty(id: int, channel_id: int = 777000) -> Any:
    """A deleted message. (``types.Message*`` are Telethon's patched classes: keyword arguments only.)"""
    return types.MessageEmpty(id=id, peer_id=types.PeerChannel(channel_id))


def channel_messages(messages: list[Any], chats: list[Any] | None = None, *, count: int | None = None) -> Any:
    return make(types.messages.ChannelMessages, pts=1, count=len(messages) if count is None else count,
                messages=messages, chats=chats or [], users=[])


def plain_messages(messages: list[Any], chats: list[Any] | None = None) -> Any:
    return make(types.messages.Messages, messages=messages, chats=chats or [], users=[])


def message_views(views: int, forwards: int, replies: int | None) -> Any:
    r = types.MessageReplies(replies=replies, replies_pts=1) if replies is not None else None
    return types.messages.MessageViews(views=[types.MessageViews(views=views, forwards=forwards, replies=r)],
                                       chats=[], users=[])


def channel_full(chat: Any, participants_count: int) -> Any:
    full = make(types.ChannelFull, id=chat.id, about="about", participants_count=participants_count,
                chat_photo=types.PhotoEmpty(id=0), notify_settings=types.PeerNotifySettings())
    return types.messages.ChatFull(full_chat=full, chats=[chat], users=[])


def chat_invite(title: str = "Private", participants_count: int = 10) -> Any:
    return make(types.ChatInvite, title=title, photo=types.PhotoEmpty(id=0), participants_count=participants_count,
                color=0, channel=True, broadcast=True)


def chat_invite_already(chat: Any) -> Any:
    return types.ChatInviteAlready(chat=chat)


__all__ = [
    "API_HASH", "API_ID", "DC_IPS", "NEVER", "RpcErrorAnswer", "ScriptedGateway", "ScriptedSender",
    "UnexpectedRequest", "channel", "channel_full", "channel_messages", "chat_invite", "chat_invite_already",
    "describe", "install", "make", "message", "message_empty", "message_views", "plain_messages", "reactions", "resolved_channel",
    "resolved_user", "rpc_error", "serialize", "service_message", "telegram_config", "tl_config", "user",
]


# -- account setup: 2FA, privacy, profile photos, stories (real TL objects for both layers) --------

# Telegram's 2048-bit SRP prime (g = 3), the one Telethon knows to be good.
SRP_PRIME = bytes.fromhex(
    "C71CAEB9C6B1C9048E6C522F70F13F73980D40238E3E21C14934D037563D930F"
    "48198A0AA7C14058229493D22530F4DBFA336F6E0AC925139543AED44CCE7C37"
    "20FD51F69458705AC68CD4FE6B6B13ABDC9746512969328454F18FAF8C595F64"
    "2477FE96BB2A941D5BCD1D4AC8CC49880708FA9B378E3C4F3A9060BEE67CF9A4"
    "A4A695811051907E162753B56B0F6B410DBA74D8A84B2A14B3144E0EF1284754"
    "FD17ED950D5965B4B9DD46582DB1178D169C6BC465B0D6FF9CA3928FEF5B9AE4"
    "E418FC15E83EBEA0F87FA9FF5EED70050DED2849F47BF959D956850CE929851F"
    "0D8115F635B105EE2E4E15D04B2454BF6F4FADF034B10403119CD8E3B92FCC5B")


def srp_algo(salt1: bytes = b"\x01" * 8, salt2: bytes = b"\x02" * 16) -> Any:
    return types.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow(
        salt1=salt1, salt2=salt2, g=3, p=SRP_PRIME)


def password_state(has_password: bool = False) -> Any:
    """account.Password as Telegram answers GetPassword: no current password unless asked, a new_algo to set one."""
    return make(types.account.Password, has_password=has_password, new_algo=srp_algo(),
                new_secure_algo=types.SecurePasswordKdfAlgoUnknown(), secure_random=os.urandom(32),
                current_algo=srp_algo() if has_password else None,
                srp_B=os.urandom(256) if has_password else None, srp_id=7 if has_password else None)


def privacy_rules(*rules: Any) -> Any:
    return types.account.PrivacyRules(rules=list(rules), chats=[], users=[])


def photo(id: int, *, date: dt.datetime | None = None) -> Any:
    return make(types.Photo, id=id, access_hash=id ^ 0x5A5A, file_reference=b"ref", date=date or _now(),
                sizes=[types.PhotoSize(type="c", w=640, h=640, size=1000)], dc_id=2)


def user_photos(*items: Any, count: int | None = None) -> Any:
    if count is None:
        return types.photos.Photos(photos=list(items), users=[])
    return types.photos.PhotosSlice(count=count, photos=list(items), users=[])


def story_item(id: int, *, date: dt.datetime | None = None) -> Any:
    date = date or _now()
    return make(types.StoryItem, id=id, date=date, expire_date=date + dt.timedelta(hours=24),
                media=types.MessageMediaEmpty(), out=True)


def peer_stories(*items: Any, user_id: int = 1001) -> Any:
    return types.stories.PeerStories(stories=types.PeerStories(peer=types.PeerUser(user_id), stories=list(items)),
                                     chats=[], users=[])


def updates(*items: Any) -> Any:
    return types.Updates(updates=list(items), users=[], chats=[], date=_now(), seq=0)


def uploaded_bytes(sender: ScriptedSender, file_id: int) -> bytes:
    """The bytes a sender received in upload.saveFilePart requests for ``file_id``, in part order."""
    parts = sorted((r.file_part, r.bytes) for r in sender.calls_of(functions.upload.SaveFilePartRequest)
                   if r.file_id == file_id)
    assert [p for p, _ in parts] == list(range(len(parts))), "missing or repeated file parts"
    return b"".join(b for _, b in parts)


__all__ += ["SRP_PRIME", "password_state", "peer_stories", "photo", "privacy_rules", "srp_algo", "story_item",
            "updates", "uploaded_bytes", "user_photos"]
