"""Which moments of a video to encode: a grid through the whole video, scene changes, duplicates merged.

The cost of a video is the frames it decodes: a 1080p key frame costs about
what a 12-megapixel JPEG does (30-45 ms of one core here), and each frame
kept costs an encoder run. So the plan decodes at most ``max_frames`` key
frames and never a frame that is not one:

1. A grid: the video cut into ``ceil(duration / frame_interval)`` equal
   slots, at most three quarters of ``max_frames``, one key frame per slot
   (the one nearest the slot's middle when the container lists its key
   frames, else the one a seek to the middle lands on). A long video's slots
   stretch so the grid still covers all of it.
2. Scene changes: where two neighbouring samples differ a lot (their 16×16
   thumbnails, ``SCENE_DISTANCE``), the key frames between them are bisected,
   largest difference first, until the first key frame of the new scene is
   found or the budget is spent (a change spread over the interval, a fade
   or a pan, is not bisected further). Encoders start a new key frame at a cut
   (x264's scenecut), and phones and cameras write one every second or two,
   so the change is found to within a key-frame interval.
3. Merging: a sample that looks like the last one kept (``MERGE_DISTANCE``)
   is dropped; the earlier one stands for both, so a scene is found at its
   start.

Everything here works on a ``Prober`` (video.py's is PyAV); tests can drive
it with any.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Callable, Literal, Protocol

import numpy as np
from PIL import Image

THUMB = 16
# Mean absolute difference of 16×16 RGB thumbnails, in 0-255 levels. Two key frames of one
# still scene differ by 0.5-2 (compression noise, averaged away); a hand-held pan of a few
# seconds by 5-20; a cut between unrelated shots by 25-80.
MERGE_DISTANCE = 3.0
SCENE_DISTANCE = 12.0
# A cut puts (nearly) all of a difference on one side of a sample between; a fade or a
# pan spreads it. Bisection goes on only while one side holds this share of it.
CUT_SHARE = 0.75
# Share of max_frames the grid may use; the rest goes to scene changes.
GRID_SHARE = 0.75
# Without a key-frame list, bisection stops when the two samples are closer than this.
MIN_GAP = 0.25

Cause = Literal["interval", "scene"]


@dataclass
class Sample:
    """One decoded key frame: its time in seconds, the picture, and its thumbnail for comparisons."""

    time: float
    image: Image.Image
    cause: Cause = "interval"
    thumb: np.ndarray | None = None
    # Where the container's key-frame list has it: lists give decoding times, which are a
    # few frames before the presentation time where B-frames are reordered (x265: up to
    # half a second at 10 frames/s). Bisection compares list entries with list entries.
    key: float | None = None

    def __post_init__(self) -> None:
        if self.thumb is None:
            small = self.image.resize((THUMB, THUMB), Image.Resampling.BOX)
            self.thumb = np.asarray(small, dtype=np.float32)


def distance(a: Sample, b: Sample) -> float:
    """Mean absolute difference of two samples' thumbnails, in 0-255 levels."""
    assert a.thumb is not None and b.thumb is not None
    return float(np.abs(a.thumb - b.thumb).mean())


class Prober(Protocol):
    """Decodes the key frame at (or, for a seek, just before) a time; None where nothing decodes."""

    def __call__(self, seconds: float, cause: Cause) -> Sample | None: ...


@dataclass(frozen=True)
class Plan:
    """How many frames and how densely: from the settings."""

    frame_interval: float
    max_frames: int

    def grid(self, duration: float) -> list[float]:
        """The middle of each grid slot, in seconds."""
        cap = max(1, int(self.max_frames * GRID_SHARE))
        slots = min(cap, max(1, math.ceil(duration / self.frame_interval)))
        step = duration / slots
        return [(i + 0.5) * step for i in range(slots)]


def nearest(keyframes: list[float], seconds: float) -> float:
    """The key frame time closest to seconds (keyframes sorted, not empty)."""
    at = bisect_left(keyframes, seconds)
    candidates = keyframes[max(0, at - 1):at + 1]
    return min(candidates, key=lambda k: abs(k - seconds))


def sample(duration: float, plan: Plan, probe: Prober, keyframes: list[float] | None = None,
           out_of_time: Callable[[], bool] = lambda: False) -> tuple[list[Sample], int]:
    """The frames to encode, in time order, and how many key frames were decoded to choose them.

    ``keyframes``: the key frames' times when the container lists them (then
    every probe lands on one exactly); ``out_of_time`` is asked before each
    decode and stops the sampling (the caller decides what that means).
    """
    budget = plan.max_frames
    decoded: dict[float, Sample] = {}
    tried: set[float] = set()

    def take(seconds: float, cause: Cause) -> Sample | None:
        nonlocal budget
        if budget <= 0 or seconds in tried or out_of_time():
            return None
        tried.add(seconds)
        budget -= 1
        got = probe(seconds, cause)
        if got is None:
            return None
        got.key = seconds if keyframes else got.time
        return decoded.setdefault(round(got.time, 3), got)

    targets = plan.grid(duration)
    if keyframes:
        targets = sorted({nearest(keyframes, t) for t in targets})
    for seconds in targets:
        take(seconds, "interval")
    _refine(decoded, keyframes, take, lambda: budget > 0 and not out_of_time())
    return merge(sorted(decoded.values(), key=lambda s: s.time)), len(tried)


def _refine(decoded: dict[float, Sample], keyframes: list[float] | None,
            take: Callable[[float, Cause], Sample | None], more: Callable[[], bool]) -> None:
    """Bisect between neighbours that differ like a cut, largest difference first (module doc)."""
    heap: list[tuple[float, float, float]] = []

    def consider(a: Sample, b: Sample) -> None:
        gap = distance(a, b)
        if gap > SCENE_DISTANCE:
            heapq.heappush(heap, (-gap, a.time, b.time))

    ordered = sorted(decoded.values(), key=lambda s: s.time)
    for a, b in zip(ordered, ordered[1:]):
        consider(a, b)
    while heap and more():
        minus_gap, t_a, t_b = heapq.heappop(heap)
        a, b = decoded[round(t_a, 3)], decoded[round(t_b, 3)]
        if keyframes:
            assert a.key is not None and b.key is not None
            inside = keyframes[bisect_right(keyframes, a.key):bisect_left(keyframes, b.key)]
            if not inside:
                continue  # b is the first key frame of its scene
            target = inside[len(inside) // 2]
        else:
            if b.time - a.time < 2 * MIN_GAP:
                continue
            target = (a.time + b.time) / 2
        middle = take(target, "scene")
        if middle is None or middle is a or middle is b or not a.time < middle.time < b.time:
            continue  # no key frame to tell them apart (or it would not decode)
        if max(distance(a, middle), distance(middle, b)) < CUT_SHARE * -minus_gap:
            continue  # the change is spread out (a fade, a pan): no cut to find, the middle sample is kept
        consider(a, middle)
        consider(middle, b)


def merge(samples: list[Sample]) -> list[Sample]:
    """Samples in time order without those that look like the last one kept (the earlier stands for both)."""
    kept: list[Sample] = []
    for s in samples:
        if not kept or distance(kept[-1], s) > MERGE_DISTANCE:
            kept.append(s)
    return kept
