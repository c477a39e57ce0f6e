"""Query texts encoded together: concurrent queries' new texts share text-encoder runs.

The runs go through the query work batcher (batching.py), keyed by the
encoder: texts for the same model that arrive during one run form the
next, each distinct text encoded once, and text runs take their turn with
index scans in the same few slots.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .batching import Batcher


class TextEncoder(Protocol):
    """What text batching needs of an encoder (indexing/encoder.py's Encoder): hashable, as the batch key."""

    def __hash__(self) -> int: ...

    def encode_texts(self, texts: list[str]) -> np.ndarray: ...


def encode_texts(work: Batcher, encoder: TextEncoder, texts: list[str]) -> list[np.ndarray]:
    """The unit vectors of one query's texts (weighted terms), queued together so one run can take them all."""

    def run(batch: list[str]) -> list[np.ndarray]:
        distinct = list(dict.fromkeys(batch))  # one row per distinct text
        rows = dict(zip(distinct, encoder.encode_texts(distinct)))
        return [rows[text].copy() for text in batch]

    return work.submit(encoder, texts, run)
