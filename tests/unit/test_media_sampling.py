"""Issue 18: which key frames a video's sampling decodes and keeps, on timelines of known pictures.

A timeline is what a video is to sampling.py: key frames at known times, each
showing a known picture; a probe decodes the key frame at (or before) a time,
as keyframes.py does for a real video (tests/system/test_video.py drives it).
"""

from __future__ import annotations

import random

from PIL import Image

from nasclip.media.sampling import MERGE_DISTANCE, Plan, Sample, distance, sample


class Timeline:
    """Key frames at times, each a flat colour; counts the probes."""

    def __init__(self, keyframes: list[tuple[float, tuple[int, int, int]]]) -> None:
        self.keyframes = sorted(keyframes)
        self.probes = 0

    def times(self) -> list[float]:
        return [t for t, _ in self.keyframes]

    def __call__(self, seconds: float, cause: str) -> Sample | None:
        self.probes += 1
        before = [k for k in self.keyframes if k[0] <= seconds + 1e-9] or self.keyframes[:1]
        at, colour = before[-1]
        return Sample(at, Image.new("RGB", (32, 32), colour), cause)  # type: ignore[arg-type]


def scenes(cuts: list[float], length: float, gop: float, seed: int) -> Timeline:
    """Key frames every gop seconds and at each cut; a new random colour from each cut on."""
    rng = random.Random(seed)
    colours = [tuple(rng.randrange(256) for _ in range(3)) for _ in range(len(cuts) + 1)]
    times = sorted({round(i * gop, 3) for i in range(int(length / gop) + 1) if i * gop < length} | set(cuts))
    return Timeline([(t, colours[sum(t >= c for c in cuts)]) for t in times])  # type: ignore[misc]


def test_a_short_scene_between_grid_samples_is_found_at_its_first_key_frame() -> None:
    timeline = scenes(cuts=[4.4, 5.9], length=12.0, gop=1.0, seed=1)  # 4.4-5.9: between 3-s grid points
    kept, decoded = sample(12.0, Plan(3.0, 32), timeline, timeline.times())
    assert [round(s.time, 1) for s in kept if 4.4 <= s.time < 5.9] == [4.4]
    assert any(s.cause == "scene" for s in kept) and decoded == timeline.probes


def test_without_a_key_frame_list_seeks_still_find_the_scenes() -> None:
    timeline = scenes(cuts=[4.0, 7.5], length=12.0, gop=0.5, seed=2)
    kept, _ = sample(12.0, Plan(3.0, 32), timeline, None)
    assert sorted({s.image.getpixel((0, 0)) for s in kept}) == sorted({c for _, c in timeline.keyframes})


def test_the_budget_is_never_exceeded_and_the_whole_video_is_covered() -> None:
    for seed in range(30):
        rng = random.Random(seed)
        length = rng.uniform(5, 3600)
        cuts = sorted(rng.uniform(0, length) for _ in range(rng.randrange(0, 200)))
        timeline = scenes(cuts, length, rng.choice([0.5, 1.0, 2.0, 10.0]), seed)
        budget = rng.randrange(1, 40)
        kept, decoded = sample(length, Plan(rng.uniform(1, 10), budget), timeline,
                               timeline.times() if seed % 2 else None)
        assert timeline.probes == decoded <= budget
        assert 1 <= len(kept) <= decoded
        assert [s.time for s in kept] == sorted(s.time for s in kept)
        if budget >= 4 and length > 60:
            assert kept[0].time < length / 3 and kept[-1].time > length / 2, (seed, [s.time for s in kept])


def test_a_still_video_keeps_one_frame_and_a_fade_is_not_bisected_to_the_end() -> None:
    still = Timeline([(float(t), (90, 90, 90)) for t in range(60)])
    kept, decoded = sample(60.0, Plan(3.0, 32), still, still.times())
    assert len(kept) == 1 and decoded == 20  # the grid: one look every 3 s
    fade = Timeline([(t / 2, (round(t * 4), 0, 0)) for t in range(60)])  # a slow, even change
    kept, decoded = sample(30.0, Plan(10.0, 32), fade, fade.times())
    assert decoded <= 3 + 2  # the grid, and one look between each pair
    assert all(distance(a, b) > MERGE_DISTANCE for a, b in zip(kept, kept[1:]))


def test_out_of_time_stops_before_the_next_decode() -> None:
    timeline = scenes(cuts=[], length=60.0, gop=1.0, seed=3)
    calls = []

    def late() -> bool:
        calls.append(1)
        return len(calls) > 3

    _, decoded = sample(60.0, Plan(3.0, 32), timeline, timeline.times(), late)
    assert decoded == 3
