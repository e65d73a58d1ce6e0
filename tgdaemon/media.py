"""Media files for the setup tasks: probe them before any upload, make animated avatars.

``probe`` reads what Telegram needs to be told (width, height, duration) from
the file itself: JPEG SOF and PNG IHDR headers for photos, the ISO BMFF boxes
(moov/mvhd, trak/tkhd, mdia/hdlr, stsd) for MP4 videos. No third-party parser
and no ffprobe: a few hundred bytes of headers are read, never the whole file.

``animated_avatar`` gives a square MPEG-4 of at most 10 s, as Telegram wants
for animated profile photos: a conforming MP4 is used as is, anything else
(a GIF, a long or non-square MP4) is converted with ffmpeg into ``workdir``.

Both are blocking (file reads, a subprocess): call them from a thread
(``asyncio.to_thread``). Every failure is a :class:`TaskInputError` whose
message names the path.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from tgdaemon.classify import (
    FFMPEG_MISSING,
    MEDIA_FILE_MISSING,
    MEDIA_INVALID,
    MEDIA_UNREADABLE,
    TaskInputError,
)
from tgdaemon.gateway.base import MediaFile

AVATAR_MAX_SECONDS = 10.0
AVATAR_MAX_SIDE = 800  # converted avatars are scaled down to this; Telegram shows them at 800 px at most
FFMPEG_TIMEOUT = 120.0
PHOTO_MAX_SUM = 10_000  # Telegram: width + height of a photo at most 10000
PHOTO_MAX_RATIO = 20  # Telegram: the long side at most 20 times the short one
VIDEO_MAX_SIDE = 8192
MAX_MOOV = 64 * 1024 * 1024  # a moov box larger than this is not a file we want to upload
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GIF_MAGICS = (b"GIF87a", b"GIF89a")
# SOF markers: C0-CF except C4 (DHT), C8 (JPG extension) and CC (DAC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_CONTAINERS = frozenset({b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"edts"})


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What probe_video finds in an MP4, beyond MediaFile: the video codec and whether there is sound."""

    media: MediaFile
    codec: str  # the sample entry of the video track: avc1, hvc1, hev1, av01, mp4v...
    has_audio: bool


def _invalid(path: Path, why: str) -> TaskInputError:
    return TaskInputError(MEDIA_INVALID, f"{path}: {why}")


def _open(path: Path) -> BinaryIO:
    """The file, opened for reading, or the TaskInputError saying why not."""
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise TaskInputError(MEDIA_FILE_MISSING, f"{path}: no such file") from None
    except IsADirectoryError:
        raise TaskInputError(MEDIA_UNREADABLE, f"{path}: is a directory, not a file") from None
    except OSError as exc:
        raise TaskInputError(MEDIA_UNREADABLE, f"{path}: cannot read it ({exc.strerror or exc})") from None


def _read(path: Path, f: BinaryIO, n: int) -> bytes:
    try:
        return f.read(n)
    except OSError as exc:
        raise TaskInputError(MEDIA_UNREADABLE, f"{path}: cannot read it ({exc.strerror or exc})") from None


def probe(path: Path, kind: Literal["photo", "video"]) -> MediaFile:
    """A checked photo (JPEG or PNG) or video (MP4 with a video track): its dimensions and duration."""
    path = Path(path)
    if kind == "photo":
        return probe_photo(path)
    if kind == "video":
        return probe_video(path).media
    raise ValueError(f"unknown media kind {kind!r}")


# -- photos ------------------------------------------------------------------------------------------


def probe_photo(path: Path) -> MediaFile:
    with _open(path) as f:
        head = _read(path, f, 32)
        if head.startswith(PNG_MAGIC):
            width, height, mime = *_png_size(path, head), "image/png"
        elif head.startswith(JPEG_MAGIC):
            f.seek(2)
            width, height, mime = *_jpeg_size(path, f), "image/jpeg"
        elif not head:
            raise _invalid(path, "the file is empty")
        else:
            raise _invalid(path, "not a JPEG or PNG image")
    if width <= 0 or height <= 0 or width + height > PHOTO_MAX_SUM \
            or max(width, height) > PHOTO_MAX_RATIO * min(width, height):
        raise _invalid(path, f"unusable dimensions {width}x{height} (Telegram wants width + height <= "
                             f"{PHOTO_MAX_SUM} and sides within 1:{PHOTO_MAX_RATIO})")
    return MediaFile(path, "photo", width, height, 0.0, mime)


def _png_size(path: Path, head: bytes) -> tuple[int, int]:
    # signature (8), then the first chunk, which must be IHDR: length (4), type (4), width (4), height (4)
    if len(head) < 24 or head[12:16] != b"IHDR":
        raise _invalid(path, "a PNG without its IHDR header")
    return struct.unpack(">II", head[16:24])


def _jpeg_size(path: Path, f: BinaryIO) -> tuple[int, int]:
    """Walk the JPEG segments up to the first SOF: its height and width."""
    while True:
        byte = _read(path, f, 1)
        if byte != b"\xff":
            raise _invalid(path, "a JPEG whose headers are broken" if byte else "a JPEG cut short before its size")
        marker = _read(path, f, 1)
        while marker == b"\xff":  # fill bytes
            marker = _read(path, f, 1)
        if not marker:
            raise _invalid(path, "a JPEG cut short before its size")
        code = marker[0]
        if code == 0x01 or 0xD0 <= code <= 0xD8:  # TEM, RSTn, SOI: no length
            continue
        if code in (0xD9, 0xDA):  # EOI, SOS: the image data starts and no frame header came
            raise _invalid(path, "a JPEG without a frame header")
        raw = _read(path, f, 2)
        if len(raw) < 2 or (length := struct.unpack(">H", raw)[0]) < 2:
            raise _invalid(path, "a JPEG whose headers are broken")
        if code in _SOF:
            frame = _read(path, f, 5)
            if len(frame) < 5:
                raise _invalid(path, "a JPEG cut short before its size")
            _precision, height, width = struct.unpack(">BHH", frame)
            return width, height
        f.seek(length - 2, os.SEEK_CUR)


# -- videos ------------------------------------------------------------------------------------------


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the boxes in data[start:end]; stops at a malformed one."""
    end = len(data) if end is None else end
    out = []
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        header = 8
        if size == 1:
            if pos + 16 > end:
                break
            size = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            break
        out.append((kind, pos + header, pos + size))
        pos += size
    return out


def _top_level(path: Path, f: BinaryIO) -> tuple[bytes, bytes]:
    """(first box type, the moov payload): seeks from box to box, reads only moov."""
    f.seek(0, os.SEEK_END)
    file_end = f.tell()
    pos = 0
    first = b""
    while pos + 8 <= file_end:
        f.seek(pos)
        header = _read(path, f, 16)
        size, kind = struct.unpack(">I4s", header[:8])
        head_len = 8
        if size == 1 and len(header) == 16:
            size, head_len = struct.unpack(">Q", header[8:16])[0], 16
        elif size == 0:
            size = file_end - pos
        if not first:
            first = kind
            if kind != b"ftyp":
                break
        if size < head_len:
            break
        if kind == b"moov":
            if size > MAX_MOOV:
                raise _invalid(path, "an MP4 whose index (moov) is implausibly large")
            f.seek(pos + head_len)
            payload = _read(path, f, size - head_len)
            if len(payload) < size - head_len:
                raise _invalid(path, "an MP4 cut short inside its index (moov)")
            return first, payload
        pos += size
    if first != b"ftyp":
        raise _invalid(path, "not an MP4 video" if first or file_end else "the file is empty")
    raise _invalid(path, "an MP4 without its index (moov box): incomplete or fragmented")


def _find(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    return next(((s, e) for k, s, e in _boxes(data, start, end) if k == kind), None)


def _fixed(value: int) -> float:
    return value / 65536


def probe_video(path: Path) -> VideoInfo:
    """An MP4's display size (tkhd, rotation applied), duration (mvhd), video codec, and audio presence."""
    with _open(path) as f:
        _, moov = _top_level(path, f)
    duration = 0.0
    video: tuple[int, int, str] | None = None
    has_audio = False
    for kind, start, end in _boxes(moov):
        if kind == b"mvhd" and end - start >= 20:
            version = moov[start]
            if version == 1 and end - start >= 32:
                timescale, length = struct.unpack(">IQ", moov[start + 20:start + 32])
            else:
                timescale, length = struct.unpack(">II", moov[start + 12:start + 20])
            if timescale and length not in (0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF):
                duration = length / timescale
        elif kind == b"trak":
            handler, size, codec = _track(moov, start, end)
            if handler == b"vide" and video is None and size is not None:
                video = (*size, codec)
            elif handler == b"soun":
                has_audio = True
    if video is None:
        raise _invalid(path, "an MP4 without a video track")
    width, height, codec = video
    if not (0 < width <= VIDEO_MAX_SIDE and 0 < height <= VIDEO_MAX_SIDE):
        raise _invalid(path, f"unusable video dimensions {width}x{height}")
    if duration <= 0:
        raise _invalid(path, "an MP4 without a duration")
    return VideoInfo(MediaFile(path, "video", width, height, round(duration, 3), "video/mp4"), codec, has_audio)


def _track(moov: bytes, start: int, end: int) -> tuple[bytes, tuple[int, int] | None, str]:
    """(handler type, display (width, height) or None, codec) of one trak box."""
    size: tuple[int, int] | None = None
    handler = b""
    codec = ""
    coded: tuple[int, int] | None = None
    for kind, s, e in _boxes(moov, start, end):
        if kind == b"tkhd" and e - s >= (96 if moov[s] == 1 else 84):
            rest = s + (4 + 32 if moov[s] == 1 else 4 + 20)  # version/flags, then times, ids, duration
            matrix = struct.unpack(">9i", moov[rest + 16:rest + 52])  # after reserved(8) layer alt volume reserved
            w, h = struct.unpack(">II", moov[rest + 52:rest + 60])
            w, h = round(_fixed(w)), round(_fixed(h))
            if matrix[0] == 0 and matrix[4] == 0:  # a 90 or 270 degree rotation: shown the other way round
                w, h = h, w
            size = (w, h)
        elif kind == b"mdia":
            if (hdlr := _find(moov, s, e, b"hdlr")) is not None and hdlr[1] - hdlr[0] >= 12:
                handler = moov[hdlr[0] + 8:hdlr[0] + 12]
            stsd = None
            if (minf := _find(moov, s, e, b"minf")) and (stbl := _find(moov, *minf, b"stbl")):
                stsd = _find(moov, *stbl, b"stsd")
            if stsd is not None and stsd[1] - stsd[0] >= 16:
                entry = stsd[0] + 8  # version/flags, entry count
                codec = moov[entry + 4:entry + 8].decode("latin-1")
                if stsd[1] - entry >= 36:  # visual sample entry: 8 + 16 bytes in, width and height (16 bit)
                    coded = struct.unpack(">HH", moov[entry + 32:entry + 36])
    if size is not None and 0 in size and coded is not None:
        size = coded
    return handler, size, codec.strip()


# -- animated avatars --------------------------------------------------------------------------------


def _conforms(info: VideoInfo) -> bool:
    m = info.media
    return m.width == m.height and m.duration <= AVATAR_MAX_SECONDS and info.codec == "avc1"


def find_ffmpeg(ffmpeg: str | None) -> str | None:
    """An explicit path (or command name) if it is there; else ffmpeg on PATH; else None."""
    if ffmpeg:
        return shutil.which(ffmpeg)
    return shutil.which("ffmpeg")


def animated_avatar(path: Path, workdir: Path, ffmpeg: str | None = None) -> MediaFile:
    """A square H.264 MP4 of at most 10 s from ``path`` (a GIF or an MP4): as is, or converted into ``workdir``.

    A conversion is named after the source's path, size and mtime, so a retry reuses it.
    """
    path = Path(path)
    with _open(path) as f:
        head = _read(path, f, 12)
    if head[4:8] == b"ftyp":
        info = probe_video(path)
        if _conforms(info):
            return info.media
    elif not head.startswith(GIF_MAGICS):
        raise _invalid(path, "not a GIF or an MP4 video" if head else "the file is empty")
    exe = find_ffmpeg(ffmpeg)
    if exe is None:
        what = f"ffmpeg at {ffmpeg!r} was not found" if ffmpeg else "ffmpeg is not installed (not on PATH)"
        raise TaskInputError(FFMPEG_MISSING, f"{path}: converting it to an animated profile photo needs ffmpeg, "
                                             f"but {what}: install it (apt install ffmpeg) or set its path")
    stat = path.stat()
    digest = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    out = Path(workdir) / f"{path.stem}-avatar-{digest}.mp4"
    if out.exists():
        try:
            info = probe_video(out)
        except TaskInputError:
            pass
        else:
            if _conforms(info):
                return info.media
    Path(workdir).mkdir(parents=True, exist_ok=True)
    # A name of its own per conversion: two tasks converting the same GIF at once must not share one.
    partial = out.with_name(f".{out.name}.{os.getpid()}.{secrets.token_hex(4)}.partial.mp4")
    side = f"2*trunc(min(min(iw,ih),{AVATAR_MAX_SIDE})/2)"
    command = [exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(path),
               "-t", f"{AVATAR_MAX_SECONDS:g}", "-an", "-sn", "-dn", "-map", "0:v:0",
               "-vf", f"crop='min(iw,ih)':'min(iw,ih)',scale='{side}':'{side}',format=yuv420p",
               "-c:v", "libx264", "-preset", "veryfast", "-crf", "26", "-pix_fmt", "yuv420p",
               "-movflags", "+faststart", "-f", "mp4", str(partial)]
    try:
        try:
            done = subprocess.run(command, capture_output=True, timeout=FFMPEG_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise _invalid(path, f"ffmpeg did not finish converting it within {FFMPEG_TIMEOUT:g} s") from None
        except OSError as exc:
            raise TaskInputError(FFMPEG_MISSING, f"{path}: could not run ffmpeg ({exe}): "
                                                 f"{exc.strerror or exc}") from None
        if done.returncode != 0:
            lines = [line.strip() for line in done.stderr.decode(errors="replace").splitlines() if line.strip()]
            first = lines[0][:200] if lines else f"exit status {done.returncode}"
            raise _invalid(path, f"ffmpeg could not convert it: {first}")
        try:
            info = probe_video(partial)
        except TaskInputError as exc:
            raise _invalid(path, f"ffmpeg's output is unusable ({str(exc).split(': ', 1)[-1]})") from None
        if not _conforms(info):
            raise _invalid(path, f"ffmpeg made a {info.media.width}x{info.media.height}, {info.media.duration} s "
                                 f"{info.codec} video, not a square H.264 of at most {AVATAR_MAX_SECONDS:g} s")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return MediaFile(out, "video", info.media.width, info.media.height, info.media.duration, "video/mp4")


__all__ = ["FFMPEG_MISSING", "VideoInfo", "animated_avatar", "find_ffmpeg", "probe", "probe_photo", "probe_video"]
