"""Media probing and animated avatars, on real files made here (Pillow, and imageio-ffmpeg's ffmpeg)."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from tgdaemon import media
from tgdaemon.classify import ErrorClass, TaskInputError, classify, classify_code
from tgdaemon.gateway.base import MediaFile

try:
    import imageio_ffmpeg
except ImportError:  # pragma: no cover - the test extras install it
    FFMPEG = None
else:
    FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()

needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="imageio-ffmpeg is not installed")


def ffmpeg(*args: str) -> None:
    assert FFMPEG is not None
    done = subprocess.run([FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args],
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")


def make_mp4(path: Path, width: int, height: int, seconds: float, *, audio: bool = False,
             codec: str = "libx264", faststart: bool = False) -> Path:
    """A real MP4 from a test pattern (moov at the end, as ffmpeg writes by default, unless faststart)."""
    args = ["-f", "lavfi", "-i", f"testsrc=size={width}x{height}:rate=10:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=duration={seconds}", "-c:a", "aac", "-shortest"]
    args += ["-c:v", codec, "-pix_fmt", "yuv420p"]
    if faststart:
        args += ["-movflags", "+faststart"]
    ffmpeg(*args, str(path))
    return path


def make_gif(path: Path, width: int, height: int, frames: int, frame_ms: int = 100) -> Path:
    images = [Image.new("RGB", (width, height), (i * 17 % 256, 80, 200 - i * 7 % 200)) for i in range(frames)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=frame_ms, loop=0)
    return path


def assert_input_error(info: pytest.ExceptionInfo[TaskInputError], code: str, path: Path) -> None:
    assert info.value.code == code
    assert str(path) in str(info.value)
    result = classify(info.value)
    assert (result.kind, result.code) == (ErrorClass.INPUT, code)


# -- photos ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "mime", "options"), [
    ("JPEG", "image/jpeg", {}),
    ("JPEG", "image/jpeg", {"progressive": True}),
    ("JPEG", "image/jpeg", {"exif": Image.Exif(), "icc_profile": b"\0" * 3000}),  # APPn segments before SOF
    ("PNG", "image/png", {}),
])
def test_probe_photo(tmp_path: Path, fmt: str, mime: str, options: dict[str, object]) -> None:
    path = tmp_path / f"photo.{fmt.lower()}"
    Image.new("RGB", (641, 479), "teal").save(path, fmt, **options)
    assert media.probe(path, "photo") == MediaFile(path, "photo", 641, 479, 0.0, mime)


def test_probe_photo_reads_the_header_not_the_extension(tmp_path: Path) -> None:
    path = tmp_path / "actually-a-png.jpg"
    Image.new("RGBA", (10, 20)).save(path, "PNG")
    assert (media.probe(path, "photo").mime_type, media.probe(path, "photo").height) == ("image/png", 20)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jpg"
    for call in (lambda: media.probe(path, "photo"), lambda: media.probe(path, "video"),
                 lambda: media.animated_avatar(path, tmp_path, FFMPEG)):
        with pytest.raises(TaskInputError) as info:
            call()
        assert_input_error(info, "MEDIA_FILE_MISSING", path)


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "photo.jpg"
    directory.mkdir()
    with pytest.raises(TaskInputError) as info:
        media.probe(directory, "photo")
    assert_input_error(info, "MEDIA_UNREADABLE", directory)

    locked = tmp_path / "locked.jpg"
    Image.new("RGB", (8, 8)).save(locked, "JPEG")
    if os.geteuid() != 0:
        locked.chmod(0)
    else:  # root reads anything: refuse the open as the kernel would for anyone else
        real_open = Path.open

        def deny(self: Path, *args: object, **kwargs: object) -> object:
            if self == locked:
                raise PermissionError(13, "Permission denied", str(self))
            return real_open(self, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(Path, "open", deny)
    with pytest.raises(TaskInputError) as info:
        media.probe(locked, "photo")
    assert_input_error(info, "MEDIA_UNREADABLE", locked)
    assert "Permission denied" in str(info.value)


@pytest.mark.parametrize(("name", "content"), [
    ("empty.jpg", b""),
    ("text.jpg", b"hello, this is not an image at all\n" * 10),
    ("random.png", bytes(range(256)) * 4),
    ("gif.jpg", b"GIF89a" + b"\0" * 100),
    ("cut.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF"),  # a JPEG cut short before its frame header
    ("nosof.jpg", b"\xff\xd8\xff\xda\x00\x08" + b"\0" * 50),  # scan data with no frame header
    ("badpng.png", b"\x89PNG\r\n\x1a\n" + b"\0\0\0\rIDAT" + b"\0" * 20),  # no IHDR first
])
def test_garbage_photo_is_invalid(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(TaskInputError) as info:
        media.probe(path, "photo")
    assert_input_error(info, "MEDIA_INVALID", path)


@pytest.mark.parametrize("size", [(4000, 150), (9000, 2000)])  # ratio over 20; width + height over 10000
def test_unusable_photo_dimensions(tmp_path: Path, size: tuple[int, int]) -> None:
    path = tmp_path / "wide.png"
    Image.new("1", size).save(path, "PNG")
    with pytest.raises(TaskInputError) as info:
        media.probe(path, "photo")
    assert_input_error(info, "MEDIA_INVALID", path)
    assert f"{size[0]}x{size[1]}" in str(info.value)


def test_zero_sized_png_header_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "zero.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I4sII", 13, b"IHDR", 0, 10) + b"\x08\x02\0\0\0" + b"\0" * 4)
    with pytest.raises(TaskInputError) as info:
        media.probe(path, "photo")
    assert_input_error(info, "MEDIA_INVALID", path)


# -- videos ----------------------------------------------------------------------------------------


@needs_ffmpeg
@pytest.mark.parametrize("faststart", [False, True])
def test_probe_video(tmp_path: Path, faststart: bool) -> None:
    path = make_mp4(tmp_path / "clip.mp4", 320, 240, 2.5, audio=True, faststart=faststart)
    info = media.probe_video(path)
    assert info.media == MediaFile(path, "video", 320, 240, pytest.approx(2.5, abs=0.1), "video/mp4")
    assert (info.codec, info.has_audio) == ("avc1", True)
    assert media.probe(path, "video") == info.media


@needs_ffmpeg
def test_probe_video_applies_rotation(tmp_path: Path) -> None:
    plain = make_mp4(tmp_path / "plain.mp4", 320, 240, 1)
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(plain), "-c", "copy", str(rotated))
    shown = media.probe(rotated, "video")
    assert (shown.width, shown.height) == (240, 320)


@needs_ffmpeg
def test_video_without_video_track_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "sound.mp4"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", str(path))
    with pytest.raises(TaskInputError) as info:
        media.probe(path, "video")
    assert_input_error(info, "MEDIA_INVALID", path)
    assert "video track" in str(info.value)


@needs_ffmpeg
def test_truncated_mp4_is_invalid(tmp_path: Path) -> None:
    whole = make_mp4(tmp_path / "whole.mp4", 64, 64, 1)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # moov is at the end: gone
    with pytest.raises(TaskInputError) as info:
        media.probe(cut, "video")
    assert_input_error(info, "MEDIA_INVALID", cut)


@pytest.mark.parametrize(("name", "content"), [
    ("empty.mp4", b""),
    ("text.mp4", b"definitely not a video" * 20),
    ("jpeg.mp4", b"\xff\xd8\xff\xe0" + b"\0" * 100),
    ("ftyp-only.mp4", struct.pack(">I4s4sI", 16, b"ftyp", b"isom", 0)),
    ("bad-box.mp4", struct.pack(">I4s4sI", 16, b"ftyp", b"isom", 0) + struct.pack(">I4s", 3, b"moov")),
])
def test_garbage_video_is_invalid(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(TaskInputError) as info:
        media.probe(path, "video")
    assert_input_error(info, "MEDIA_INVALID", path)


def test_photo_as_video_and_video_as_photo_are_invalid(tmp_path: Path) -> None:
    jpeg = tmp_path / "p.jpg"
    Image.new("RGB", (8, 8)).save(jpeg, "JPEG")
    with pytest.raises(TaskInputError) as info:
        media.probe(jpeg, "video")
    assert_input_error(info, "MEDIA_INVALID", jpeg)


# -- animated avatars ------------------------------------------------------------------------------


@needs_ffmpeg
def test_conforming_mp4_is_used_as_is(tmp_path: Path) -> None:
    path = make_mp4(tmp_path / "square.mp4", 240, 240, 3)
    workdir = tmp_path / "work"
    result = media.animated_avatar(path, workdir, ffmpeg="/nonexistent/ffmpeg")  # no ffmpeg needed
    assert result.path == path and (result.width, result.height) == (240, 240)
    assert not workdir.exists()


@needs_ffmpeg
def test_gif_is_converted_to_a_square_short_h264(tmp_path: Path) -> None:
    gif = make_gif(tmp_path / "anim.gif", 200, 120, frames=12)
    workdir = tmp_path / "work"
    result = media.animated_avatar(gif, workdir, FFMPEG)
    assert result.path.parent == workdir and result.path.suffix == ".mp4"
    assert (result.kind, result.mime_type, result.width, result.height) == ("video", "video/mp4", 120, 120)
    assert 0 < result.duration <= 10
    info = media.probe_video(result.path)
    assert info.media == result and info.codec == "avc1" and not info.has_audio
    assert [p.name for p in workdir.iterdir()] == [result.path.name]  # no partial file left behind
    # a retry reuses the conversion
    mtime = result.path.stat().st_mtime_ns
    assert media.animated_avatar(gif, workdir, FFMPEG) == result and result.path.stat().st_mtime_ns == mtime


@needs_ffmpeg
def test_long_wide_mp4_with_sound_is_cut_cropped_and_silenced(tmp_path: Path) -> None:
    path = make_mp4(tmp_path / "long.mp4", 320, 180, 12, audio=True, faststart=True)
    result = media.animated_avatar(path, tmp_path / "work", FFMPEG)
    info = media.probe_video(result.path)
    assert (info.media.width, info.media.height) == (180, 180)
    assert info.media.duration == pytest.approx(10, abs=0.2) and info.media.duration <= 10.05
    assert not info.has_audio and info.codec == "avc1"


@needs_ffmpeg
def test_ffmpeg_found_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert FFMPEG is not None
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "ffmpeg").symlink_to(FFMPEG)
    monkeypatch.setenv("PATH", str(bindir))
    result = media.animated_avatar(make_gif(tmp_path / "a.gif", 64, 48, 3), tmp_path / "work", None)
    assert (result.width, result.height) == (48, 48)


def test_no_ffmpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gif = make_gif(tmp_path / "anim.gif", 40, 30, 2)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(TaskInputError) as info:
        media.animated_avatar(gif, tmp_path / "work", None)
    assert_input_error(info, "FFMPEG_MISSING", gif)
    assert classify_code("FFMPEG_MISSING").kind is ErrorClass.INPUT  # a provider report means the same
    assert "install" in str(info.value) and "ffmpeg" in str(info.value)
    with pytest.raises(TaskInputError) as info:
        media.animated_avatar(gif, tmp_path / "work", str(tmp_path / "no-such-ffmpeg"))
    assert_input_error(info, "FFMPEG_MISSING", gif)
    assert "no-such-ffmpeg" in str(info.value)


def test_failing_ffmpeg_gives_its_first_stderr_line(tmp_path: Path) -> None:
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\necho 'anim.gif: Invalid data found when processing input' >&2\n"
                    "echo 'second line' >&2\nexit 1\n")
    fake.chmod(0o755)
    gif = make_gif(tmp_path / "anim.gif", 40, 30, 2)
    with pytest.raises(TaskInputError) as info:
        media.animated_avatar(gif, tmp_path / "work", str(fake))
    assert_input_error(info, "MEDIA_INVALID", gif)
    assert "Invalid data found when processing input" in str(info.value) and "second line" not in str(info.value)
    assert not any((tmp_path / "work").iterdir())


@needs_ffmpeg
def test_broken_gif_fails_in_ffmpeg_as_invalid(tmp_path: Path) -> None:
    gif = tmp_path / "broken.gif"
    gif.write_bytes(b"GIF89a" + os.urandom(64))
    with pytest.raises(TaskInputError) as info:
        media.animated_avatar(gif, tmp_path / "work", FFMPEG)
    assert_input_error(info, "MEDIA_INVALID", gif)
    assert "ffmpeg" in str(info.value)


def test_not_a_gif_or_mp4(tmp_path: Path) -> None:
    path = tmp_path / "avatar.png"
    Image.new("RGB", (8, 8)).save(path, "PNG")
    with pytest.raises(TaskInputError) as info:
        media.animated_avatar(path, tmp_path, FFMPEG)
    assert_input_error(info, "MEDIA_INVALID", path)


def test_ffmpeg_on_path_is_what_shutil_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: f"/opt/{name}" if name == "ffmpeg" else None)
    assert media.find_ffmpeg(None) == "/opt/ffmpeg"
    assert media.find_ffmpeg("/elsewhere/ffmpeg") is None
