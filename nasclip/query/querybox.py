"""One query box: "beach after:2019-06 before:2019-09 place:Lisbon camera:iphone", "2019年 里斯本 海滩".

``parse(q, places)`` splits what a person typed into the description CLIP
ranks by and the filters the rest of the words name:

* operators, for every filter: ``after:`` ``before:`` ``taken:`` (a year,
  month or day: ``taken:2019-06``), ``place:``/``near:``, ``camera:``,
  ``share:``, ``in:`` (a folder) and ``sort:`` (``score``, ``date``, ``-date``);
  a value with spaces is quoted (``place:"New York"``). A word with a colon
  that names no operator ("16:9", "http://...") stays search text.
* plain dates: one year ("2019", "2019年"), month ("2019-06", "2019年6月") or
  day ("2019-06-15", "2019年6月15日") becomes "taken then"; two or more are
  ambiguous and stay text.
* plain place names the gazetteer knows: in Latin script, words written with
  a capital ("Lisbon", "New York"), since lower-case words are the
  description's ("orange cat", "china cup"); in Chinese, any run of two or
  more characters that names a place ("里斯本的海滩"). Only when unambiguous:
  the place must be the largest of its name by ten times (Paris, France over
  Paris, Texas; not Springfield) and have ``PLAIN_PLACE_POPULATION`` people,
  so a village's name is not taken from a description. A preposition or
  particle left dangling before a place or date ("in", "near", "在") goes too.
* quoted words ("...", “...”, 「...」) are never dates or places. Where the daemon
  reads the text in photos (``ocr.enabled``), they must appear in it, as the
  ``text:`` operator's word does (``receipt "星巴克"``: the quoted part filters,
  the rest ranks by CLIP); elsewhere they are part of the description.
* ``+`` and ``-`` between words add or subtract descriptions, as on the command line.

Nothing here touches the catalog; the searcher turns ``Parsed`` into filters
and says back how it understood the query (``describe``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Protocol

from ..errors import ProtocolError
from ..meta.gazetteer import Place
from .wire import BAD_REQUEST

PLAIN_PLACE_POPULATION = 100_000
DOMINANCE = 10.0  # a plain place name must name a place this many times larger than any other it names
MAX_PLACE_WORDS = 4  # "Rio de Janeiro", "Santa Cruz de Tenerife"
MAX_CHINESE_PLACE = 8  # characters: 加利福尼亚州, 克罗地亚共和国
OPERATORS = {"after": "after", "before": "before", "taken": "taken", "place": "place", "near": "place",
             "camera": "camera", "share": "share", "in": "in", "sort": "sort", "text": "text"}
_QUOTES = {'"': '"', "“": "”", "「": "」", "『": "』"}
_TOKEN = re.compile(r'(?P<op>[A-Za-z]+):(?:"(?P<opq>[^"]*)"?|“(?P<opc>[^”]*)”?|(?P<opv>\S+))'
                    r'|(?P<quoted>"[^"]*"?|“[^”]*”?|「[^」]*」?|『[^』]*』?)'
                    r'|(?P<word>[^\s"“「『]+)')
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_HAN_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_YEAR = r"(1[89]\d\d|20\d\d)"
_ISO_DATE = re.compile(rf"{_YEAR}(?:-(\d\d?)(?:-(\d\d?))?)?")
_CHINESE_DATE = re.compile(rf"{_YEAR}年(?:(\d\d?)月(?:(\d\d?)[日号])?)?")
_PREPOSITIONS = {"in", "at", "near", "from", "during", "on", "of", "around"}
_PARTICLES = "在于的"  # a place or date's connectors in Chinese: 在里斯本, 2019年的
_TRIM = ",.;!?，。；！？、"


class PlaceNames(Protocol):
    """What the parser needs of the gazetteer (nasclip/meta/places.py)."""

    def resolve(self, name: str) -> list[Place]: ...


@dataclass(frozen=True)
class Period:
    """A stretch of days: [start, end), on the NAS's clock; ``unit`` says how it was written."""

    start: date
    end: date
    unit: str  # "year", "month", "day", or "range"

    @classmethod
    def parse(cls, text: str) -> Period | None:
        """2019, 2019-06, 2019-06-15 or 2019年, 2019年6月, 2019年6月15日; None if it is no such date."""
        found = _ISO_DATE.fullmatch(text) or _CHINESE_DATE.fullmatch(text)
        if found is None:
            return None
        year, month, day = (int(g) if g else None for g in found.groups())
        assert year is not None
        try:
            if month is None:
                return cls(date(year, 1, 1), date(year + 1, 1, 1), "year")
            if day is None:
                start = date(year, month, 1)
                return cls(start, date(year + month // 12, month % 12 + 1, 1), "month")
            start = date(year, month, day)
            return cls(start, start + timedelta(days=1), "day")
        except ValueError:  # month 13, February 30
            return None



def midnight(day: date) -> float:
    """The Unix time of a day's local midnight, as the protocol's dates mean a plain day."""
    return datetime(day.year, day.month, day.day).astimezone().timestamp()


@dataclass
class Parsed:
    """What a query box said: descriptions with their signs, and the filters its words named."""

    terms: list[tuple[float, str]] = field(default_factory=list)
    after: date | None = None  # the first day (after:, taken:, a plain date)
    before: date | None = None  # the day after the last (before: its first day; taken:, a plain date: its end)
    place: str | None = None  # a name for the gazetteer
    place_found: Place | None = None  # what a plain name resolved to (operators resolve later)
    place_words: str | None = None  # the plain name as typed
    camera: str | None = None
    share: str | None = None
    folder: str | None = None
    sort: str | None = None
    text_in: list[str] = field(default_factory=list)  # words the photo's text must hold (text:, quoted words)
    chinese: bool = False  # the query was written in Chinese: say back in Chinese


def parse(q: str, places: PlaceNames | None, quoted_is_text: bool = False) -> Parsed:
    """Split a query box into descriptions and filters (see the module's docstring); places may be None.

    quoted_is_text: quoted words are words to find in the photos' text (the daemon reads it), not description.
    """
    parsed = Parsed(chinese=bool(_HAN.search(q)))
    pieces: list[tuple[str, str]] = []  # ("text" | "quoted" | "sign", value) in order
    for match in _TOKEN.finditer(q):
        if match.group("op") is not None:
            key = match.group("op").lower()
            value = next((v for v in (match.group("opq"), match.group("opc"), match.group("opv")) if v is not None),
                         "")
            if key in OPERATORS and value.strip():
                _operator(parsed, OPERATORS[key], value.strip())
                continue
            pieces.append(("text", match.group(0)))
        elif match.group("quoted") is not None:
            quoted = match.group("quoted")
            inner = quoted[1:-1] if len(quoted) > 1 and quoted[-1] == _QUOTES[quoted[0]] else quoted[1:]
            if inner.strip() and quoted_is_text:
                parsed.text_in.append(inner.strip())
            elif inner.strip():
                pieces.append(("quoted", inner.strip()))
        else:
            word = match.group("word")
            pieces.append(("sign" if word in ("+", "-") else "text", word))
    pieces = _plain_dates(parsed, pieces)
    if places is not None and parsed.place is None:
        pieces = _plain_places(parsed, pieces, places)
    parsed.terms = _terms(pieces)
    return parsed


def _fail(message: str) -> ProtocolError:
    return ProtocolError(BAD_REQUEST, message)


def _operator(parsed: Parsed, key: str, value: str) -> None:
    if key in ("after", "before", "taken"):
        period = Period.parse(value)
        if period is None:
            raise _fail(f"{key}:{value} is not a date; write a year, month or day: 2019, 2019-06, 2019-06-15")
        if key in ("after", "taken"):
            _once(parsed.after, key)
            parsed.after = period.start
        if key in ("before", "taken"):
            _once(parsed.before, key)
            parsed.before = period.start if key == "before" else period.end
    elif key == "text":
        parsed.text_in.append(value)
    elif key == "sort":
        if value not in ("score", "date", "-date"):
            raise _fail(f"sort:{value} is not an order; use sort:score, sort:date or sort:-date")
        parsed.sort = value
    else:
        attribute = {"place": "place", "camera": "camera", "share": "share", "in": "folder"}[key]
        _once(getattr(parsed, attribute), key)
        setattr(parsed, attribute, value)


def _once(existing: object, key: str) -> None:
    if existing is not None:
        raise _fail(f"the query names {key}: (or a date) twice; give each filter once")


def _plain_dates(parsed: Parsed, pieces: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """One plain year, month or day (ISO, or Chinese within Chinese words) becomes 'taken then'."""
    found: list[tuple[int, Period, tuple[int, int] | None]] = []  # piece, period, span inside a Chinese word
    for i, (kind, value) in enumerate(pieces):
        if kind != "text":
            continue
        period = Period.parse(value.strip(_TRIM))
        if period is not None:
            found.append((i, period, None))
            continue
        for match in _CHINESE_DATE.finditer(value):
            period = Period.parse(match.group(0))
            if period is not None:
                found.append((i, period, match.span()))
    if len(found) != 1 or parsed.after is not None or parsed.before is not None:
        return pieces  # none, or two dates: which one is meant is not clear
    i, period, span = found[0]
    parsed.after, parsed.before = period.start, period.end
    return _consume(pieces, i, span)


def _consume(pieces: list[tuple[str, str]], i: int, span: tuple[int, int] | None) -> list[tuple[str, str]]:
    """pieces without piece i (or span of it), and without a connector left dangling before it."""
    kind, value = pieces[i]
    if span is not None:
        before, after = value[:span[0]].rstrip(_PARTICLES), value[span[1]:].lstrip(_PARTICLES)
        rest = [("text", part) for part in (before, after) if part]
        return pieces[:i] + rest + pieces[i + 1:]
    head = pieces[:i]
    if head and head[-1][0] == "text" and head[-1][1].lower() in _PREPOSITIONS:
        head = head[:-1]
    return head + pieces[i + 1:]


def _plain_places(parsed: Parsed, pieces: list[tuple[str, str]], places: PlaceNames) -> list[tuple[str, str]]:
    """The first unambiguous place named in plain words becomes the place filter."""
    for i, (kind, value) in enumerate(pieces):
        if kind != "text":
            continue
        if _HAN.search(value):
            for run in _HAN_RUN.finditer(value):
                found = _chinese_place(run.group(0), places)
                if found is not None:
                    (start, stop), place = found
                    parsed.place_found, parsed.place_words = place, run.group(0)[start:stop]
                    offset = run.start()
                    return _consume(pieces, i, (offset + start, offset + stop))
            continue
        for length in range(MAX_PLACE_WORDS, 0, -1):
            words = pieces[i:i + length]
            if len(words) < length or any(k != "text" or not _capitalised(v) for k, v in words):
                continue
            name = " ".join(v.strip(_TRIM) for _, v in words)
            clear = _clear(places.resolve(name))
            if clear is not None:
                parsed.place_found, parsed.place_words = clear, name
                return _consume(pieces[:i + 1] + pieces[i + length:], i, None)
    return pieces


def _chinese_place(run: str, places: PlaceNames) -> tuple[tuple[int, int], Place] | None:
    """The leftmost, longest place name inside a run of Chinese characters."""
    for start in range(len(run) - 1):
        for stop in range(min(len(run), start + MAX_CHINESE_PLACE), start + 1, -1):
            place = _clear(places.resolve(run[start:stop]))
            if place is not None:
                return (start, stop), place
    return None


def _capitalised(word: str) -> bool:
    word = word.strip(_TRIM)
    return bool(word) and word[0].isupper() and any(c.isalpha() for c in word)


def _clear(found: list[Place]) -> Place | None:
    """The place a plain name means, if it clearly means one large enough; None otherwise."""
    if not found:
        return None
    first = found[0]
    # The same name at two levels of one country (Taipei city and Taipei region) is one place to a person.
    others = [p for p in found[1:] if not (p.name == first.name and p.country == first.country)]
    if first.population < PLAIN_PLACE_POPULATION:
        return None
    if others and first.population < DOMINANCE * others[0].population:
        return None
    return first


def _terms(pieces: list[tuple[str, str]]) -> list[tuple[float, str]]:
    """The descriptions between + and -, each with its sign."""
    terms: list[tuple[float, str]] = []
    sign, words = 1.0, []  # type: float, list[str]
    for kind, value in [*pieces, ("sign", "+")]:
        if kind == "sign":
            text = " ".join(words).strip(_TRIM + " ")
            if text:
                terms.append((sign, text))
            sign, words = (1.0 if value == "+" else -1.0), []
        else:
            words.append(value)
    return terms
