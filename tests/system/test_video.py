"""Issue 18, videos: frames sampled through the whole video, found by description, and bad videos refused.

Every video is made here with PyAV (tests/videos.py): scenes of the demo
model's shapes in known segments, in the codecs and containers a NAS holds.
Sampling must put a frame inside every segment (the short one included, which
only scene-change bisection finds), the real demo model through nasclip's
Encoder must score each segment's description best at a moment inside that
segment, and broken files must fail with their reason.
"""

from __future__ import annotations

import dataclasses
import os
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_MODEL
from PIL import ImageOps
from test_decoding import picture
from videos import CODECS, Codec, scene_segments, segment_video, write_video

from nasclip.errors import DecodeError
from nasclip.indexing.encoder import Encoder
from nasclip.media.video import (
    FRAME_MARGIN,
    VideoLimits,
    frame_tensors,
    read_video_info,
    sample_video,
)
from nasclip.model.spec import load_model_spec

SPEC = load_model_spec(DEMO_MODEL)
LIMITS = VideoLimits()
# Segment lengths (seconds): cuts fall between the one-second key frames, and the 1.5 s
# segment is shorter than the 3 s grid, so only scene-change bisection can find it.
LENGTHS = [4.2, 3.1, 1.5, 4.6, 3.6]


@pytest.fixture(scope="module")
def encoder():
    opened = Encoder.open(SPEC, backend="onnx", threads=1)
    yield opened
    opened.close()


def best_moments(video, encoder: Encoder, texts: list[str]) -> list[float]:
    """For each text, the time of the sampled frame that scores highest."""
    moments = frame_tensors(video, SPEC.image)
    vectors = encoder.encode_images(np.stack([t for _, t in moments]))
    scores = encoder.encode_texts(texts) @ vectors.T
    return [moments[int(np.argmax(row))][0] for row in scores]


@pytest.mark.parametrize("name", sorted(CODECS))
def test_each_segment_has_a_frame_and_its_description_finds_it(tmp_path: Path, encoder: Encoder, name: str) -> None:
    rng = random.Random(f"segments-{name}")
    segments = scene_segments(LENGTHS, rng)
    path = segment_video(tmp_path / f"video{CODECS[name].suffix}", segments, CODECS[name], rng)
    video = sample_video(path, LIMITS, SPEC.image.size)
    times = [f.time for f in video.frames]
    assert abs(video.info.duration - sum(LENGTHS)) < 0.3, video.info
    for segment in segments:
        assert any(segment.holds(t) for t in times), f"{name}: no frame in {segment} (frames at {times})"
    assert video.decoded <= LIMITS.max_frames
    assert times == sorted(times) and all(0 <= t < video.info.duration for t in times)
    found = best_moments(video, encoder, [s.scene.english for s in segments])
    for segment, moment in zip(segments, found):
        assert segment.holds(moment), f"{name}: '{segment.scene.english}' scored best at {moment:.2f} s, " \
                                      f"outside {segment.start:.1f}-{segment.end:.1f} s (frames at {times})"


def test_a_long_gop_video_is_sampled_at_its_scene_cuts(tmp_path: Path, encoder: Encoder) -> None:
    # x264 with a key frame at most every 10 s puts one at each cut (scenecut): bisection finds them.
    rng = random.Random("long-gop")
    segments = scene_segments([5.3, 2.2, 6.1, 3.7], rng)
    path = segment_video(tmp_path / "long.mp4", segments, CODECS["h264-mp4"], rng, gop=100)
    video = sample_video(path, LIMITS, SPEC.image.size)
    times = [f.time for f in video.frames]
    for segment in segments[1:]:
        assert any(abs(t - segment.start) < 0.15 for t in times), f"no frame at the cut {segment.start} ({times})"
    assert len(video.frames) == len(segments), "one frame per still scene: the rest merged"
    found = best_moments(video, encoder, [s.scene.english for s in segments])
    assert all(s.holds(t) for s, t in zip(segments, found)), (found, segments)


def test_near_identical_frames_are_merged_and_the_first_stands_for_them(tmp_path: Path) -> None:
    path = write_video(tmp_path / "still.mp4", [(picture(320, 240), 12.0)], CODECS["h264-mp4"], noise=4)
    video = sample_video(path, LIMITS, SPEC.image.size)
    assert video.decoded >= 4  # the grid looked at the whole video ...
    assert len(video.frames) == 1 and video.frames[0].time < 3.0  # ... and kept its first look


def test_a_long_video_spreads_its_capped_frames_over_all_of_it(tmp_path: Path) -> None:
    rng = random.Random("long")
    segments = scene_segments([12.0] * 5, rng)
    path = segment_video(tmp_path / "long.mkv", segments, CODECS["mpeg4-mkv"], rng, fps=5, size=(160, 120))
    limits = dataclasses.replace(LIMITS, max_frames=6)
    video = sample_video(path, limits, SPEC.image.size)
    times = [f.time for f in video.frames]
    assert video.decoded <= 6
    assert times[0] < 12.0 and times[-1] >= 48.0, times
    assert sum(any(s.holds(t) for t in times) for s in segments) >= 4


def test_a_key_frame_decoded_alone_equals_the_same_frame_of_a_full_decode(tmp_path: Path) -> None:
    """The seek-decode-drain path gives exactly the pixels a player's sequential decode gives."""
    import av

    rng = random.Random("exact")
    segments = scene_segments([2.5, 2.5, 2.5], rng)
    for name in ("h264-mp4", "hevc-mov", "vp9-webm", "h264-mts"):
        path = segment_video(tmp_path / f"exact{CODECS[name].suffix}", segments, CODECS[name], rng, size=(224, 168))
        video = sample_video(path, LIMITS, 10_000)  # no scaling: native size
        with av.open(str(path)) as media:
            stream = media.streams.video[0]
            start = stream.start_time or 0
            full = {round(float((f.pts - start) * stream.time_base), 3): f.to_ndarray(format="rgb24")
                    for f in media.decode(stream)}
        for frame in video.frames:
            reference = full[round(frame.time, 3)]
            assert np.array_equal(np.asarray(frame.image), reference), f"{name} at {frame.time}"


def test_scaled_frames_give_the_vectors_full_size_frames_give(tmp_path: Path, encoder: Encoder) -> None:
    """FFmpeg's area scaling to FRAME_MARGIN x the input, then the photo resize, against the full-size frame.

    Not the photo path's bar (a mean of 0.004, docs/indexing.md): that compares
    two decoders of the same RGB data. FFmpeg scales in YUV before converting, a
    constant 0.012 (under one level of 255) at any scale and filter; what must
    hold is no aliasing (p99) and the same vector.
    """
    rng = random.Random("scale")
    segments = scene_segments([3.0, 3.0], rng)
    path = segment_video(tmp_path / "hd.mp4", segments, CODECS["h264-mp4"], rng, size=(1920, 1080))
    scaled = sample_video(path, LIMITS, SPEC.image.size)
    full = sample_video(path, LIMITS, 10_000)
    assert scaled.frames[0].image.height == FRAME_MARGIN * SPEC.image.size
    assert full.frames[0].image.size == (1920, 1080)
    assert [f.time for f in scaled.frames] == [f.time for f in full.frames]
    small, big = frame_tensors(scaled, SPEC.image), frame_tensors(full, SPEC.image)
    for (_, a), (_, b) in zip(small, big):
        difference = np.abs(a - b)
        assert difference.mean() < 0.02 and np.percentile(difference, 99) < 0.05
    vectors = encoder.encode_images(np.stack([t for _, t in small + big]))
    half = len(small)
    cosines = np.sum(vectors[:half] * vectors[half:], axis=1)
    assert cosines.min() > 0.999, cosines


@pytest.mark.parametrize("rotation", [-90, 90, 180])
def test_a_rotated_phone_video_is_upright_with_its_time_place_camera_and_live_photo_id(
        tmp_path: Path, rotation: int) -> None:
    upright = picture(180, 320)  # portrait, as the phone was held
    tags = {"com.apple.quicktime.creationdate": "2023-06-01T14:05:06+0200", "com.apple.quicktime.make": "Apple",
            "com.apple.quicktime.model": "iPhone 13", "com.apple.quicktime.content.identifier": "A1B2-C3D4",
            "com.apple.quicktime.location.ISO6709": "+48.8584+002.2945+035.000/"}
    path = write_video(tmp_path / "IMG_0001.MOV", [(upright, 3.0)], Codec("libx264", "mov", ".mov"),
                       size=(180, 320), rotation=rotation, metadata=tags)
    video = sample_video(path, LIMITS, 10_000)
    shown = np.asarray(video.frames[0].image, dtype=np.float32)
    assert shown.shape == (320, 180, 3)
    assert np.abs(shown - np.asarray(upright, dtype=np.float32)).mean() < 8
    info = video.info
    assert (info.width, info.height) == (180, 320) == (read_video_info(path, LIMITS).width, 320)
    taken = info.meta.taken
    assert taken is not None and taken.offset == 120 and taken.source == "exif"
    assert taken.as_datetime().isoformat() == "2023-06-01T14:05:06+02:00"
    assert (info.meta.make, info.meta.model) == ("Apple", "iPhone 13")
    assert info.meta.position is not None and (info.meta.position.lat, info.meta.position.lon) == (48.8584, 2.2945)
    assert info.content_id == "A1B2-C3D4"


@pytest.mark.parametrize("flip", ["none", "h", "v"])
@pytest.mark.parametrize("rotation", [0, 90, 180, -90])
def test_every_display_matrix_orientation_is_shown_as_a_player_shows_it(
        tmp_path: Path, rotation: int, flip: str) -> None:
    """All eight orientations a display matrix can hold: turned counter-clockwise, then mirrored (PyAV's meaning)."""
    import av

    stored = picture(160, 120)
    path = tmp_path / "turned.mp4"
    with av.open(str(path), "w") as media:
        stream = media.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.set_display_rotation(rotation, hflip=flip == "h", vflip=flip == "v")
        for _ in range(10):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(stored), format="rgb24")):
                media.mux(packet)
        for packet in stream.encode():
            media.mux(packet)
    expected = stored.rotate(rotation, expand=True)
    expected = {"h": ImageOps.mirror, "v": ImageOps.flip}.get(flip, lambda image: image)(expected)
    shown = sample_video(path, LIMITS, 10_000).frames[0].image
    assert shown.size == expected.size
    assert np.abs(np.asarray(shown, dtype=np.float32) - np.asarray(expected, dtype=np.float32)).mean() < 8


def test_an_android_video_gives_its_utc_instant_and_position(tmp_path: Path) -> None:
    tags = {"creation_time": "2023-06-01T12:05:06.000000Z", "location": "+39.9042+116.4074/"}
    path = write_video(tmp_path / "VID_1.mp4", [(picture(), 2.0)], CODECS["h264-mp4"], metadata=tags)
    info = read_video_info(path, LIMITS)
    assert info.meta.taken is not None and info.meta.taken.utc == 1685621106.0
    assert info.meta.position is not None and info.meta.position.lat == 39.9042


# --------------------------------------------------------------------------- videos that fail


def plain(tmp_path: Path, name: str = "h264-mp4", seconds: float = 4.0) -> Path:
    return write_video(tmp_path / f"plain{CODECS[name].suffix}", [(picture(), seconds)], CODECS[name])


def refused(source: Path, limits: VideoLimits = LIMITS) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        sample_video(source, limits, SPEC.image.size)
    return caught.value


@pytest.mark.parametrize("name", ["h264-mp4", "hevc-mov", "vp9-webm", "mpeg2-m2ts", "mjpeg-avi"])
def test_a_truncated_video_fails_as_truncated_and_may_be_retried(tmp_path: Path, name: str) -> None:
    path = plain(tmp_path, name)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) * 6 // 10 + 1])
    error = refused(path)
    assert "truncated" in str(error) and error.retry


def test_an_empty_video_fails_as_empty_and_may_be_retried(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    error = refused(path)
    assert "empty" in str(error) and error.retry


def test_a_file_that_is_no_video_fails_with_that_reason(tmp_path: Path) -> None:
    path = tmp_path / "fake.mkv"
    path.write_bytes(random.Random(1).randbytes(100_000))
    error = refused(path)
    assert "not a video" in str(error) and not error.retry


def test_an_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    import av

    path = tmp_path / "voice.mp4"
    with av.open(str(path), "w") as media:
        stream = media.add_stream("aac", rate=16000)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                media.mux(packet)
        for packet in stream.encode():
            media.mux(packet)
    assert "no video stream" in str(refused(path))


def test_a_codec_ffmpeg_cannot_decode_is_named_unsupported(tmp_path: Path) -> None:
    path = plain(tmp_path, "mjpeg-avi")
    data = path.read_bytes()
    path.write_bytes(data.replace(b"MJPG", b"QQQQ"))  # the stream's FourCC, in strh and strf
    error = refused(path)
    assert "unsupported codec" in str(error) and not error.retry


def test_limits_name_the_setting_to_change(tmp_path: Path) -> None:
    path = plain(tmp_path, seconds=6.0)
    assert "video.max_duration" in str(refused(path, dataclasses.replace(LIMITS, max_duration=5.0)))
    small = dataclasses.replace(LIMITS.read, max_bytes=1000)
    assert "video.max_file_bytes" in str(refused(path, dataclasses.replace(LIMITS, read=small)))
    few = dataclasses.replace(LIMITS.read, max_pixels=320 * 240 - 1)
    assert "indexer.max_pixels" in str(refused(path, dataclasses.replace(LIMITS, read=few)))
    ticks = iter(range(0, 10_000, 100))
    with pytest.raises(DecodeError, match="video.decode_timeout"):
        sample_video(path, LIMITS, SPEC.image.size, clock=lambda: float(next(ticks)))


def test_a_symbolic_link_is_not_followed(tmp_path: Path) -> None:
    target = plain(tmp_path)
    link = tmp_path / "link.mp4"
    os.symlink(target, link)
    with pytest.raises(DecodeError):
        sample_video(link, LIMITS, SPEC.image.size)
