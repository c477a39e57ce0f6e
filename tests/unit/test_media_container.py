"""Issue 18: what a video container says of itself (time, place, camera, turn) and whether it is whole."""

from __future__ import annotations

import io
import struct
import time

import pytest
from PIL import Image

from nasclip.media.container import (
    capture_time,
    display_transpose,
    incomplete,
    lowered,
    position,
    rotate_tag,
    video_meta,
)


def test_quicktime_creationdate_is_the_wall_clock_with_its_zone() -> None:
    taken = capture_time(lowered({"com.apple.quicktime.creationdate": "2023-06-01T14:05:06+0200",
                                  "creation_time": "2023-06-01T12:05:06.000000Z"}))
    assert taken is not None and taken.offset == 120 and taken.source == "exif"
    assert taken.as_datetime().isoformat() == "2023-06-01T14:05:06+02:00"


def test_creation_time_is_an_instant_shown_on_the_nas_clock() -> None:
    taken = capture_time(lowered({"creation_time": "2023-06-01T12:05:06.000000Z"}))
    assert taken is not None and taken.utc == 1685621106.0
    assert taken.offset == time.localtime(1685621106).tm_gmtoff // 60


@pytest.mark.parametrize("value", ["1904-01-01T00:00:00.000000Z", "1970-01-01T00:00:00.000000Z", "0000-00-00",
                                   "yesterday", "2023-02-30T10:00:00Z", ""])
def test_unset_impossible_and_junk_dates_are_unknown(value: str) -> None:
    assert capture_time(lowered({"creation_time": value, "com.apple.quicktime.creationdate": value})) is None


def test_iso6709_positions_with_and_without_altitude_and_their_junk() -> None:
    assert position({"location": "+48.8584+002.2945+035.000/"}).altitude == 35.0  # type: ignore[union-attr]
    here = position({"com.apple.quicktime.location.iso6709": "-33.8568+151.2153/"})
    assert here is not None and (here.lat, here.lon, here.altitude) == (-33.8568, 151.2153, None)
    assert position({"location": "+35.6895+139.6917+040.000CRSWGS_84/"}) is not None
    for junk in ("+00.0000+000.0000/", "+95.0+010.0/", "north", "+48.8584/"):
        assert position({"location": junk}) is None, junk


def test_camera_make_and_model_from_quicktime_or_android_keys() -> None:
    meta = video_meta(lowered({"com.apple.quicktime.make": "Apple", "com.apple.quicktime.model": "Apple iPhone 13"}))
    assert (meta.make, meta.model) == ("Apple", "iPhone 13")
    meta = video_meta(lowered({"com.android.manufacturer": "samsung", "com.android.model": " SM-S911B\n"}))
    assert (meta.make, meta.model) == ("samsung", "SM-S911B")
    assert video_meta({}) == video_meta(lowered({"encoder": "Lavf62"}))


def matrix(a: float, b: float, c: float, d: float) -> list[int]:
    """A display matrix as FFmpeg stores it: 16.16 fixed point, the last column 2.30."""
    return [round(a * 65536), round(b * 65536), 0, round(c * 65536), round(d * 65536), 0, 0, 0, 1 << 30]


def test_the_display_matrix_gives_fftools_turns() -> None:
    # av_display_rotation_set(m, angle) with angle counter-clockwise: (cos, -sin, sin, cos).
    assert display_transpose(matrix(1, 0, 0, 1)) is None
    assert display_transpose(matrix(0, 1, -1, 0)) == Image.Transpose.ROTATE_270  # -90: iPhone portrait
    assert display_transpose(matrix(0, -1, 1, 0)) == Image.Transpose.ROTATE_90
    assert display_transpose(matrix(-1, 0, 0, -1)) == Image.Transpose.ROTATE_180
    assert display_transpose(matrix(-1, 0, 0, 1)) == Image.Transpose.FLIP_LEFT_RIGHT
    assert display_transpose(matrix(1, 0, 0, -1)) == Image.Transpose.FLIP_TOP_BOTTOM
    assert display_transpose(matrix(0, 1, 1, 0)) == Image.Transpose.TRANSPOSE
    assert display_transpose(matrix(0, -1, -1, 0)) == Image.Transpose.TRANSVERSE
    assert display_transpose(matrix(0.7071, 0.7071, -0.7071, 0.7071)) is None  # 45 degrees: left alone
    assert display_transpose([0] * 9) is None and display_transpose(None) is None


def test_an_old_rotate_tag_is_read_clockwise() -> None:
    assert rotate_tag({"rotate": "90"}) == Image.Transpose.ROTATE_270
    assert rotate_tag({"rotate": "270"}) == Image.Transpose.ROTATE_90
    assert rotate_tag({"rotate": "45"}) is None and rotate_tag({}) is None


def box(kind: bytes, length: int, body: bytes = b"") -> bytes:
    return struct.pack(">I", length) + kind + body


def test_incomplete_mp4_matroska_and_transport_streams_are_told_apart_from_whole_ones() -> None:
    whole = box(b"ftyp", 16, b"isom\0\0\0\0") + box(b"mdat", 24, b"\0" * 16) + box(b"moov", 8)
    assert not incomplete(io.BytesIO(whole))
    assert incomplete(io.BytesIO(whole[:30]))
    segment = b"\x18\x53\x80\x67" + bytes([0x01, 0, 0, 0, 0, 0, 0, 0x40]) + b"\0" * 0x40
    header = b"\x1a\x45\xdf\xa3" + bytes([0x84]) + b"webm"
    assert not incomplete(io.BytesIO(header + segment))
    assert incomplete(io.BytesIO(header + segment[:40]))
    live = b"\x1a\x45\xdf\xa3\x84webm" + b"\x18\x53\x80\x67" + b"\x01\xff\xff\xff\xff\xff\xff\xff" + b"\0" * 30
    assert not incomplete(io.BytesIO(live))  # unknown size: being recorded, cannot tell
    assert not incomplete(io.BytesIO(b"\x47" + b"\0" * (188 * 3 - 1)))
    assert incomplete(io.BytesIO(b"\x47" + b"\0" * (188 * 3 - 50)))
    assert not incomplete(io.BytesIO(b"\0\0\0\0\x47" + b"\0" * (192 * 2 - 5)))
    assert incomplete(io.BytesIO(b"\0\0\0\0\x47" + b"\0" * (192 * 2 - 9)))
    assert incomplete(io.BytesIO(b"\0" * 5)) and not incomplete(io.BytesIO(b"FLV\x01" + b"\0" * 100))


def test_video_settings_reach_the_sampler_and_bad_ones_are_refused() -> None:
    from pathlib import Path

    from nasclip.config import ConfigError, parse_config
    from nasclip.media.video import video_limits

    base = "shares:\n  - name: photos\n    path: pics\nmodel: models/demo\n"
    config = parse_config(base + "indexer:\n  max_pixels: 5000000\nvideo:\n  frame_interval: 2.5\n  max_frames: 12\n"
                          "  decode_timeout: 30\n", Path("/etc/nasclip/nasclip.yaml"))
    limits = video_limits(config)
    assert (limits.frame_interval, limits.max_frames, limits.max_duration) == (2.5, 12, 21600.0)
    assert (limits.read.max_pixels, limits.read.max_bytes, limits.read.timeout) == (5_000_000, 64 << 30, 30.0)
    assert limits.read.bytes_setting == "video.max_file_bytes"
    with pytest.raises(ConfigError) as refused:
        parse_config(base + "video:\n  frame_interval: 0\n  max_frames: 0\n", Path("/etc/nasclip/nasclip.yaml"))
    assert "video.frame_interval" in str(refused.value) and "video.max_frames" in str(refused.value)
    # A moment's index has 8 bits of its vector id (nasclip/store/moments.py): at most 255 frames.
    assert parse_config(base + "video:\n  max_frames: 255\n", Path("/etc/nasclip/nasclip.yaml")).video.max_frames == 255
    with pytest.raises(ConfigError) as refused:
        parse_config(base + "video:\n  max_frames: 256\n", Path("/etc/nasclip/nasclip.yaml"))
    assert "video.max_frames" in str(refused.value) and "at most 255" in str(refused.value)
