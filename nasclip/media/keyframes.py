"""Decoding one key frame at a time: what sampling.py asks video.py's videos for.

A probe for a time seeks, finds the key frame packet at or just before that
time, hands that one packet to the decoder, drains the decoder and resets it.
A decoder otherwise holds a frame back until the following packets arrive
(B-frame reordering), and skip_frame=NONKEY makes it wait for the *next* key
frame: 2.5× the cost of a key frame alone on 1080p H.264 here.

Where the container lists its key frames (MP4/MOV, Matroska cues, AVI's
index) a seek lands on the one asked for. MPEG transport streams (AVCHD's
MTS/M2TS) have no index: a seek lands on whatever packet is near the time,
so the packets are read forward to the time, keeping the last key frame
seen, and when there was none the seek starts further back (``BACK_OFF``).

The frame is scaled by FFmpeg's own scaler (area averaging) to the size asked
for and turned upright as its display matrix says.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

import numpy as np
from PIL import Image

from ..errors import DecodeError
from . import container as tags_
from .sampling import Cause, Sample

# Reading forward from a seek, at most this many packets before giving up on a probe.
MAX_PACKETS = 3000
# A container that lists fewer key frames than this is not trusted to list them all.
MIN_INDEXED_KEYFRAMES = 2
# Without an index: how much further back (seconds) each new seek starts, when the
# packets between the last seek and the time held no key frame.
BACK_OFF = (1.0, 3.0, 10.0)
# A key frame this little (seconds) after the time asked for still counts as at it.
SLACK = 0.25


class KeyFrames:
    """The prober sampling.py drives over one open PyAV container and its video stream."""

    def __init__(self, media: Any, stream: Any, size: tuple[int, int]) -> None:
        self.media = media
        self.stream = stream
        self.size = size  # (width, height) to scale decoded frames to, before turning them
        # An old file's 'rotate' tag, for frames that carry no display matrix.
        self.tagged = tags_.rotate_tag(tags_.lowered(stream.metadata))
        self.turn = self.tagged  # what the last decoded frame needed
        self.base = stream.start_time or 0
        self.unit = float(stream.time_base)
        self.failure: str | None = None  # why the last probe gave nothing, for the final message
        self.keyframes: list[float] = []

    def indexed_keyframes(self) -> list[float] | None:
        """Key frame times the container lists (MP4/MOV, Matroska cues, AVI), or None."""
        try:
            entries = self.stream.index_entries
            times = sorted({(e.timestamp - self.base) * self.unit for e in entries if e.is_keyframe})
        except Exception:  # an index PyAV cannot read: seek by time instead
            return None
        if len(times) < MIN_INDEXED_KEYFRAMES:
            return None
        self.keyframes = times
        return times

    def __call__(self, seconds: float, cause: Cause) -> Sample | None:
        import av

        ctx = self.stream.codec_context
        try:
            packet = self._listed(seconds) if self.keyframes else self._searched(seconds)
            if packet is None:
                return None
            frames = list(ctx.decode(packet)) + list(ctx.decode(None))
            ctx.flush_buffers()
            if not frames:
                self.failure = f"key frames do not decode ({ctx.name})"
                return None
            at = self._time(packet)
            return Sample(max(0.0, at) if at is not None else seconds, self._picture(frames[0]), cause)
        except DecodeError:
            raise
        except (av.FFmpegError, ValueError, MemoryError) as exc:
            ctx.flush_buffers()
            self.failure = f"damaged video data ({exc})"
            return None

    def _time(self, packet: Any) -> float | None:
        stamp = packet.pts if packet.pts is not None else packet.dts
        return (stamp - self.base) * self.unit if stamp is not None else None

    def _seek(self, seconds: float) -> Any:
        """Packets of the stream from a seek to seconds (backward: at or before it where the index says)."""
        self.media.seek(self.base + round(seconds / self.unit), stream=self.stream, backward=True, any_frame=False)
        self.stream.codec_context.flush_buffers()
        return self.media.demux(self.stream)

    def _listed(self, seconds: float) -> Any:
        """The key frame packet the index lists at seconds: the first key frame after seeking to it.

        The index gives decoding times and a seek goes by presentation time,
        a frame or two later with B-frames: seeking to the listed time itself
        would land on the key frame before. Halfway to the next one lands on
        this one unless the reordering delay is more than half the distance.
        """
        at = bisect_left(self.keyframes, seconds)
        target = seconds
        if at < len(self.keyframes) and self.keyframes[at] == seconds:
            following = self.keyframes[at + 1] if at + 1 < len(self.keyframes) else seconds + 2 * SLACK
            target = (seconds + following) / 2
        for count, packet in enumerate(self._seek(target)):
            if count > MAX_PACKETS:
                break
            if packet.size and packet.is_keyframe:
                return packet
        self.failure = "no key frame where the index lists one (truncated or damaged)"
        return None

    def _searched(self, seconds: float) -> Any:
        """The last key frame packet at or before seconds, reading forward from seeks (module doc)."""
        after = None
        for back in (0.0, *BACK_OFF):
            best = None
            for count, packet in enumerate(self._seek(max(0.0, seconds - back))):
                at = self._time(packet)
                if count > MAX_PACKETS or (at is not None and at > seconds + SLACK and best is not None):
                    break
                if not (packet.size and packet.is_keyframe):
                    continue
                if at is not None and at > seconds + SLACK:
                    after = packet  # the first key frame past the time: the answer if nothing is before it
                    break
                best = packet
            if best is not None:
                return best
            if seconds - back <= 0:
                break
        if after is None:
            self.failure = "no key frame near the sampled times (truncated or damaged)"
        return after

    def _picture(self, frame: Any) -> Image.Image:
        width, height = self.size
        image = frame.reformat(width=width, height=height, format="rgb24", interpolation="AREA").to_image()
        matrix = _display_matrix(frame)
        self.turn = tags_.display_transpose(matrix) if matrix is not None else self.tagged
        return image.transpose(self.turn) if self.turn is not None else image


def _display_matrix(frame: Any) -> list[int] | None:
    """The display matrix a decoded frame carries (FFmpeg attaches the stream's to each frame)."""
    for data in frame.side_data or ():
        if data.type.name == "DISPLAYMATRIX":
            raw = bytes(data)
            return np.frombuffer(raw[:36], dtype="<i4").tolist() if len(raw) >= 36 else None
    return None
