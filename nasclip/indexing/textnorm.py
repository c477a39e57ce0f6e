"""Query text normalisation, applied before tokenizing as the manifest's ``text.normalize`` says.

A model's authors clean text in Python before their tokenizer sees it, and a
tokenizer file cannot say so. The steps here reproduce those clean-ups, so
nasclip's token ids equal the reference implementation's:

* ``clean``: open_clip's ``basic_clean`` then ``whitespace_clean`` —
  ``ftfy.fix_text`` (mojibake, curly quotes, ligatures, full-width Latin),
  HTML entities unescaped twice (``&amp;amp;`` -> ``&``), whitespace runs
  collapsed to one space, ends stripped. Every open_clip tokenizer does it.
* ``lower``: ``str.lower``.
* ``strip_punct``: open_clip's ``canonicalize_text`` (what SigLIP models
  were trained on): ``_`` becomes a space, ASCII punctuation is removed,
  whitespace collapsed. Lower-casing is the separate ``lower`` step.
* ``t2s``: traditional Chinese to simplified (OpenCC's ``t2s``), for models
  trained on simplified text — so "紅色的圓形" finds what "红色的圆形" finds.

``text.prefix`` is prepended after the steps (e.g. an nllb-clip language code).
"""

from __future__ import annotations

import html
import string
import threading
from typing import Any, Callable, Iterable, get_args

from ..model.spec import NormalizeStep

STEPS: tuple[str, ...] = get_args(NormalizeStep)

_PUNCTUATION = str.maketrans("", "", string.punctuation)
_opencc: Any = None
_opencc_lock = threading.Lock()


def collapse_whitespace(text: str) -> str:
    """Runs of whitespace (Python's definition, as open_clip uses) as one space, ends stripped."""
    return " ".join(text.split())


def clean(text: str) -> str:
    import ftfy

    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return collapse_whitespace(text)


def strip_punct(text: str) -> str:
    return collapse_whitespace(text.replace("_", " ").translate(_PUNCTUATION))


def t2s(text: str) -> str:
    global _opencc
    with _opencc_lock:  # one converter, built on first use (it loads its dictionaries then)
        if _opencc is None:
            import opencc

            _opencc = opencc.OpenCC("t2s")
        converter = _opencc
    return str(converter.convert(text))


_FUNCTIONS: dict[str, Callable[[str], str]] = {
    "clean": clean, "lower": str.lower, "strip_punct": strip_punct, "t2s": t2s}


class TextNormalizer:
    """The manifest's normalisation steps and prefix, as one function of a query."""

    def __init__(self, steps: Iterable[str], prefix: str = "") -> None:
        unknown = [s for s in steps if s not in _FUNCTIONS]
        if unknown:
            raise ValueError(f"unknown text.normalize step(s) {unknown}; known: {', '.join(STEPS)}")
        self.steps = tuple(steps)
        self.prefix = prefix
        self._functions = [_FUNCTIONS[s] for s in self.steps]

    def __call__(self, text: str) -> str:
        if not self._functions:
            # Whitespace runs (tabs, newlines from a pasted query) carry no
            # meaning for either tokenizer family. With steps, they are the
            # whole pipeline: collapsing first would change what ``clean``
            # sees (ftfy reads U+0085 as an ellipsis, not a space).
            return self.prefix + collapse_whitespace(text)
        for function in self._functions:
            text = function(text)
        return self.prefix + text
