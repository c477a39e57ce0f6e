"""Place names as lookup keys, and which of GeoNames' unlabelled Chinese names to show.

A name is looked up by its key: Latin-script names folded (accents dropped,
case folded, apostrophes removed, hyphens and dots as spaces), so "Sao Paulo",
"são paulo" and "São Paulo" meet, as do "Xi'an" and "Xian"; Chinese names in
simplified script (OpenCC t2s), so "裡斯本" finds "里斯本". A Chinese name is
also found without its administrative suffix (广东省 -> 广东, 北京市 -> 北京,
加利福尼亚州 -> 加利福尼亚, 香港特别行政区 -> 香港) when two characters or more
remain: 广州 keeps its 州.

GeoNames' alternate names in the cities files carry no language tag; the Han
ones are Chinese or Japanese, sometimes a district's or a historic name
(深圳 comes with 宝安 and 新安). ``pick_chinese`` shows the name most of them
agree on: each name counts for its simplified form without the suffix, a form
that also appears with 市 (a city's own name) counts once more, then shorter
and already-simplified forms win. It is a heuristic and says so in docs/places.md.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Iterable

from ..indexing.textnorm import t2s

# Han ideographs (CJK unified, extension A, compatibility), and Latin letters with their accents
# (Latin-1, Extended-A/B, Extended Additional). A Chinese name is ideographs and the separators
# Chinese names use; a Latin one is letters and name punctuation. One name a line, so that a
# place's names are sorted out in one pass.
_IDEOGRAPH = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_LETTER = r"A-Za-z\u00c0-\u024f\u1e00-\u1eff"
_HAN = re.compile(rf"[{_IDEOGRAPH}]")
_CHINESE_LINE = re.compile(rf"^[{_IDEOGRAPH}·\-－ ]*[{_IDEOGRAPH}][{_IDEOGRAPH}·\-－ ]*$", re.M)
_LATIN_LINE = re.compile(rf"^[{_LETTER}' ’ʼ\-.,()/&]*[{_LETTER}][{_LETTER}' ’ʼ\-.,()/&]*$", re.M)
# Apostrophes go ("Xi'an" is "Xian"), separators become spaces ("Saint-Denis" is "Saint Denis").
# Regexes: str.translate with a table is four times slower on text that is not ASCII.
_APOSTROPHES = re.compile("['’ʼ`]")
_SEPARATORS = re.compile(r"[-_.,/()&]")
# The combining marks NFKD splits accents into (Unicode's combining blocks).
_BLANKS = re.compile(r"[^\S\n]+")
_EDGES = re.compile(r"^ | $", re.M)
_COMBINING = re.compile(r"[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
SUFFIXES = ("特别行政区", "自治区", "省", "市", "州")


def is_chinese(name: str) -> bool:
    """True for a name written in Han characters only (no kana, hangul or Latin letters)."""
    return "\n" not in name and bool(_CHINESE_LINE.fullmatch(name))


def is_latin(name: str) -> bool:
    """True for a name in Latin script (accents allowed), without digits."""
    return "\n" not in name and bool(_LATIN_LINE.fullmatch(name))


def sort_names(names: list[str]) -> tuple[list[str], list[str]]:
    """The Chinese and the Latin-script names of a list (as ``is_chinese``/``is_latin``), in two regex passes."""
    text = "\n".join(names)
    chinese = _CHINESE_LINE.findall(text) if _HAN.search(text) else []
    return chinese, _LATIN_LINE.findall(text)


def latin_key(name: str) -> str:
    """The lookup key of a Latin-script name."""
    return latin_keys([name])[0]


def latin_keys(names: list[str]) -> list[str]:
    """The lookup keys of many Latin-script names, folded together (a call per name costs more than the folding)."""
    text = "\n".join(names)
    if text.count("\n") != len(names) - 1:
        text = "\n".join(name.replace("\n", " ") for name in names)
    if not text.isascii():
        text = _COMBINING.sub("", unicodedata.normalize("NFKD", text))
    text = _SEPARATORS.sub(" ", _APOSTROPHES.sub("", text.casefold()))
    return _EDGES.sub("", _BLANKS.sub(" ", text)).split("\n") if names else []


def chinese_keys(simplified: str) -> list[str]:
    """The lookup keys of a Chinese name already in simplified script: itself, and without its suffix."""
    name = "".join(unicodedata.normalize("NFKC", simplified).split()).replace("·", "")
    keys = [name]
    for suffix in SUFFIXES:
        if name.endswith(suffix) and len(name) - len(suffix) >= 2:
            keys.append(name[:-len(suffix)])
            break
    return keys


def simplified(names: Iterable[str]) -> list[str]:
    """Many names to simplified script in one OpenCC call (a call per name costs more than the conversion)."""
    names = list(names)
    if not names:
        return []
    converted = t2s("\n".join(name.replace("\n", " ") for name in names)).split("\n")
    return converted if len(converted) == len(names) else [t2s(name) for name in names]


def query_keys(text: str) -> list[str]:
    """The keys a person's query is looked up by, most exact first."""
    text = " ".join(unicodedata.normalize("NFKC", text).split())
    if _HAN.search(text):
        return chinese_keys(t2s(text))
    return [latin_key(text)] if text else []


def pick_chinese(names: list[str], converted: list[str]) -> str | None:
    """The Chinese name to show among a place's Han names (``converted``: the same names in simplified script)."""
    if not names:
        return None
    counts: Counter[str] = Counter()
    with_city = set()
    literal = set(names)
    for name in converted:
        keys = chinese_keys(name)
        counts[keys[-1]] += 1
        if name.endswith("市"):
            with_city.add(keys[-1])

    def score(key: str) -> tuple[int, int, int, str]:
        return (counts[key] + (key in with_city), key in literal, -len(key), key)

    return max(counts, key=score)
