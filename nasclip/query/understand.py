"""A request as the searcher runs it: the query box merged in, the place resolved, and said back.

``understand(request, places)`` parses ``q`` (querybox.py) and merges what it
found with the request's own keys (a filter given both ways is refused:
which one was meant is not clear), resolves a place name to a
``PlaceFilter`` through the gazetteer, and describes the whole search in
one line a person can check — "'beach', taken in 2019, near Lisbon,
Portugal" — in Chinese when the query was written in Chinese.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from ..errors import ProtocolError
from ..meta.gazetteer import Place
from ..meta.places import Gazetteer, Places
from ..store.reader import PlaceFilter
from .protocol import MAX_TERMS, MAX_TEXT_TERMS, Request, Term
from .querybox import Parsed, Period, midnight, parse
from .wire import BAD_REQUEST, NOT_FOUND

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")


@dataclass(frozen=True)
class Understood:
    """The request to run, its place as a filter, and the line that says how it was understood."""

    request: Request
    place: PlaceFilter | None
    description: str
    # Whether the search is more than its words: filters, an order, every match, or words the box took
    # as filters. A client shows the description then (nasclip-query's first line).
    interpreted: bool


def understand(request: Request, places: Places, reads_text: bool = False) -> Understood:
    """Merge the query box into the request and resolve its place (module docstring).

    reads_text: the daemon reads the text in photos, so the box's quoted words are looked for there.
    """
    parsed = parse(request.q, places, quoted_is_text=reads_text) if request.q else Parsed()
    request = _merge(request, parsed)
    place, place_name = _place(request, parsed, places.get() if request.place or parsed.place_found else None)
    interpreted = request.filtered or place is not None or request.sort != "score" or request.all
    chinese = parsed.chinese or request.lang == "zh"
    return Understood(request, place, describe(request, place_name, chinese), interpreted)


def _fail(message: str) -> ProtocolError:
    return ProtocolError(BAD_REQUEST, message)


def _merge(request: Request, parsed: Parsed) -> Request:
    changes: dict = {}
    if parsed.terms:
        terms = [Term(weight, text=text) for weight, text in parsed.terms]
        if not any(t.weight > 0 for t in [*request.terms, *terms]):
            raise _fail("every description is subtracted; say what to look for first, e.g. 'beach - people'")
        changes["terms"] = request.terms + tuple(terms)
    periods = {"after": midnight(parsed.after) if parsed.after else None,
               "before": midnight(parsed.before) if parsed.before else None}
    for key, value in [*periods.items(), ("camera", parsed.camera), ("share", parsed.share)]:
        if value is not None:
            if getattr(request, key) is not None:
                raise _fail(f"the query box and the request both give '{key}'; give it once")
            changes[key] = value
    if parsed.folder is not None:
        if request.path_prefix is not None:
            raise _fail("the query box and the request both give a folder; give it once")
        if not parsed.folder.startswith("/"):
            raise _fail(f"in:{parsed.folder} must be an absolute folder, e.g. in:/srv/photos/2019")
        changes["path_prefix"] = os.path.normpath(parsed.folder)
    if parsed.sort is not None:
        changes["sort"] = parsed.sort
    if parsed.text_in:
        words = request.text_in + tuple(parsed.text_in)
        if len(words) > MAX_TEXT_TERMS:
            raise _fail(f"the query looks for more than {MAX_TEXT_TERMS} words in the photos' text")
        changes["text_in"] = words
    if parsed.place is not None or parsed.place_found is not None:
        if request.place is not None:
            raise _fail("the query box and the request both give a place; give it once")
    if parsed.place is not None:
        changes["place"] = parsed.place
    if len(changes.get("terms", ())) > MAX_TERMS:
        raise _fail(f"the query combines more than {MAX_TERMS} descriptions with + and -")
    return replace(request, **changes)


def _place(request: Request, parsed: Parsed, places: Gazetteer | None) -> tuple[PlaceFilter | None, str | None]:
    """The place filter and how to name it: a plain name the parser found, or a name the request gave."""
    chosen: Place | None = parsed.place_found
    named = parsed.place_words
    if chosen is None and request.place is not None:
        if places is None:
            raise ProtocolError(NOT_FOUND, "place names are not available here: the gazetteer could not be loaded "
                                           "(see the daemon's log)")
        found = places.resolve(request.place)
        if not found:
            raise ProtocolError(NOT_FOUND, f"no place named {request.place!r} is known; use a city, region or "
                                           "country name in English or Chinese, or 'City, Country'")
        chosen = found[0]
        named = request.place.strip()
    if chosen is None:
        return None, None
    if places is None:  # only a plain name from a parser given places can get here
        raise ProtocolError(NOT_FOUND, "places are not available")
    english, chinese = places.describe(chosen)
    if named is not None and "," not in named and chosen.kind != "country":
        country = places.country(chosen.country)
        typed = named.title() if named.islower() else named
        english = f"{typed}, {country.name}" if country is not None and typed.isascii() else english
    label = chinese if chinese and (parsed.chinese or request.lang == "zh") else english
    if chosen.kind == "city":
        return PlaceFilter(chosen.country, chosen.admin1, chosen.geonameid), label
    return PlaceFilter(chosen.country, chosen.admin1 if chosen.kind == "region" else None), label


def describe(request: Request, place: str | None, chinese: bool) -> str:
    """One line saying what the search looks for and which filters hold."""
    texts = [t for t in request.terms if t.text or t.image]
    shown = _terms_text(texts, "“", "”") if chinese else _terms_text(texts, "'", "'")
    if request.text_in:
        words = ("、" if chinese else " and ").join(f"“{w}”" for w in request.text_in)
        said = f"照片中有{words}" if chinese else f"showing the words {words}"
        parts = [shown, said] if shown else [said if chinese else f"photos {said}"]
    else:
        parts = [shown or ("所有照片" if chinese else "every photo")]
    taken = _dates(request.after, request.before, chinese)
    if taken:
        parts.append(taken)
    if place:
        parts.append(f"在{place}附近" if chinese else f"near {place}")
    if request.camera:
        parts.append(f"相机含“{request.camera}”" if chinese else f"with a camera matching '{request.camera}'")
    if request.share:
        parts.append(f"共享 {request.share}" if chinese else f"in share '{request.share}'")
    if request.path_prefix:
        parts.append(f"在 {request.path_prefix} 下" if chinese else f"below {request.path_prefix}")
    order = {"date": ("oldest first", "最早的在前"), "-date": ("newest first", "最新的在前")}.get(request.sort)
    if order:
        parts.append(order[1] if chinese else order[0])
    if request.all:
        parts[0] = ("所有符合" if chinese else "every match for ") + parts[0]
    return ("，" if chinese else ", ").join(parts)


def _terms_text(terms: list[Term], open_: str, close: str) -> str:
    shown = []
    for i, term in enumerate(terms):
        what = f"{open_}{term.text}{close}" if term.text else f"like {os.path.basename(term.image or '')}"
        sign = "" if i == 0 and term.weight > 0 else (" + " if term.weight > 0 else " - ")
        shown.append(sign + what)
    return "".join(shown)


def _local_day(instant: float) -> tuple[date, bool]:
    """The NAS's local date of an instant, and whether it is that day's midnight."""
    moment = datetime.fromtimestamp(instant)
    return moment.date(), moment.time() == datetime.min.time()


def _dates(after: float | None, before: float | None, chinese: bool) -> str | None:
    try:
        start = _local_day(after) if after is not None else None
        end = _local_day(before) if before is not None else None
    except (OverflowError, OSError, ValueError):  # beyond the platform's dates: say it in plain numbers
        return f"taken between {after} and {before}" if not chinese else f"拍摄于 {after} 至 {before}"
    if start and end and start[1] and end[1]:
        period = _period(start[0], end[0])
        if period is not None:
            return _say_period(period, chinese)
    if start and end:
        last = end[0] - timedelta(days=1) if end[1] else end[0]
        return f"拍摄于{start[0]}至{last}" if chinese else f"taken from {start[0]} to {last}"
    if start:
        return f"拍摄于{start[0]}或以后" if chinese else f"taken on or after {start[0]}"
    if end:
        return f"拍摄于{end[0]}以前" if chinese else f"taken before {end[0]}"
    return None


def _period(start: date, end: date) -> Period | None:
    for text in (f"{start.year}", f"{start.year}-{start.month:02d}", start.isoformat()):
        period = Period.parse(text)
        if period is not None and period.start == start and period.end == end:
            return period
    return None


def _say_period(period: Period, chinese: bool) -> str:
    day = period.start
    if period.unit == "year":
        return f"拍摄于{day.year}年" if chinese else f"taken in {day.year}"
    if period.unit == "month":
        return f"拍摄于{day.year}年{day.month}月" if chinese else f"taken in {MONTHS[day.month - 1]} {day.year}"
    return f"拍摄于{day.year}年{day.month}月{day.day}日" if chinese else f"taken on {day.isoformat()}"
