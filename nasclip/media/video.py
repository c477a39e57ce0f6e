"""Videos to frames: open a video through PyAV within limits and sample its moments.

PyAV binds FFmpeg and ships it inside its wheel, so every container and codec
a phone, camera or camcorder writes (H.264, HEVC, VP9, AV1, MPEG-2/4, MJPEG in
MP4, MOV, Matroska/WebM, AVI, 3GP, MPEG-TS) decodes with no system library.
The file is read through the same bounded reader as a photo (imaging.py's
``BoundedFile``: every read checks a byte budget and a deadline), with the
video settings' limits, from a descriptor the caller opened.

Only key frames are ever decoded, each on its own (keyframes.py); which
ones, sampling.py decides. Frames are scaled by FFmpeg's scaler to a margin
above the model's input (``FRAME_MARGIN``) and turned upright as the display
matrix says; ``frame_tensors`` preprocesses them exactly as photos are.

A video that cannot be sampled raises DecodeError with the reason: empty,
truncated (``retry``: it may still be arriving), not a video, no video
stream, a codec FFmpeg cannot decode, too large, too long, too slow, or no
frame that decodes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, BinaryIO, Callable

import numpy as np
from PIL import Image

from ..config import Config, VideoConfig
from ..errors import DecodeError
from ..indexing.bounded import DecodeLimits
from ..indexing.imaging import resize, to_tensor
from ..meta.exif import PhotoMeta
from ..model.spec import ImageSpec
from . import container as tags_
from .files import Source, bounded
from .keyframes import KeyFrames
from .sampling import Cause, Plan, nearest, sample

log = logging.getLogger("nasclip.video")

# Frames are scaled to this many times the model's input side (short side), then resized
# by imaging.resize as photos are. FFmpeg scales in YUV before it converts to RGB, so the
# tensor is not the one a full-size RGB frame would give: on a 1080p frame the mean
# difference is 0.012 in normalised units (under one level of 255) at 1×, 2× and 3×
# alike, with any of FFmpeg's filters; at 1× the edges alias (p99 0.073), from 2× on not
# (p99 0.030). 2× costs 5 ms of scaling where a full-size conversion costs 6 ms plus a
# 10 ms resize (tests/system/test_video.py).
FRAME_MARGIN = 2
_TRUNCATED = "truncated (incomplete file, maybe still being copied)"


@dataclass(frozen=True)
class VideoLimits:
    """What sampling one video may cost and how densely it samples (the ``video`` settings)."""

    frame_interval: float = 3.0
    max_frames: int = 32
    max_duration: float = 21600.0
    read: DecodeLimits = DecodeLimits(max_pixels=120_000_000, max_bytes=64 << 30, timeout=120.0,
                                      bytes_setting="video.max_file_bytes", timeout_setting="video.decode_timeout")


def video_limits(config: Config) -> VideoLimits:
    """The limits of config's video section (pixels per frame: indexer.max_pixels)."""
    return limits_of(config.video, config.indexer.max_pixels)


def limits_of(video: VideoConfig, max_pixels: int) -> VideoLimits:
    """The limits of a video section, with this many pixels allowed per frame."""
    read = DecodeLimits(max_pixels, video.max_file_bytes, video.decode_timeout,
                        bytes_setting="video.max_file_bytes", timeout_setting="video.decode_timeout")
    return VideoLimits(video.frame_interval, video.max_frames, video.max_duration, read)


@dataclass(frozen=True)
class VideoInfo:
    """What a video is: length, displayed size, codec and container, and what it says of itself."""

    duration: float  # seconds
    width: int  # as displayed (after the rotation)
    height: int
    codec: str
    container: str
    meta: PhotoMeta
    content_id: str | None = None  # a Live Photo's identifier (QuickTime), shared with its still


@dataclass(frozen=True)
class VideoFrame:
    """One sampled moment: seconds from the start, the upright picture, and why it was chosen."""

    time: float
    image: Image.Image
    cause: Cause


@dataclass(frozen=True)
class SampledVideo:
    """A video's frames to encode, in time order, and how many key frames were decoded for them."""

    info: VideoInfo
    frames: list[VideoFrame]
    decoded: int




def sample_video(source: Source, limits: VideoLimits, min_side: int,
                 clock: Callable[[], float] = time.monotonic) -> SampledVideo:
    """The frames of a video to encode, each at least FRAME_MARGIN × min_side on its short side (or native).

    source: a path, or a file the caller opened (bounded.open_bounded with
    ``limits.read``). Raises DecodeError (module doc).
    """
    deadline = clock() + limits.read.timeout
    with bounded(source, limits.read) as handle, _container(handle) as (media, stream):
        info = _info(media, stream, limits)
        prober = KeyFrames(media, stream, _frame_size(stream, min_side))
        keyframes = prober.indexed_keyframes()

        def out_of_time() -> bool:
            if clock() > deadline:
                raise DecodeError(f"sampling took longer than video.decode_timeout ({limits.read.timeout:g} s); "
                                  "raise the setting for slow shares")
            return False

        samples, decoded = sample(info.duration, Plan(limits.frame_interval, limits.max_frames), prober,
                                  keyframes, out_of_time)
        if not samples:
            raise DecodeError(prober.failure or "no frame of the video could be decoded (damaged video data)")
        frames = [VideoFrame(s.time, s.image, s.cause) for s in samples]
        return SampledVideo(_upright(info, prober.turn), frames, decoded)


def read_video_info(source: Source, limits: VideoLimits) -> VideoInfo:
    """A video's length, displayed size, codec and metadata; decodes its first key frame only.

    The display matrix comes with decoded frames (FFmpeg attaches it to each),
    so the one key frame is what tells a portrait video's size.
    """
    with bounded(source, limits.read) as handle, _container(handle) as (media, stream):
        info = _info(media, stream, limits)
        prober = KeyFrames(media, stream, (16, 16))
        prober(0.0, "interval")
        return _upright(info, prober.turn)


def frame_at(source: Source, limits: VideoLimits, min_side: int, seconds: float) -> Image.Image:
    """The upright picture of the key frame nearest seconds (FRAME_MARGIN × min_side on its short side, or
    native): a video's moment shown as a thumbnail or used as a query. Raises DecodeError."""
    with bounded(source, limits.read) as handle, _container(handle) as (media, stream):
        info = _info(media, stream, limits)
        prober = KeyFrames(media, stream, _frame_size(stream, min_side))
        keyframes = prober.indexed_keyframes()
        at = min(max(0.0, seconds), info.duration)
        got = prober(nearest(keyframes, at) if keyframes else at, "interval")
        if got is None:
            raise DecodeError(prober.failure or "no frame of the video could be decoded (damaged video data)")
        return got.image


def _upright(info: VideoInfo, turn: Image.Transpose | None) -> VideoInfo:
    """info with width and height as displayed."""
    if turn in _QUARTER_TURNS:
        return replace(info, width=info.height, height=info.width)
    return info


def frame_tensors(video: SampledVideo, spec: ImageSpec) -> list[tuple[float, np.ndarray]]:
    """(seconds, encoder input) per sampled frame, preprocessed exactly as photos are."""
    return [(f.time, to_tensor(resize(f.image, spec), spec)) for f in video.frames]


# --------------------------------------------------------------------------- opening


@contextmanager
def _container(handle: BinaryIO) -> Iterator[tuple[Any, Any]]:
    """The open container and its video stream; every way of failing becomes a DecodeError."""
    import av

    if tags_.incomplete(handle):
        raise DecodeError(_TRUNCATED, retry=True)
    handle.seek(0)
    try:
        media = av.open(handle, "r", metadata_errors="replace")
    except DecodeError:
        raise
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise DecodeError(f"not a video nasclip can read (unknown container or damaged header: {exc})") from None
    try:
        streams = [s for s in media.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
        if not streams:
            raise DecodeError("no video stream (an audio file, or only a cover picture)")
        stream = max(streams, key=lambda s: (s.codec_context is not None and (s.codec_context.width or 0)
                                             * (s.codec_context.height or 0)))
        if stream.codec_context is None:
            raise DecodeError(f"unsupported codec ({_codec_name(stream)}): FFmpeg in PyAV cannot decode it")
        stream.codec_context.thread_count = 1  # the decode pool runs one video per thread
        yield media, stream
    except av.FFmpegError as exc:
        raise DecodeError(f"damaged video ({exc})") from None
    finally:
        media.close()


def _codec_name(stream: Any) -> str:
    try:
        return str(stream.codec_context.name if stream.codec_context else stream.codec.name)
    except Exception:  # no codec object at all: the container's tag is all there is
        return "unknown"


def _info(media: Any, stream: Any, limits: VideoLimits) -> VideoInfo:
    ctx = stream.codec_context
    width, height = int(ctx.width or 0), int(ctx.height or 0)
    if width * height > limits.read.max_pixels:
        raise DecodeError(f"{width}×{height} pixels per frame is more than indexer.max_pixels "
                          f"({limits.read.max_pixels}); raise the setting if this video is genuine")
    if width <= 0 or height <= 0:
        raise DecodeError(f"unsupported codec ({_codec_name(stream)}): no frame size in the header")
    duration = _duration(media, stream)
    if duration > limits.max_duration:
        raise DecodeError(f"{duration:.0f} s long, more than video.max_duration ({limits.max_duration:g} s); "
                          "raise the setting to index it")
    tags = tags_.lowered(media.metadata, stream.metadata)
    return VideoInfo(duration, width, height, ctx.name, media.format.name, tags_.video_meta(tags),
                     tags.get(tags_.CONTENT_ID_KEY))


def _duration(media: Any, stream: Any) -> float:
    """Seconds: the stream's own length, else the container's; 0 when neither says."""
    if stream.duration is not None and stream.time_base is not None:
        return max(0.0, float(stream.duration * stream.time_base))
    if media.duration is not None:
        return max(0.0, media.duration / 1_000_000)
    return 0.0


_QUARTER_TURNS = (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270, Image.Transpose.TRANSPOSE,
                  Image.Transpose.TRANSVERSE)


def _frame_size(stream: Any, min_side: int) -> tuple[int, int]:
    """The decoded (unturned) size to scale frames to: FRAME_MARGIN × min_side on the short side, or native."""
    width, height = int(stream.codec_context.width), int(stream.codec_context.height)
    short = min(width, height)
    side = min(short, FRAME_MARGIN * min_side)
    if side >= short:
        return width, height
    if width <= height:
        return side, max(side, round(side * height / width))
    return max(side, round(side * width / height)), side
