"""Issue 16: --all's cut-off comes from the query's own scores, the same way on any scale.

Synthetic score distributions of the shapes real ones have (a crowd of
matches near the best score, near misses below, a broad bulk of unrelated
photos); the demo model's real scores are checked end to end in
tests/system/test_all.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from nasclip.query.cutoff import find_cutoff, upper_bound


def scores(rng: np.random.Generator, matches: int, spread: float = 0.01, near: int = 0, bulk: int = 1000,
           top: float = 0.6) -> tuple[np.ndarray, float]:
    """(every score best first, median): a crowd of matches, optional near misses, an unrelated bulk."""
    crowd = top - np.abs(rng.normal(0, spread, matches))
    misses = rng.uniform(top - 0.25, top - 0.12, near)
    rest = rng.normal(0.0, 0.1, bulk)
    every = np.sort(np.concatenate([crowd, misses, rest]))[::-1]
    return every, float(np.median(every))


def cut(every: np.ndarray, median: float) -> int:
    """find_cutoff as the searcher calls it: the scores down to the upper bound, and one more."""
    upper = int(np.count_nonzero(every >= upper_bound(every[0], median)))
    return find_cutoff(every[:upper + 1], median).count


@pytest.mark.parametrize("matches", [1, 3, 20, 150])
def test_a_crowd_of_matches_above_the_rest_is_found_whatever_its_size(matches: int) -> None:
    rng = np.random.default_rng(matches)
    every, median = scores(rng, matches)
    assert cut(every, median) == matches


def test_near_misses_below_the_crowd_are_left_out_though_a_wider_gap_lies_below_them() -> None:
    rng = np.random.default_rng(7)
    every, median = scores(rng, 25, spread=0.008, near=6)
    gaps = every[:-1] - every[1:]
    assert int(np.argmax(gaps[: len(every) // 2])) + 1 != 25  # the widest gap is not the boundary here
    assert cut(every, median) == 25


@pytest.mark.parametrize("scale, shift", [(1.0, 0.0), (0.5, 0.1), (3.0, -1.2), (0.05, 0.25)])
def test_the_cut_off_is_the_same_on_any_scale_and_shift_of_the_scores(scale: float, shift: float) -> None:
    rng = np.random.default_rng(11)
    every, median = scores(rng, 40, near=5)
    assert cut(every * scale + shift, median * scale + shift) == cut(every, median) == 40


def test_degenerate_inputs_give_an_answer_not_an_error() -> None:
    assert find_cutoff(np.array([]), 0.0).count == 0
    assert find_cutoff(np.array([0.4]), 0.1).count == 1
    assert find_cutoff(np.array([0.3, 0.3, 0.3]), 0.3).count == 1  # nothing stands out: the best alone
    assert find_cutoff(np.array([0.5, 0.5, 0.5, 0.1]), 0.0).count == 3  # equal scores go together
    flat = find_cutoff(np.array([0.5, 0.5, 0.5]), 0.0)
    assert flat.count == 3 and 0.0 < flat.score < 0.5  # the median stands for the photos below


def test_the_cut_off_lies_in_the_gap_and_counts_the_scores_above_it() -> None:
    rng = np.random.default_rng(3)
    every, median = scores(rng, 12)
    found = find_cutoff(every[:200], median)
    assert every[found.count - 1] > found.score > every[found.count]
    assert set(found.as_dict()) == {"score", "matches", "method"}
