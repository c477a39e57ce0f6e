"""Videos for the media tests and benchmarks, made with PyAV: known pictures in known segments.

``write_video`` encodes a list of (picture, seconds) segments with any codec
and container the FFmpeg inside PyAV's wheel can write; each frame is its
segment's picture with a little fresh noise, as a camera's would be, so no two
frames are identical and merging has something to judge. ``CODECS`` lists the
codec/container pairs a NAS holds. ``scene_segments`` gives demo-model scenes
(tools/scenes.py) as segments with their times.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tools.scenes import Scene, render


@dataclass(frozen=True)
class Codec:
    """A codec in a container, as a phone, camera or editor writes it."""

    codec: str
    format: str
    suffix: str
    options: dict[str, str] = field(default_factory=dict)
    container_options: dict[str, str] = field(default_factory=dict)
    size: tuple[int, int] | None = None  # codecs with fixed frame sizes (H.263)
    pix_fmt: str = "yuv420p"


CODECS = {
    "h264-mp4": Codec("libx264", "mp4", ".mp4", {"preset": "veryfast"}),
    "hevc-mov": Codec("libx265", "mov", ".mov", {"preset": "ultrafast", "x265-params": "log-level=error"}),
    "mpeg4-mkv": Codec("mpeg4", "matroska", ".mkv"),
    "vp9-webm": Codec("libvpx-vp9", "webm", ".webm", {"deadline": "realtime", "cpu-used": "8"}),
    "h264-mts": Codec("libx264", "mpegts", ".mts", {"preset": "veryfast"}, {"mpegts_m2ts_mode": "1"}),
    "mpeg2-m2ts": Codec("mpeg2video", "mpegts", ".m2ts", {}, {"mpegts_m2ts_mode": "1"}),
    "mjpeg-avi": Codec("mjpeg", "avi", ".avi", pix_fmt="yuvj420p"),
    "h263-3gp": Codec("h263", "3gp", ".3gp", size=(352, 288)),
    "av1-mp4": Codec("libsvtav1", "mp4", ".mp4", {"preset": "10", "svtav1-params": "log-level=0"}),
}


@dataclass(frozen=True)
class Segment:
    """What a video shows from start to end (seconds)."""

    scene: Scene
    start: float
    end: float

    def holds(self, seconds: float) -> bool:
        """True if the frame at seconds shows this segment (its times are sums of floats: a microsecond's slack)."""
        return self.start - 1e-6 <= seconds < self.end - 1e-6


def scene_segments(lengths: list[float], rng: random.Random) -> list[Segment]:
    """Segments of the given lengths, each a different colour, shape and background."""
    colours = ["red", "blue", "green", "yellow", "purple", "orange", "white", "black"]
    shapes = ["circle", "square", "triangle", "star"]
    rng.shuffle(colours)
    segments, start = [], 0.0
    for i, length in enumerate(lengths):
        background = colours[(i + len(lengths)) % len(colours)]
        segments.append(Segment(Scene(colours[i], shapes[i % len(shapes)], background), start, start + length))
        start += length
    return segments


def render_segments(segments: list[Segment], size: tuple[int, int], rng: random.Random) -> list[Image.Image]:
    """One picture per segment at size."""
    return [render(s.scene, rng, *size) for s in segments]


def write_video(path: Path, pictures: list[tuple[Image.Image, float]], codec: Codec, fps: int = 10,
                size: tuple[int, int] = (320, 240), gop: int | None = None, rotation: int | None = None,
                metadata: dict[str, str] | None = None, seed: int = 0, noise: int = 3) -> Path:
    """Encode each picture for its seconds; gop: frames between key frames (None: one a second).

    rotation: a display rotation (counter-clockwise degrees, as PyAV sets it);
    the pictures are then stored turned the other way, so that a player that
    honours the rotation shows them as given.
    """
    import av

    size = codec.size or size
    path.parent.mkdir(parents=True, exist_ok=True)
    media = av.open(str(path), "w", format=codec.format, options={**codec.container_options,
                                                                  **({"movflags": "use_metadata_tags"}
                                                                     if codec.format == "mov" else {})})
    for key, value in (metadata or {}).items():
        media.metadata[key] = value
    stored = size if rotation in (None, 0, 180, -180) else (size[1], size[0])
    stream: Any = media.add_stream(codec.codec, rate=fps)
    stream.width, stream.height = stored
    stream.pix_fmt = codec.pix_fmt
    stream.codec_context.gop_size = gop or fps
    if codec.options:
        stream.options = dict(codec.options)
    if rotation:
        stream.set_display_rotation(rotation)
    rng = np.random.default_rng(seed)
    for picture, seconds in pictures:
        shown = picture.resize(size) if picture.size != size else picture
        frame_picture = _stored(shown, rotation)
        base = np.asarray(frame_picture, dtype=np.int16)
        for _ in range(max(1, round(seconds * fps))):
            pixels = base + rng.integers(-noise, noise + 1, base.shape, dtype=np.int16) if noise else base
            frame = av.VideoFrame.from_ndarray(np.clip(pixels, 0, 255).astype(np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                media.mux(packet)
    for packet in stream.encode():
        media.mux(packet)
    media.close()
    return path


def _stored(picture: Image.Image, rotation: int | None) -> Image.Image:
    """The picture as stored so that turning it counter-clockwise by rotation shows it upright."""
    undo = {90: Image.Transpose.ROTATE_270, -90: Image.Transpose.ROTATE_90, 270: Image.Transpose.ROTATE_90,
            180: Image.Transpose.ROTATE_180, -180: Image.Transpose.ROTATE_180}
    return picture.transpose(undo[rotation]) if rotation in undo else picture


def segment_video(path: Path, segments: list[Segment], codec: Codec, rng: random.Random, **options: Any) -> Path:
    """A video of the segments' scenes, each for its length."""
    size = codec.size or options.pop("size", (320, 240))
    pictures = render_segments(segments, size, rng)
    return write_video(path, [(p, s.end - s.start) for p, s in zip(pictures, segments)], codec, size=size,
                       **options)
