"""--all: where "matches the description" ends, read off this query's own scores.

A flat score threshold fails across queries and across models (a CLIP
model's matching scores sit near 0.3, the demo model's near 0.6, and each
query's differ), so the cut-off is found in the shape of the query's score
distribution instead:

* Scores are put on the query's own scale: 0 at the median photo's score
  (what an unrelated photo scores), 1 at the best. Only the upper half of
  that scale (``UPPER``) is searched for the boundary: a match scores
  nearer the best photo than an unrelated one.
* The photos that match a description crowd near the top score (they all
  show it); the near misses below them (the right colour, the wrong shape)
  are sparser. So the boundary is the gap between two consecutive scores
  that is largest *relative to the mean spacing of the scores above it* —
  the place where the crowd thins out most sharply — not the largest gap
  outright, which tends to lie deeper, below the near misses. The mean
  spacing above counts one prior gap (the upper region's mean spacing), so
  that a lone best photo does not make its own gap look infinitely large.

Scale- and shift-free: the same code serves every model, fp32 or int8,
with no per-model setting. Measured on the demo model (tests/system/
test_all.py, docs/protocol.md): precision and recall both ≥ 0.9 for about
93 % of colour-and-shape descriptions on shares of 300-1500 scenes, mean
precision 0.98 and mean recall 0.99; every colour-only, shape-only and
three-part description.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UPPER = 0.5  # the boundary is sought where scores are at least halfway from the median to the best
METHOD = "largest gap relative to the mean spacing above it, in the upper half of the query's score range"


@dataclass(frozen=True)
class Cutoff:
    """The score at which a query's matches end, and how many scores lie above it."""

    score: float
    count: int

    def as_dict(self) -> dict:
        return {"score": round(self.score, 6), "matches": self.count, "method": METHOD}


def upper_bound(best: float, median: float) -> float:
    """Scores below this cannot start the boundary: the caller needs the scores down to it, and one more."""
    return median + UPPER * (best - median)


def find_cutoff(scores: np.ndarray, median: float) -> Cutoff:
    """The cut-off for scores (best first): every score down to ``upper_bound``, plus the next one if any.

    ``median`` is the median score of the whole searched collection. The
    returned cut-off lies halfway in the chosen gap; ``count`` scores are at
    or above it.
    """
    x = np.asarray(scores, dtype=np.float64)
    n = len(x)
    if n == 0:
        return Cutoff(float("inf"), 0)
    best = float(x[0])
    if best <= median:  # no photo stands out: only the best
        return Cutoff(best, 1)
    upper = int(np.count_nonzero(x >= upper_bound(best, median)))
    if upper == n:  # no score below the region (a small collection): the median stands for the rest
        x = np.append(x, median)
    upper = max(1, upper)
    gaps = x[:upper] - x[1:upper + 1]
    prior = (best - x[upper]) / upper  # the upper region's mean spacing
    above = (best - x[:upper] + prior) / (np.arange(upper) + 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(above > 0, gaps / above, 0.0)
    k = int(np.argmax(ratio))
    if gaps[k] <= 0:  # every score in the region is equal: all of them
        return Cutoff(float(x[upper - 1]), upper)
    return Cutoff(float((x[k] + x[k + 1]) / 2), k + 1)
