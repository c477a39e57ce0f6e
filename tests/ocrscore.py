"""Word recall and precision of recognised text against a corpus's truth (tests/ocrcorpus.py).

English: a word counts as found when a recognised token equals it (after
folding: case, width); precision is the share of recognised tokens that are
words of the image. Chinese has no spaces: a word counts as found when the
recognised text (spaces removed) holds it; precision is counted by
characters. A missed word falls into one category: ``misread`` (something
within a third of its length in edits was read in its place), ``split or
merged`` (English: found once spaces are ignored) or ``not read`` (nothing
like it: not detected, or dropped as too uncertain).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from nasclip.ocr.textform import fold

TOKEN = re.compile(r"[0-9]+(?:\.[0-9]+)?|[^\W\d_]+")


def _cjk(text: str) -> list[str]:
    return [c for c in text if 0x3400 <= ord(c) <= 0x9FFF]


def _distance(a: str, b: str) -> int:
    """Levenshtein distance."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


@dataclass
class Score:
    """Counts for one group of images."""

    words: int = 0
    found: int = 0
    read: int = 0  # recognised tokens (English) or characters (Chinese)
    right: int = 0  # of those, ones the image shows
    misses: Counter = field(default_factory=Counter)

    def add(self, other: "Score") -> None:
        self.words += other.words
        self.found += other.found
        self.read += other.read
        self.right += other.right
        self.misses.update(other.misses)

    @property
    def recall(self) -> float:
        return self.found / self.words if self.words else 1.0

    @property
    def precision(self) -> float:
        return self.right / self.read if self.read else 1.0


def score(language: str, truth: list[str], recognised: str) -> Score:
    """How well recognised text (every line) holds the truth's words."""
    read = fold(recognised)
    result = Score(words=len(truth))
    if language == "en":
        tokens = Counter(TOKEN.findall(read))
        wanted = Counter(fold(w) for w in truth)
        hit = tokens & wanted
        result.found = sum(hit.values())
        result.read = sum(tokens.values())
        result.right = result.found
        joined = read.replace(" ", "")
        for word, n in (wanted - hit).items():
            if any(_distance(word, t) <= max(1, len(word) // 3) for t in tokens):
                category = "misread"
            elif word in joined:
                category = "split or merged"
            else:
                category = "not read"
            result.misses[category] += n
        return result
    flat = read.replace(" ", "")
    for word in (fold(w) for w in truth):
        if word in flat:
            result.found += 1
            continue
        windows = {flat[i:i + len(word)] for i in range(max(1, len(flat) - len(word) + 1))}
        near = any(_distance(word, w) <= max(1, len(word) // 3) for w in windows if w)
        result.misses["misread" if near else "not read"] += 1
    chars = Counter(_cjk(flat))
    result.read = sum(chars.values())
    result.right = sum((chars & Counter(_cjk("".join(fold(w) for w in truth)))).values())
    return result
