"""The Telethon gateway's setup methods against the scripted responder.

Every assertion is on the real TL request objects Telethon would put on the
wire (serialised by the sender), and every answer goes back through
Telethon's own deserialisation: see tests/tgscript.py.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import tgscript as ts
from telethon import TelegramClient, errors
from telethon import password as pwd_mod
from telethon.tl import functions, types

from tgdaemon.classify import ErrorClass, TaskInputError, classify
from tgdaemon.gateway.base import AccountRef, MediaFile, Owned, PrivacyKey, PrivacyValue
from tgdaemon.gateway.telegram import privacy_value
from tgdaemon.store import NewAccount, SessionData, Store

PASSWORD = "Tr0ub4dor&3 horse-staple"


@pytest.fixture
async def one(store: Store) -> AsyncIterator[tuple[ts.ScriptedGateway, AccountRef, ts.ScriptedSender]]:
    account_id = await store.add_account(
        NewAccount(phone="+15550000001", tg_user_id=1001, label="acc1", is_probe=False),
        SessionData(dc_id=2, server=ts.DC_IPS[2], port=443, auth_key=os.urandom(256)), how="import")
    gw = ts.ScriptedGateway(ts.telegram_config())
    await gw.start(store)
    sender = gw.sender(account_id)
    try:
        yield gw, AccountRef(account_id, tg_user_id=1001), sender
    finally:
        await gw.close()
        gw.assert_clean()


def media_file(tmp_path: Path, name: str, size: int, kind: str = "photo", **fields: Any) -> MediaFile:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    mime = "video/mp4" if kind == "video" else "image/jpeg"
    return MediaFile(path, kind, fields.pop("width", 640), fields.pop("height", 640), mime_type=mime,  # type: ignore[arg-type]
                     **fields)


def expect_upload(sender: ts.ScriptedSender, parts: int) -> None:
    for _ in range(parts):
        sender.expect(functions.upload.SaveFilePartRequest, True)


# -- 2FA -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("has_password", [False, True])
async def test_has_2fa(one: Any, has_password: bool) -> None:
    gw, account, sender = one
    sender.expect(functions.account.GetPasswordRequest, ts.password_state(has_password))
    assert await gw.has_2fa(account) is has_password
    sender.assert_done()


def _texts_of(requests: list[Any]) -> list[bytes]:
    out = []
    for request in requests:
        out.append(bytes(request))
        out.append(ts.describe(request).encode())
        out.append(repr(request).encode())
    return out


def _assert_password_absent(blobs: list[bytes]) -> None:
    needles = [PASSWORD.encode(), PASSWORD.encode("utf-16-le"), PASSWORD.encode().hex().encode(),
               hashlib.sha256(PASSWORD.encode()).digest()]
    for blob in blobs:
        for needle in needles:
            assert needle not in blob, f"the 2FA password leaked into: {blob[:120]!r}"


async def test_enable_2fa_sends_the_srp_digest_and_never_the_password(
        one: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    gw, account, sender = one
    state = ts.password_state(False)
    sender.expect(functions.account.GetPasswordRequest, state)
    sender.expect(functions.account.UpdatePasswordSettingsRequest, True)
    await gw.enable_2fa(account, PASSWORD)
    sender.assert_done()

    [update] = sender.calls_of(functions.account.UpdatePasswordSettingsRequest)
    assert isinstance(update.password, types.InputCheckPasswordEmpty)  # there was no password before
    settings = update.new_settings
    assert isinstance(settings.new_algo, type(state.new_algo))
    assert settings.new_algo.salt1.startswith(state.new_algo.salt1) and len(settings.new_algo.salt1) == 8 + 32
    # the password is set: the hash is g^x mod p of *this* password with the salts sent
    assert settings.new_password_hash == pwd_mod.compute_digest(settings.new_algo, PASSWORD)
    assert settings.new_password_hash != pwd_mod.compute_digest(settings.new_algo, PASSWORD + "x")
    assert not settings.hint and not settings.email

    _assert_password_absent(_texts_of(sender.requests) + [r.getMessage().encode() for r in caplog.records]
                            + [caplog.text.encode()])


async def test_enable_2fa_failure_text_holds_no_password(one: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    gw, account, sender = one
    sender.expect(functions.account.GetPasswordRequest, ts.password_state(True))  # set meanwhile by the owner
    sender.expect(functions.account.UpdatePasswordSettingsRequest, ts.rpc_error(400, "PASSWORD_HASH_INVALID"))
    with pytest.raises(errors.PasswordHashInvalidError) as info:
        await gw.enable_2fa(account, PASSWORD)
    result = classify(info.value)
    assert (result.kind, result.code) == (ErrorClass.INPUT, "PASSWORD_HASH_INVALID")
    texts = [str(info.value), repr(info.value), result.message, caplog.text]
    _assert_password_absent([t.encode() for t in texts] + _texts_of(sender.requests))


async def test_enable_2fa_scrubs_an_exception_that_would_quote_the_password(
        one: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    gw, account, _ = one

    async def leaky(self: Any, new_password: str | None = None, **kwargs: Any) -> bool:
        raise ValueError(f"bad password {new_password!r}")

    monkeypatch.setattr(TelegramClient, "edit_2fa", leaky)
    with pytest.raises(RuntimeError) as info:
        await gw.enable_2fa(account, PASSWORD)
    assert PASSWORD not in str(info.value) and info.value.__cause__ is None and info.value.__context__ is None
    assert "ValueError" in str(info.value)


async def test_enable_2fa_refuses_an_empty_password_without_a_request(one: Any) -> None:
    gw, account, sender = one
    with pytest.raises(TaskInputError) as info:
        await gw.enable_2fa(account, "")
    assert info.value.code == "NO_2FA_PASSWORD" and sender.requests == []


async def test_enable_2fa_is_bounded_in_time(store: Store, one: Any) -> None:
    gw, account, sender = one
    gw.cfg = ts.telegram_config(call_timeout_seconds=0.1)
    sender.expect(functions.account.GetPasswordRequest, ts.NEVER)
    with pytest.raises(TimeoutError):
        await gw.enable_2fa(account, PASSWORD)


# -- name and privacy ------------------------------------------------------------------------------


async def test_set_name(one: Any) -> None:
    gw, account, sender = one
    sender.expect(functions.account.UpdateProfileRequest, ts.user(first_name="Ops", last_name="Seven"))
    await gw.set_name(account, "Ops", "Seven")
    [request] = sender.calls
    assert (request.first_name, request.last_name, request.about) == ("Ops", "Seven", None)
    sender.assert_done()


@pytest.mark.parametrize(("rules", "value"), [
    ([types.PrivacyValueAllowAll()], PrivacyValue.EVERYBODY),
    ([types.PrivacyValueAllowContacts()], PrivacyValue.CONTACTS),
    ([types.PrivacyValueAllowContacts(), types.PrivacyValueDisallowAll()], PrivacyValue.CONTACTS),
    ([types.PrivacyValueDisallowAll()], PrivacyValue.NOBODY),
    ([], PrivacyValue.NOBODY),
    ([types.PrivacyValueAllowAll(), types.PrivacyValueDisallowUsers(users=[5])], PrivacyValue.CUSTOM),
    ([types.PrivacyValueAllowUsers(users=[5]), types.PrivacyValueDisallowAll()], PrivacyValue.CUSTOM),
    ([types.PrivacyValueAllowContacts(), types.PrivacyValueAllowPremium(), types.PrivacyValueDisallowAll()],
     PrivacyValue.CUSTOM),
    ([types.PrivacyValueAllowCloseFriends(), types.PrivacyValueDisallowAll()], PrivacyValue.CUSTOM),
    ([types.PrivacyValueAllowChatParticipants(chats=[9]), types.PrivacyValueDisallowAll()], PrivacyValue.CUSTOM),
    ([types.PrivacyValueDisallowContacts(), types.PrivacyValueAllowAll()], PrivacyValue.CUSTOM),
    ([types.PrivacyValueAllowBots(), types.PrivacyValueDisallowAll()], PrivacyValue.CUSTOM),
])
def test_privacy_rules_mapping(rules: list[Any], value: PrivacyValue) -> None:
    assert privacy_value(rules) is value


@pytest.mark.parametrize(("key", "key_type"), [(PrivacyKey.PHONE_NUMBER, types.InputPrivacyKeyPhoneNumber),
                                               (PrivacyKey.LAST_SEEN, types.InputPrivacyKeyStatusTimestamp)])
async def test_get_privacy_sends_the_key_and_maps_the_answer(one: Any, key: PrivacyKey, key_type: type) -> None:
    gw, account, sender = one
    sender.expect(functions.account.GetPrivacyRequest, ts.privacy_rules(types.PrivacyValueDisallowAll()))
    sender.expect(functions.account.GetPrivacyRequest, ts.privacy_rules(
        types.PrivacyValueAllowContacts(), types.PrivacyValueAllowUsers(users=[77]), types.PrivacyValueDisallowAll()))
    assert await gw.get_privacy(account, key) is PrivacyValue.NOBODY
    assert await gw.get_privacy(account, key) is PrivacyValue.CUSTOM
    assert all(type(r.key) is key_type for r in sender.calls)
    sender.assert_done()


@pytest.mark.parametrize(("value", "expected"), [
    (PrivacyValue.EVERYBODY, [types.InputPrivacyValueAllowAll]),
    (PrivacyValue.CONTACTS, [types.InputPrivacyValueAllowContacts, types.InputPrivacyValueDisallowAll]),
    (PrivacyValue.NOBODY, [types.InputPrivacyValueDisallowAll]),
])
async def test_set_privacy_sends_the_rules(one: Any, value: PrivacyValue, expected: list[type]) -> None:
    gw, account, sender = one
    answer = [r for r in (types.PrivacyValueAllowAll(),)]
    sender.expect(functions.account.SetPrivacyRequest, ts.privacy_rules(*answer))
    sender.expect(functions.account.SetPrivacyRequest, ts.privacy_rules(*answer))
    await gw.set_privacy(account, PrivacyKey.PHONE_NUMBER, value)
    await gw.set_privacy(account, PrivacyKey.LAST_SEEN, value)
    phone, last_seen = sender.calls
    assert isinstance(phone.key, types.InputPrivacyKeyPhoneNumber)
    assert isinstance(last_seen.key, types.InputPrivacyKeyStatusTimestamp)
    assert [type(r) for r in phone.rules] == [type(r) for r in last_seen.rules] == expected
    sender.assert_done()


async def test_custom_privacy_cannot_be_set(one: Any) -> None:
    gw, account, sender = one
    with pytest.raises(ValueError, match="custom"):
        await gw.set_privacy(account, PrivacyKey.LAST_SEEN, PrivacyValue.CUSTOM)
    assert sender.requests == []


# -- profile photos --------------------------------------------------------------------------------


async def test_profile_photos(one: Any) -> None:
    gw, account, sender = one
    newest, older = ts.photo(51), ts.photo(50)
    sender.expect(functions.photos.GetUserPhotosRequest,
                  ts.user_photos(newest, types.PhotoEmpty(id=3), older, count=40))
    sender.expect(functions.photos.GetUserPhotosRequest, ts.user_photos())
    assert await gw.profile_photos(account) == [Owned(51, newest.date.timestamp(), video=False),
                                                Owned(50, older.date.timestamp(), video=False)]
    assert await gw.profile_photos(account) == []
    request = sender.calls[0]
    assert isinstance(request.user_id, types.InputUserSelf)
    assert (request.offset, request.max_id, request.limit) == (0, 0, 20)
    sender.assert_done()


async def test_set_profile_photo_uploads_then_passes_the_file_by_keyword(one: Any, tmp_path: Path) -> None:
    gw, account, sender = one
    media = media_file(tmp_path, "avatar.jpg", 300 * 1024)  # 3 parts of 128 KB
    expect_upload(sender, 3)
    sender.expect(functions.photos.UploadProfilePhotoRequest, types.photos.Photo(photo=ts.photo(9001), users=[]))
    assert await gw.set_profile_photo(account, media) == 9001
    sender.assert_done()

    [upload] = sender.calls_of(functions.photos.UploadProfilePhotoRequest)
    assert isinstance(upload.file, types.InputFile) and upload.video is None and upload.video_start_ts is None
    assert (upload.file.parts, upload.file.name) == (3, "avatar.jpg")
    content = media.path.read_bytes()
    assert ts.uploaded_bytes(sender, upload.file.id) == content
    assert upload.file.md5_checksum == hashlib.md5(content).hexdigest()


async def test_set_animated_profile_photo_passes_video_and_start(one: Any, tmp_path: Path) -> None:
    gw, account, sender = one
    media = media_file(tmp_path, "avatar.mp4", 1000, kind="video", duration=4.0)
    expect_upload(sender, 1)
    sender.expect(functions.photos.UploadProfilePhotoRequest, types.photos.Photo(photo=ts.photo(9002), users=[]))
    assert await gw.set_profile_photo(account, media) == 9002
    [upload] = sender.calls_of(functions.photos.UploadProfilePhotoRequest)
    assert upload.file is None and isinstance(upload.video, types.InputFile)
    assert upload.video_start_ts == 0.0 and upload.video.name == "avatar.mp4"
    assert ts.uploaded_bytes(sender, upload.video.id) == media.path.read_bytes()
    sender.assert_done()


async def test_photo_rejected_by_telegram_is_an_input_error(one: Any, tmp_path: Path) -> None:
    gw, account, sender = one
    expect_upload(sender, 1)
    sender.expect(functions.photos.UploadProfilePhotoRequest, ts.rpc_error(400, "PHOTO_INVALID_DIMENSIONS"))
    with pytest.raises(errors.PhotoInvalidDimensionsError) as info:
        await gw.set_profile_photo(account, media_file(tmp_path, "a.jpg", 10))
    assert classify(info.value).kind is ErrorClass.INPUT


async def test_flood_wait_during_upload_raises_at_once(one: Any, tmp_path: Path) -> None:
    gw, account, sender = one
    sender.expect(functions.upload.SaveFilePartRequest, True)
    sender.expect(functions.upload.SaveFilePartRequest, ts.rpc_error(420, "FLOOD_WAIT_33"))
    with pytest.raises(errors.FloodWaitError) as info:
        await gw.set_profile_photo(account, media_file(tmp_path, "a.jpg", 200 * 1024))
    assert classify(info.value).seconds == 33
    assert sender.calls_of(functions.photos.UploadProfilePhotoRequest) == []
    sender.assert_done()


async def test_missing_file_at_upload_is_an_input_error(one: Any, tmp_path: Path) -> None:
    gw, account, sender = one
    media = media_file(tmp_path, "gone.jpg", 10)
    media.path.unlink()
    with pytest.raises(TaskInputError) as info:
        await gw.set_profile_photo(account, media)
    assert info.value.code == "MEDIA_FILE_MISSING" and str(media.path) in str(info.value)
    assert sender.calls == []


async def test_upload_part_without_answer_times_out(one: Any, tmp_path: Path) -> None:
    gw, account, sender = one
    gw.cfg = ts.telegram_config(call_timeout_seconds=0.1)
    sender.expect(functions.upload.SaveFilePartRequest, ts.NEVER)
    with pytest.raises(TimeoutError):
        await gw.send_story(account, media_file(tmp_path, "s.jpg", 10))


# -- stories ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("answer", "expected"), [
    (True, True), (False, False),  # Bool: layer 199 (Telethon 1.39)
    (types.stories.CanSendStoryCount(count_remains=2) if hasattr(types.stories, "CanSendStoryCount") else None, True),
    (types.stories.CanSendStoryCount(count_remains=0) if hasattr(types.stories, "CanSendStoryCount") else None, False),
], ids=["bool-true", "bool-false", "count-2", "count-0"])
async def test_can_send_story_both_result_shapes(one: Any, answer: Any, expected: bool) -> None:
    if answer is None:
        pytest.skip("this Telethon's layer has no stories.CanSendStoryCount")
    gw, account, sender = one
    sender.expect(functions.stories.CanSendStoryRequest, answer)
    assert await gw.can_send_story(account) is expected
    assert isinstance(sender.calls[0].peer, types.InputPeerSelf)
    sender.assert_done()


async def test_stories_too_much_on_can_send(one: Any) -> None:
    gw, account, sender = one
    sender.expect(functions.stories.CanSendStoryRequest, ts.rpc_error(400, "STORIES_TOO_MUCH"))
    with pytest.raises(errors.BadRequestError) as info:
        await gw.can_send_story(account)
    assert (classify(info.value).kind, classify(info.value).code) == (ErrorClass.WAIT, "STORIES_TOO_MUCH")


async def test_my_stories_newest_first(one: Any) -> None:
    gw, account, sender = one
    old, new = ts.story_item(4), ts.story_item(7)
    new.date = old.date.replace(year=old.date.year + 1)
    skipped = types.StoryItemSkipped(id=5, date=old.date, expire_date=old.date)
    sender.expect(functions.stories.GetPeerStoriesRequest,
                  ts.peer_stories(old, types.StoryItemDeleted(id=6), new, skipped))
    new.media = types.MessageMediaDocument()  # a video story
    stories = await gw.my_stories(account)
    assert [s.id for s in stories] == [7, 5, 4]
    assert stories[0] == Owned(7, new.date.timestamp(), video=True)
    assert [s.video for s in stories[1:]] == [None, None]  # skipped: no media; MessageMediaEmpty: not said
    assert isinstance(sender.calls[0].peer, types.InputPeerSelf)
    sender.assert_done()


def _story_answer(story_id: int, *, with_id_update: bool = True) -> Any:
    def answer(request: Any) -> Any:
        items = [types.UpdateStoryID(id=story_id, random_id=request.random_id)] if with_id_update else []
        items.append(types.UpdateStory(peer=types.PeerUser(1001), story=ts.story_item(story_id)))
        return ts.updates(*items)
    return answer


async def test_send_story_photo(one: Any, tmp_path: Path) -> None:
    gw, account, sender = one
    media = media_file(tmp_path, "story.jpg", 1000, width=1080, height=1920)
    expect_upload(sender, 1)
    sender.expect(functions.stories.SendStoryRequest, _story_answer(31))
    assert await gw.send_story(account, media) == 31
    [request] = sender.calls_of(functions.stories.SendStoryRequest)
    assert isinstance(request.peer, types.InputPeerSelf)
    assert isinstance(request.media, types.InputMediaUploadedPhoto)
    assert ts.uploaded_bytes(sender, request.media.file.id) == media.path.read_bytes()
    assert [type(r) for r in request.privacy_rules] == [types.InputPrivacyValueAllowAll]
    assert request.random_id and not request.pinned and request.period is None
    sender.assert_done()


async def test_send_story_video_passes_dimensions_and_duration(one: Any, tmp_path: Path) -> None:
    gw, account, sender = one
    media = media_file(tmp_path, "story.mp4", 130 * 1024, kind="video", width=720, height=1280, duration=12.5)
    expect_upload(sender, 2)
    sender.expect(functions.stories.SendStoryRequest, _story_answer(32, with_id_update=False))
    assert await gw.send_story(account, media) == 32  # from UpdateStory when there is no UpdateStoryID
    [request] = sender.calls_of(functions.stories.SendStoryRequest)
    doc = request.media
    assert isinstance(doc, types.InputMediaUploadedDocument) and doc.mime_type == "video/mp4"
    [attribute] = doc.attributes
    assert isinstance(attribute, types.DocumentAttributeVideo)
    assert (attribute.w, attribute.h, attribute.duration, attribute.supports_streaming) == (720, 1280, 12.5, True)
    assert ts.uploaded_bytes(sender, doc.file.id) == media.path.read_bytes()
    assert [type(r) for r in request.privacy_rules] == [types.InputPrivacyValueAllowAll]
    sender.assert_done()


async def test_send_story_picks_its_own_story_id(one: Any, tmp_path: Path) -> None:
    gw, account, sender = one
    expect_upload(sender, 1)
    sender.expect(functions.stories.SendStoryRequest, lambda request: ts.updates(
        types.UpdateStoryID(id=1, random_id=request.random_id + 1),
        types.UpdateStoryID(id=2, random_id=request.random_id)))
    assert await gw.send_story(account, media_file(tmp_path, "s.jpg", 10)) == 2


async def test_send_story_over_the_limit_is_a_plain_bad_request(one: Any, tmp_path: Path) -> None:
    gw, account, sender = one
    expect_upload(sender, 1)
    sender.expect(functions.stories.SendStoryRequest, ts.rpc_error(400, "STORIES_TOO_MUCH"))
    with pytest.raises(errors.BadRequestError) as info:
        await gw.send_story(account, media_file(tmp_path, "s.jpg", 10))
    assert type(info.value) is errors.BadRequestError
    assert classify(info.value).code == "STORIES_TOO_MUCH"
