"""Thumbnails: made from the opened photo within the decode limits, cached on disk within a size."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import pytest
from PIL import Image

from nasclip.errors import DecodeError
from nasclip.indexing.bounded import DecodeLimits
from nasclip.store.reader import Candidate
from nasclip.web import thumbs
from nasclip.web.photos import OpenPhoto
from nasclip.web.thumbs import ThumbBusy, ThumbCache
from tools.scenes import balanced_scenes, jpeg_bytes, render

LIMITS = DecodeLimits(max_pixels=50_000_000, max_bytes=10 << 20, timeout=30)


def photo_file(path: Path, seed: int, size: tuple[int, int] = (1200, 800)) -> Path:
    rng = random.Random(seed)
    path.write_bytes(jpeg_bytes(render(balanced_scenes(1, rng)[0], rng, *size), rng))
    return path


def opened(path: Path, row_id: int = 1) -> OpenPhoto:
    fd = os.open(path, os.O_RDONLY)
    st = os.fstat(fd)
    return OpenPhoto(fd, st, str(path), Candidate(row_id, "p", path.name.encode(), st.st_size, st.st_mtime_ns,
                                                  "indexed"))


def test_a_thumbnail_is_made_once_then_served_from_the_cache(tmp_path: Path) -> None:
    cache = ThumbCache(tmp_path / "state", 1 << 20, 256, LIMITS, 2)
    path = photo_file(tmp_path / "a.jpg", 1)
    with opened(path) as photo:
        data, cached = cache.get(photo)
        again, cached_again = cache.get(photo)
    assert not cached and cached_again and again == data
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG" and max(image.size) == 256 and image.size == (256, 171)  # the photo's shape
    files = list((tmp_path / "state" / "thumbs").rglob("*"))
    assert [p.suffix for p in files if p.is_file()] == [".jpg"]  # no temporary file left
    assert all(p.stat().st_mode & 0o077 == 0 for p in files if p.is_dir())
    assert cache.stats.made == 1 and cache.stats.hits == 1


def test_a_changed_photo_gets_a_new_thumbnail(tmp_path: Path) -> None:
    cache = ThumbCache(tmp_path, 1 << 20, 128, LIMITS, 1)
    path = photo_file(tmp_path / "a.jpg", 1)
    with opened(path) as photo:
        first_key, first = cache.key(photo), cache.get(photo)[0]
    photo_file(path, 2)
    os.utime(path, ns=(1, 1))
    with opened(path) as photo:
        assert cache.key(photo) != first_key
        data, cached = cache.get(photo)
    assert not cached and data != first


def test_the_cache_stays_within_its_size_dropping_the_least_recently_used(tmp_path: Path) -> None:
    probe = ThumbCache(tmp_path / "probe", 1 << 20, 128, LIMITS, 1)
    paths = [photo_file(tmp_path / f"p{i}.jpg", i) for i in range(12)]
    sizes = []
    for path in paths:
        with opened(path) as photo:
            sizes.append(len(probe.make(photo)))
    limit = sum(sizes[:6]) + 1  # the first six fit
    cache = ThumbCache(tmp_path / "state", limit, 128, LIMITS, 1)
    for i, path in enumerate(paths[:6]):
        with opened(path, i + 1) as photo:
            cache.get(photo)
    assert cache.stats.evicted == 0
    with opened(paths[0], 1) as photo:
        os.utime(cache._path(cache.key(photo)), (1, 1))  # long unused
    for i, path in enumerate(paths[6:], 7):
        with opened(path, i) as photo:
            cache.get(photo)
        assert cache.cached_bytes() <= limit
        assert cache.cached_bytes() == sum(p.stat().st_size for p in (tmp_path / "state").rglob("*.jpg"))
    assert cache.stats.evicted >= 4
    with opened(paths[0], 1) as photo:
        assert not cache.get(photo)[1]  # the oldest was the first to go
    with opened(paths[-1], 12) as photo:
        assert cache.get(photo)[1]  # the newest is still there


def test_bad_photos_and_bombs_fail_with_a_reason_and_a_full_cache_still_serves(tmp_path: Path) -> None:
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not a photo at all" * 10)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "thumbs").write_text("a file where the cache folder goes")  # every write fails
    cache = ThumbCache(tmp_path / "state", 1 << 20, 128, LIMITS, 1)
    with opened(junk) as photo, pytest.raises(DecodeError, match="not an image"):
        cache.get(photo)
    big = photo_file(tmp_path / "big.jpg", 3, (3000, 2000))
    small_limits = ThumbCache(tmp_path / "other", 1 << 20, 128, DecodeLimits(1_000_000, 10 << 20, 30), 1)
    with opened(big) as photo, pytest.raises(DecodeError, match="max_pixels"):
        small_limits.get(photo)
    with opened(big) as photo:
        data, cached = cache.get(photo)
    assert data[:2] == b"\xff\xd8" and not cached


def test_decodes_wait_for_a_slot_and_give_up_busy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(thumbs, "DECODE_WAIT", 0.01)
    cache = ThumbCache(tmp_path, 1 << 20, 128, LIMITS, 1)
    path = photo_file(tmp_path / "a.jpg", 1)
    cache._slots.acquire()  # another request is decoding
    with opened(path) as photo, pytest.raises(ThumbBusy, match="web.thumb_workers"):
        cache.get(photo)
    cache._slots.release()
    with opened(path) as photo:
        assert cache.get(photo)[0]


def test_a_video_s_thumbnail_is_its_frame_at_the_moment_asked_for_and_a_raw_s_its_picture(tmp_path: Path) -> None:
    from raws import write_dng
    from videos import CODECS, write_video

    red, blue = Image.new("RGB", (320, 240), (220, 30, 30)), Image.new("RGB", (320, 240), (30, 30, 220))
    video = write_video(tmp_path / "clip.mp4", [(red, 2.0), (blue, 2.0)], CODECS["h264-mp4"], noise=0)
    cache = ThumbCache(tmp_path / "state", 1 << 20, 128, LIMITS, 1)

    def colour(data: bytes) -> tuple[int, ...]:
        return Image.open(io.BytesIO(data)).convert("RGB").resize((1, 1)).getpixel((0, 0))  # type: ignore[return-value]
    with opened(video) as clip:
        start, at_three = cache.get(clip)[0], cache.get(clip, 3.0)[0]
        assert cache.key(clip, 3.0) != cache.key(clip) == cache.key(clip, 0.0)
    assert colour(start)[0] > 150 > colour(start)[2] and colour(at_three)[2] > 150 > colour(at_three)[0]
    assert cache.stats.made == 2
    raw = write_dng(tmp_path / "shot.dng", Image.new("RGB", (400, 300), (30, 200, 30)))
    with opened(raw, row_id=2) as photo:
        green = colour(cache.get(photo)[0])
    assert green[1] > 120 and green[1] > green[0] + 50 and green[1] > green[2] + 50
