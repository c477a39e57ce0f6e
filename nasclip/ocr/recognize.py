"""Text recognition: each detected line cut out straight, turned upright, read by PP-OCRv4's CRNN.

A line's quadrilateral is warped into an upright rectangle (a tall one, a
column of characters, is turned a quarter so it reads left to right). The
direction classifier says whether it is upside down (a photo rotated with no
EXIF orientation). It is sometimes confidently wrong on small text (a
12-megapixel photo's caption read as "moos ApeaI eq" in the test corpus), so
a line it would turn is read both ways and the more certain reading kept:
upside-down lines are rare, and this costs only them. The recogniser reads
lines 48 pixels high, in batches of similar width (padding a short line to a
long one costs time, not accuracy), and its per-step character
probabilities are decoded the CTC way: best character per step, repeats
merged, blanks dropped. The character list (6,623 Chinese characters, Latin
letters, digits and punctuation, plus the space) is stored in the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..errors import ModelError
from .detect import _cv2
from .textform import is_cjk

if TYPE_CHECKING:
    from ..indexing.backends import Session

HEIGHT = 48  # the recogniser's and the classifier's input height
REC_MIN_WIDTH = 320
CLS_WIDTH = 192
BATCH = 6
UPSIDE_DOWN = 0.9  # the classifier's confidence needed to turn a line
MIN_SCORE = 0.5  # lines read with a lower mean character probability are dropped (RapidOCR's text_score)
SPACE_HINT = 0.15  # a gap between two letters where the space class gets this much is a space (decode)



@dataclass(frozen=True)
class Read:
    """One line as the recogniser read it."""

    text: str
    score: float  # mean probability of its characters


def crop_line(bgr: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """The quadrilateral's pixels as an upright rectangle, reading left to right."""
    cv2 = _cv2()
    width = int(max(np.linalg.norm(corners[0] - corners[1]), np.linalg.norm(corners[2] - corners[3])))
    height = int(max(np.linalg.norm(corners[0] - corners[3]), np.linalg.norm(corners[1] - corners[2])))
    width, height = max(width, 1), max(height, 1)
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(corners.astype(np.float32), target)
    crop = cv2.warpPerspective(bgr, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE,
                               flags=cv2.INTER_CUBIC)
    if height >= 1.5 * width:
        crop = np.ascontiguousarray(np.rot90(crop))
    return crop


def _normalised(crop: np.ndarray, width: int, max_width: int) -> np.ndarray:
    """crop resized to HEIGHT × width, to [-1, 1], CHW, zero-padded on the right to max_width."""
    resized = _cv2().resize(crop, (width, HEIGHT)).astype(np.float32)
    out = np.zeros((3, HEIGHT, max_width), dtype=np.float32)
    out[:, :, :width] = resized.transpose(2, 0, 1) * (2.0 / 255.0) - 1.0
    return out


def _batches(crops: Sequence[np.ndarray]) -> list[list[int]]:
    """Indices of crops in groups of BATCH, narrowest first (similar widths pad least)."""
    order = sorted(range(len(crops)), key=lambda i: crops[i].shape[1] / max(crops[i].shape[0], 1))
    return [order[i:i + BATCH] for i in range(0, len(order), BATCH)]


class Classifier:
    """Says which line crops look upside down."""

    def __init__(self, session: "Session") -> None:
        self.session = session
        self._input = session.input_names()[0]

    def __call__(self, crops: list[np.ndarray]) -> list[bool]:
        flipped = [False] * len(crops)
        for group in _batches(crops):
            feed = np.stack([_normalised(crops[i], self._width(crops[i]), CLS_WIDTH) for i in group])
            probs = next(iter(self.session.run({self._input: feed}).values()))
            for i, p in zip(group, probs):
                flipped[i] = int(np.argmax(p)) == 1 and float(p[1]) > UPSIDE_DOWN
        return flipped

    @staticmethod
    def _width(crop: np.ndarray) -> int:
        h, w = crop.shape[:2]
        return min(CLS_WIDTH, int(math.ceil(HEIGHT * w / max(h, 1))))


class Recognizer:
    """Reads line crops (BGR, upright) into text."""

    def __init__(self, session: "Session", characters: Sequence[str]) -> None:
        self.session = session
        self._input = session.input_names()[0]
        # Index 0 is CTC's blank; the last class is the space, which the stored list leaves out.
        self.characters = ["", *characters, " "]

    def __call__(self, crops: list[np.ndarray]) -> list[Read]:
        reads: list[Read] = [Read("", 0.0)] * len(crops)
        for group in _batches(crops):
            ratios = [crops[i].shape[1] / max(crops[i].shape[0], 1) for i in group]
            max_width = max(REC_MIN_WIDTH, int(HEIGHT * max(ratios)))
            feed = np.stack([_normalised(crops[i], min(max_width, int(math.ceil(HEIGHT * r))), max_width)
                             for i, r in zip(group, ratios)])
            probs = next(iter(self.session.run({self._input: feed}).values()))
            if probs.shape[-1] != len(self.characters):
                raise ModelError(f"the recogniser gives {probs.shape[-1]} classes, its character list has "
                                 f"{len(self.characters)}: the model and its metadata do not match")
            for i, steps in zip(group, probs):
                reads[i] = self.decode(steps)
        return reads

    def decode(self, steps: np.ndarray) -> Read:
        """CTC greedy decoding of [T, classes] probabilities, with the spaces the model hesitates over.

        The recogniser often reads the gap between two words of Latin script
        as blanks only, while still giving the space class a fifth or more of
        the probability there (inside a word it gives it almost nothing):
        such a gap becomes a space, so "calendar friday" is not read as one
        word. On the test corpus this lifts exact-word recall by several
        points and costs no precision (tests/system/test_ocr_quality.py).
        """
        best = steps.argmax(axis=1)
        keep = np.ones(len(best), dtype=bool)
        keep[1:] = best[1:] != best[:-1]
        keep &= best != 0
        if not keep.any():
            return Read("", 0.0)
        space = len(self.characters) - 1
        positions = np.flatnonzero(keep)
        chars = [self.characters[best[p]] for p in positions]
        out = [chars[0]]
        for (a, b), c in zip(zip(positions[:-1], positions[1:]), chars[1:]):
            gap = steps[a + 1:b, space]
            if (len(gap) and gap.max() >= SPACE_HINT and out[-1] != " " and c != " "
                    and not (is_cjk(out[-1]) or is_cjk(c))):
                out.append(" ")
            out.append(c)
        return Read("".join(out), float(steps.max(axis=1)[keep].mean()))
