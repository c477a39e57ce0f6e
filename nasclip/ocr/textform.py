"""The searchable form of text, the same for what a photo shows and what a person types.

``fold`` makes the forms a person does not distinguish equal: Unicode NFKC
(full-width Ｓｔａｒ and half-width Star, ligatures, circled and
compatibility characters), case folding (STAR, star; ß and ss), traditional
to simplified Chinese (OpenCC's t2s, as query text for Chinese CLIP models
is folded: 臺北 and 台北) and runs of whitespace as one space. Recognised
lines are joined with a space, so a phrase broken over two lines of a sign
still matches.

``quality`` scores how well a photo's folded text holds the terms (whole
words beat parts of words); ``snippet`` cuts the recognised text around the
first match, for showing with a result.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Sequence

from ..indexing.textnorm import t2s

SNIPPET_CHARS = 80  # at most this many characters of recognised text are shown with a result
ELLIPSIS = "…"
_CJK = "\u2e80-\u9fff\uf900-\ufaff\U00020000-\U0003ffff"
_CJK_SPACE = re.compile(f"(?<=[{_CJK}])\\s+(?=[{_CJK}])")


def fold(text: str) -> str:
    """The searchable form of text (see the module's docstring)."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    if any(ord(c) >= 0x2E80 for c in folded):  # OpenCC only for text that may hold Chinese
        folded = t2s(folded)
        # Chinese is written without spaces; one between two characters (a sign's layout, a
        # typed query) means nothing, so 星巴克 咖啡 and 星巴克咖啡 are the same text.
        folded = _CJK_SPACE.sub("", folded)
    return " ".join(folded.split())


def searchable(lines: Sequence[str]) -> str:
    """The folded form of a photo's recognised lines, as stored in the text index."""
    return fold(" ".join(lines))


def is_cjk(c: str) -> bool:
    """A Chinese (or Japanese) character or CJK punctuation: text written without spaces between words."""
    code = ord(c)
    return 0x2E80 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0x20000 <= code <= 0x3FFFF


def _is_word_char(c: str) -> bool:
    return c.isalnum() and not is_cjk(c)


def _match_quality(folded: str, term: str) -> float:
    """1 for a whole word (any match in Chinese), 0.75 for the start of a word, 0.5 for a part of one, 0: absent."""
    best = 0.0
    start = folded.find(term)
    while start >= 0 and best < 1.0:
        end = start + len(term)
        before = folded[start - 1] if start > 0 else " "
        after = folded[end] if end < len(folded) else " "
        starts = not (_is_word_char(before) and _is_word_char(term[0]))
        ends = not (_is_word_char(after) and _is_word_char(term[-1]))
        best = max(best, 1.0 if starts and ends else 0.75 if starts else 0.5)
        start = folded.find(term, start + 1)
    return best


def quality(folded: str, terms: Sequence[str]) -> float:
    """Mean match quality of folded terms in a photo's folded text (0 when one is missing)."""
    scores = [_match_quality(folded, term) for term in terms]
    return 0.0 if not scores or min(scores) == 0 else sum(scores) / len(scores)


def snippet(lines: Sequence[str], term: str) -> str:
    """The recognised text from the line where a folded term first matches, at most SNIPPET_CHARS long.

    A long stretch is cut around the match (positions in a folded line
    nearly always equal the original's); "…" marks text left out.
    """
    folded_lines = [fold(line) for line in lines]
    where = max(" ".join(folded_lines).find(term), 0) if term else 0
    offset = first = 0
    for i, line in enumerate(folded_lines):
        if where <= offset + len(line):
            first = i
            break
        offset += len(line) + 1
    text = " ".join(lines[first:])
    inner = min(max(where - offset, 0), len(text))
    start = 0 if len(text) <= SNIPPET_CHARS else max(0, min(inner - SNIPPET_CHARS // 3, len(text) - SNIPPET_CHARS))
    end = start + SNIPPET_CHARS
    before = ELLIPSIS if first > 0 or start > 0 else ""
    return before + text[start:end].strip() + (ELLIPSIS if end < len(text) else "")
