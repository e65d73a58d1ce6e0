"""The simulator: a deterministic world, read-only counters, Telethon's own errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from telethon import errors

from tgdaemon.classify import ErrorClass, TaskInputError, classify
from tgdaemon.config import SimulatorConfig
from tgdaemon.gateway.base import (
    AccountRef,
    Channel,
    MediaFile,
    Owned,
    PrivacyKey,
    PrivacyValue,
)
from tgdaemon.gateway.simulator import Simulator
from tgdaemon.gateway.simworld import (
    BASELINE_PRIVACY,
    DEAD_ERRORS,
    INITIAL_POSTS,
    STORY_LIFETIME,
    STORY_LIMIT,
    WORLD_EPOCH,
)

QUIET = dict(latency_min_ms=0, latency_max_ms=0, flood_wait_rate=0, peer_flood_rate=0,
             transient_rate=0, dead_fraction=0)


class Clock:
    def __init__(self, now: float = WORLD_EPOCH) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(clock: Clock | None = None, **overrides: object) -> Simulator:
    cfg = SimulatorConfig(**{**QUIET, **overrides})  # type: ignore[arg-type]
    return Simulator(cfg, clock=clock or Clock())


def ref(sim: Simulator, index: int = 0) -> AccountRef:
    """A live, non-probe account."""
    live = [a for a in sim.accounts if a.dead is None and not a.is_probe]
    return AccountRef(id=index + 1, tg_user_id=live[index].tg_user_id)


async def outcomes(sim: Simulator, account: AccountRef, calls: int) -> list[tuple[str, int | None]]:
    out: list[tuple[str, int | None]] = []
    for _ in range(calls):
        try:
            await sim.get_me(account)
            out.append(("ok", None))
        except Exception as exc:  # noqa: BLE001 - recording every outcome is the point
            out.append((type(exc).__name__, getattr(exc, "seconds", None)))
    return out


def test_same_seed_same_world_other_seed_other_world() -> None:
    assert make(seed=7).seeds() == make(seed=7).seeds()
    assert make(seed=7).seeds() != make(seed=8).seeds()
    assert make(seed=7).channels == make(seed=7).channels
    assert [c.peer_id for c in make(seed=7).channels] != [c.peer_id for c in make(seed=8).channels]


def test_accounts_shape_probes_and_dead() -> None:
    sim = make(accounts=1000, probe_fraction=0.05, dead_fraction=0.1)
    seeds = sim.seeds()
    assert len(seeds) == 1000
    assert len({s.tg_user_id for s in seeds}) == 1000
    assert len({s.phone for s in seeds}) == 1000
    assert all(re.fullmatch(r"\+1555\d{7}", s.phone) for s in seeds)
    assert seeds[0].label == "sim-0001" and seeds[999].label == "sim-1000"
    assert sum(s.is_probe for s in seeds) == 50
    dead = [a for a in sim.accounts if a.dead is not None]
    assert len(dead) == 100
    assert not any(a.is_probe for a in dead)
    assert {a.dead for a in dead} <= set(DEAD_ERRORS)
    assert sim.channel_usernames() == SimulatorConfig().channels


def test_at_least_one_probe() -> None:
    assert sum(s.is_probe for s in make(accounts=3, probe_fraction=0).seeds()) == 1
    assert [s.is_probe for s in make(accounts=1).seeds()] == [True]


def test_most_profiles_start_away_from_the_baseline() -> None:
    sim = make(accounts=300)
    profiles = [sim.profile(a.tg_user_id) for a in sim.accounts]
    assert sum(p.privacy == BASELINE_PRIVACY for p in profiles) < 100
    assert 0 < sum(p.has_password for p in profiles) < 150
    assert profiles[0].first_name == sim.accounts[0].first_name
    profiles[0].first_name = "Changed"
    assert sim.profile(sim.accounts[0].tg_user_id).first_name == "Changed"


async def test_get_me_reflects_profile() -> None:
    sim = make()
    account = ref(sim)
    sim.profile(account.tg_user_id).last_name = "Renamed"  # type: ignore[arg-type]
    me = await sim.get_me(account)
    assert me.user_id == account.tg_user_id and me.last_name == "Renamed"
    assert me.phone == next(a.phone for a in sim.accounts if a.tg_user_id == account.tg_user_id)


async def test_resolve_every_target_form() -> None:
    sim = make()
    account = ref(sim)
    news = sim.channels[0]
    forms = ["@tgfleet_news", "tgfleet_news", "TGFleet_News", "https://t.me/tgfleet_news",
             "t.me/tgfleet_news", "https://t.me/tgfleet_news/123", "http://t.me/tgfleet_news/",
             f"https://t.me/+{news.invite_hash}", f"t.me/joinchat/{news.invite_hash}"]
    for target in forms:
        channel = await sim.resolve_channel(account, target)
        assert (channel.peer_id, channel.username, channel.title) == (news.peer_id, "tgfleet_news", "Tgfleet News"), target


@pytest.mark.parametrize(("target", "error"), [
    ("@tgfleet_private", errors.ChannelPrivateError),
    ("https://t.me/nobody_here_at_all", errors.UsernameNotOccupiedError),
    ("not a username!", errors.UsernameInvalidError),
    ("https://example.com/tgfleet_news", errors.UsernameInvalidError),
    ("https://t.me/+AAAAAAAAAAAAAAAA", errors.InviteHashExpiredError),
    ("t.me/joinchat/nope", errors.InviteHashExpiredError),
])
async def test_resolve_errors_are_telethons(target: str, error: type[Exception]) -> None:
    sim = make()
    with pytest.raises(error):
        await sim.resolve_channel(ref(sim), target)


async def test_access_hash_is_per_account() -> None:
    sim = make()
    mine = await sim.resolve_channel(ref(sim, 0), "@tgfleet_news")
    theirs = await sim.resolve_channel(ref(sim, 1), "@tgfleet_news")
    assert mine.peer_id == theirs.peer_id and mine.access_hash != theirs.access_hash
    with pytest.raises(errors.ChannelInvalidError):
        await sim.channel_stats(ref(sim, 0), theirs)
    with pytest.raises(errors.ChannelInvalidError):
        await sim.last_post_ids(ref(sim, 0), Channel(1, 2, "x", None), 5)


async def test_posts_appear_and_counters_only_grow() -> None:
    clock = Clock()
    sim = make(clock, post_interval_seconds=60, views_per_minute=40)
    account = ref(sim)
    channel = await sim.resolve_channel(account, "@tgfleet_markets")
    ids = await sim.last_post_ids(account, channel, 10)
    assert ids == list(range(INITIAL_POSTS, INITIAL_POSTS - 10, -1))
    assert await sim.last_post_ids(account, channel, 100) == list(range(INITIAL_POSTS, 0, -1))

    newest = ids[0]
    first = await sim.post_stats(account, channel, newest)
    assert first == await sim.post_stats(account, channel, newest)  # reading changes nothing
    previous = first
    for _ in range(50):
        clock.now += 600
        stats = await sim.post_stats(account, channel, newest)
        assert stats == await sim.post_stats(account, channel, newest)
        assert stats.views >= previous.views
        assert stats.forwards >= previous.forwards and stats.replies >= previous.replies
        assert all(stats.reactions.get(k, 0) >= v for k, v in previous.reactions.items())
        previous = stats
    assert previous.views > first.views + 5000  # ~40/min over 500 minutes, give or take
    assert previous.reactions

    later = await sim.last_post_ids(account, channel, 3)
    assert later == list(range(INITIAL_POSTS + 500, INITIAL_POSTS + 497, -1))
    with pytest.raises(errors.MsgIdInvalidError):
        await sim.post_stats(account, channel, later[0] + 1)


async def test_subscribers_grow_slowly() -> None:
    clock = Clock()
    sim = make(clock)
    account = ref(sim)
    channel = await sim.resolve_channel(account, "@tgfleet_news")
    before = await sim.channel_stats(account, channel)
    clock.now += 30 * 86400
    after = await sim.channel_stats(account, channel)
    assert before.title == "Tgfleet News"
    assert before.subscribers < after.subscribers < before.subscribers + 30 * 100


async def test_dead_and_unknown_accounts_raise_their_error() -> None:
    sim = make(accounts=100, dead_fraction=0.2)
    dead = [a for a in sim.accounts if a.dead is not None]
    assert dead
    for account in dead:
        with pytest.raises(account.dead):
            await sim.get_me(AccountRef(id=1, tg_user_id=account.tg_user_id))
    for tg_user_id in (None, 42):
        with pytest.raises(errors.AuthKeyUnregisteredError):
            await sim.get_me(AccountRef(id=1, tg_user_id=tg_user_id))


async def test_faults_are_deterministic_per_account() -> None:
    faulty = dict(flood_wait_rate=0.2, flood_wait_max_seconds=30, peer_flood_rate=0.1, transient_rate=0.1)
    a, b = make(seed=3, **faulty), make(seed=3, **faulty, latency_max_ms=0.001)
    seq = await outcomes(a, ref(a), 300)
    await outcomes(b, ref(b, 1), 17)  # another account's calls don't shift this one's
    assert await outcomes(b, ref(b), 300) == seq
    c = make(seed=4, **faulty)
    assert await outcomes(c, ref(c), 300) != seq

    kinds = {kind for kind, _ in seq}
    assert kinds == {"ok", "FloodWaitError", "PeerFloodError", "RpcCallFailError"}
    waits = [seconds for kind, seconds in seq if kind == "FloodWaitError"]
    assert all(1 <= s <= 30 for s in waits) and len(set(waits)) > 5
    assert 30 < len(waits) < 90  # about 20% of 300


async def test_no_faults_when_rates_are_zero() -> None:
    sim = make(accounts=50)
    for account in sim.accounts:
        me = AccountRef(id=1, tg_user_id=account.tg_user_id)
        channel = await sim.resolve_channel(me, "@tgfleet_weather")
        for post_id in await sim.last_post_ids(me, channel, 5):
            await sim.post_stats(me, channel, post_id)
        await sim.channel_stats(me, channel)
        await sim.get_me(me)


async def test_latency_is_within_bounds_and_zero_means_no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr("tgdaemon.gateway.simulator.asyncio.sleep", fake_sleep)
    quiet = make()
    await quiet.get_me(ref(quiet))
    assert slept == []
    slow = make(latency_min_ms=5, latency_max_ms=40)
    for _ in range(50):
        await slow.get_me(ref(slow))
    assert len(slept) == 50 and all(0.005 <= s <= 0.04 for s in slept) and len(set(slept)) > 1


# -- setup: what an owner does to their own account -------------------------------------------------

PHOTO = MediaFile(Path("/media/avatar.jpg"), "photo", 640, 640)
AVATAR = MediaFile(Path("/media/avatar.mp4"), "video", 480, 480, 4.0, "video/mp4")
STORY = MediaFile(Path("/media/story.jpg"), "photo", 1080, 1920)
STORY_VIDEO = MediaFile(Path("/media/story.mp4"), "video", 720, 1280, 12.0, "video/mp4")


def account_without(sim: Simulator, attribute: str) -> AccountRef:
    """A live account whose profile starts without ``attribute`` (falsy)."""
    live = [a for a in sim.accounts if a.dead is None and not a.is_probe]
    index = next(i for i, a in enumerate(live) if not getattr(sim.profile(a.tg_user_id), attribute))
    return ref(sim, index)


async def test_2fa_reads_reflect_writes() -> None:
    sim = make()
    account = account_without(sim, "has_password")
    assert await sim.has_2fa(account) is False
    await sim.enable_2fa(account, "s3cret")
    assert await sim.has_2fa(account) is True
    assert "s3cret" not in repr(sim.profile(account.tg_user_id))  # not kept
    with pytest.raises(errors.PasswordHashInvalidError):  # a second password without the first one
        await sim.enable_2fa(account, "other")
    with pytest.raises(TaskInputError) as info:
        await sim.enable_2fa(account_without(sim, "has_password"), "")
    assert classify(info.value).code == "NO_2FA_PASSWORD"


async def test_set_name_reflects_in_get_me() -> None:
    sim = make()
    account = ref(sim)
    await sim.set_name(account, "Ops", "Team 7")
    me = await sim.get_me(account)
    assert (me.first_name, me.last_name) == ("Ops", "Team 7")
    await sim.set_name(account, "Solo", "")
    assert (await sim.get_me(account)).last_name == ""
    for first, last in (("  ", "x"), ("x" * 65, "")):
        with pytest.raises(errors.BadRequestError) as info:
            await sim.set_name(account, first, last)
        assert classify(info.value).code == "FIRSTNAME_INVALID" and classify(info.value).kind is ErrorClass.INPUT
    with pytest.raises(errors.LastnameInvalidError):
        await sim.set_name(account, "Ok", "y" * 65)
    assert (await sim.get_me(account)).first_name == "Solo"


async def test_privacy_reads_reflect_writes() -> None:
    sim = make(accounts=100)
    account = ref(sim)
    for key in PrivacyKey:
        for value in (PrivacyValue.EVERYBODY, PrivacyValue.CONTACTS, PrivacyValue.NOBODY):
            await sim.set_privacy(account, key, value)
            assert await sim.get_privacy(account, key) is value
    await sim.set_privacy(account, PrivacyKey.PHONE_NUMBER, PrivacyValue.NOBODY)
    await sim.set_privacy(account, PrivacyKey.LAST_SEEN, PrivacyValue.EVERYBODY)
    assert sim.profile(account.tg_user_id).privacy == BASELINE_PRIVACY
    with pytest.raises(ValueError):
        await sim.set_privacy(account, PrivacyKey.LAST_SEEN, PrivacyValue.CUSTOM)
    # some accounts start with a custom setting (exceptions), which is not the baseline
    starts = [await sim.get_privacy(ref(sim, i), PrivacyKey.LAST_SEEN) for i in range(1, 60)]
    assert PrivacyValue.CUSTOM in starts and len(set(starts)) == 4


async def test_profile_photos_newest_first_with_fresh_ids() -> None:
    clock = Clock()
    sim = make(clock)
    account = account_without(sim, "photos")
    assert await sim.profile_photos(account) == []
    first = await sim.set_profile_photo(account, PHOTO)
    clock.now += 60
    second = await sim.set_profile_photo(account, AVATAR)
    assert second > first
    assert await sim.profile_photos(account) == [Owned(second, clock.now, video=True),
                                                 Owned(first, clock.now - 60, video=False)]
    animated, static = sim.profile(account.tg_user_id).photos
    assert (animated.kind, animated.source, static.kind, static.source) == ("video", "avatar.mp4", "photo", "avatar.jpg")


async def test_profile_photo_rejections() -> None:
    sim = make()
    account = ref(sim)
    before = await sim.profile_photos(account)
    for bad in (MediaFile(Path("wide.mp4"), "video", 640, 480, 3.0, "video/mp4"),
                MediaFile(Path("long.mp4"), "video", 480, 480, 11.0, "video/mp4")):
        with pytest.raises(errors.VideoFileInvalidError):
            await sim.set_profile_photo(account, bad)
    with pytest.raises(errors.PhotoInvalidDimensionsError):
        await sim.set_profile_photo(account, MediaFile(Path("strip.jpg"), "photo", 4200, 100))
    assert await sim.profile_photos(account) == before


async def test_stories_limit_and_expiry() -> None:
    clock = Clock()
    sim = make(clock)
    account = ref(sim)
    assert await sim.my_stories(account) == [] and await sim.can_send_story(account) is True
    ids = []
    for i in range(STORY_LIMIT):
        ids.append(await sim.send_story(account, STORY_VIDEO if i % 2 else STORY))
        clock.now += 10
    assert [s.id for s in await sim.my_stories(account)] == ids[::-1]
    assert await sim.can_send_story(account) is False
    with pytest.raises(errors.BadRequestError) as info:
        await sim.send_story(account, STORY)
    assert type(info.value) is errors.BadRequestError and info.value.message == "STORIES_TOO_MUCH"
    result = classify(info.value)
    assert (result.kind, result.code) == (ErrorClass.WAIT, "STORIES_TOO_MUCH")
    assert len(await sim.my_stories(account)) == STORY_LIMIT

    clock.now += STORY_LIFETIME - 25  # the first has expired, the others not yet
    assert [s.id for s in await sim.my_stories(account)] == ids[:0:-1]
    assert await sim.can_send_story(account) is True
    newest = await sim.send_story(account, STORY)
    assert newest > max(ids)
    assert (await sim.my_stories(account))[0] == Owned(newest, clock.now, video=False)


async def test_every_setup_call_goes_through_faults_and_dead_accounts() -> None:
    sim = make(accounts=40, dead_fraction=0.2, flood_wait_rate=1.0)
    live, dead = ref(sim), next(a for a in sim.accounts if a.dead is not None)
    calls = [
        lambda a: sim.has_2fa(a), lambda a: sim.enable_2fa(a, "pw"), lambda a: sim.set_name(a, "A", "B"),
        lambda a: sim.get_privacy(a, PrivacyKey.LAST_SEEN),
        lambda a: sim.set_privacy(a, PrivacyKey.LAST_SEEN, PrivacyValue.EVERYBODY),
        lambda a: sim.profile_photos(a), lambda a: sim.set_profile_photo(a, PHOTO), lambda a: sim.can_send_story(a),
        lambda a: sim.my_stories(a), lambda a: sim.send_story(a, STORY),
    ]
    before = repr(sim.profile(live.tg_user_id))
    for call in calls:
        with pytest.raises(errors.FloodWaitError):
            await call(live)
        with pytest.raises(dead.dead):
            await call(AccountRef(id=9, tg_user_id=dead.tg_user_id))
    assert repr(sim.profile(live.tg_user_id)) == before  # a failed call changed nothing


async def _setup_run(sim: Simulator, clock: Clock) -> list[object]:
    out: list[object] = []
    for index in range(5):
        account = ref(sim, index)
        for step in range(12):
            clock.now += 1
            try:
                if step % 4 == 0:
                    out.append(await sim.set_profile_photo(account, PHOTO))
                elif step % 4 == 1:
                    out.append(await sim.send_story(account, STORY))
                elif step % 4 == 2:
                    await sim.set_privacy(account, PrivacyKey.PHONE_NUMBER, PrivacyValue.NOBODY)
                    out.append(await sim.get_privacy(account, PrivacyKey.PHONE_NUMBER))
                else:
                    out.append((await sim.has_2fa(account), await sim.my_stories(account)))
            except Exception as exc:  # noqa: BLE001 - the outcomes are the point
                out.append((type(exc).__name__, getattr(exc, "seconds", None), getattr(exc, "message", None)))
    return out


async def test_setup_calls_are_deterministic_under_the_seed() -> None:
    faulty = {"flood_wait_rate": 0.2, "peer_flood_rate": 0.05, "transient_rate": 0.1}
    runs = []
    for seed in (5, 5, 6):
        clock = Clock()
        runs.append(await _setup_run(make(clock, seed=seed, **faulty), clock))
    assert runs[0] == runs[1] and runs[0] != runs[2]
    kinds = {o[0] for o in runs[0] if isinstance(o, tuple) and isinstance(o[0], str)}
    assert "FloodWaitError" in kinds and any(isinstance(o, int) for o in runs[0])
