"""The text filter of a search (``text_in``): which photos show every word, how well, and where.

Every term is folded as recognised text is (nasclip/ocr/textform.py), so
STARBUCKS finds "Starbucks", Ｔｅｌ finds "Tel" and 臺北 finds "台北"; the
catalog's trigram index finds photos whose text holds each term anywhere,
also inside a word (CatalogReader.text_matches). A search with CLIP terms
ranks only these photos; one without ranks them by ``quality`` (whole words
first), then by date. Each result shows the text around the first term.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ProtocolError
from ..ocr.textform import fold, quality, snippet
from ..store.reader import CatalogReader
from .protocol import BAD_REQUEST

# The most photos one text filter considers: a word in every photo of a large library
# (a date, "the") is no filter. Documented in docs/protocol.md.
MAX_TEXT_MATCHES = 20_000


@dataclass(frozen=True)
class TextMatches:
    """Photos whose recognised text holds every term: id -> (folded text, recognised lines)."""

    terms: tuple[str, ...]  # folded
    found: dict[int, tuple[str, str]]

    def quality(self, file_id: int) -> float:
        folded, _ = self.found[file_id]
        return quality(folded, self.terms)

    def snippet(self, file_id: int) -> str:
        _, text = self.found[file_id]
        return snippet(text.splitlines(), self.terms[0])


def find_text(reader: CatalogReader, text_in: tuple[str, ...]) -> TextMatches:
    """The photos whose text holds every term of text_in (at most MAX_TEXT_MATCHES of them)."""
    terms = tuple(dict.fromkeys(fold(term) for term in text_in))
    if not all(terms):
        raise ProtocolError(BAD_REQUEST, "'text_in' holds a term with nothing searchable in it")
    found = {i: (folded, text) for i, folded, text in reader.text_matches(list(terms), MAX_TEXT_MATCHES)}
    return TextMatches(terms, found)
