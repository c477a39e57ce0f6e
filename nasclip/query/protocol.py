"""The query protocol: JSON lines over a Unix stream socket (docs/protocol.md).

This module turns a request line into a validated request object (or a
``ProtocolError`` with a code) and replies into bytes. It knows nothing about
sockets or indexes, so the server and the client share it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from ..errors import ProtocolError
from .wire import (  # noqa: F401  (the protocol's names, re-exported for the server)
    BAD_JSON,
    BAD_REQUEST,
    BUSY,
    FORBIDDEN,
    INTERNAL,
    NOT_FOUND,
    OPS,
    TIMEOUT,
    TOO_LARGE,
    UNKNOWN_OP,
    UNSUPPORTED_VERSION,
    VERSION,
    decode_reply,
    encode,
    error_reply,
    ok_reply,
    request_line,
)

MAX_WEIGHT = 100.0
MAX_TERMS = 16
TIME_LIMIT = 9e9  # seconds (the year 2255): nanoseconds still fit SQLite's int64


@dataclass(frozen=True)
class Term:
    """One part of a query: a text or an image path, with a weight (negative = less like this).

    An image may be a video: ``time`` (seconds) names its moment, the start without one.
    """

    weight: float
    text: str | None = None
    image: str | None = None
    time: float | None = None


@dataclass(frozen=True)
class Request:
    """A validated request."""

    op: str
    id: Any = None
    terms: tuple[Term, ...] = ()
    k: int = 10
    share: str | None = None
    path_prefix: str | None = None
    after: float | None = None
    before: float | None = None
    camera: str | None = None  # words the camera's make and model must contain (any case)
    sort: str = "score"  # score (best first), date (oldest taken first) or -date (newest first)
    place: str | None = None  # a city, region or country, named in English or Chinese
    all: bool = False  # every match, by a cut-off from this query's own scores, instead of the k best
    q: str | None = None  # a query box: description, operators, plain dates and places (querybox.py)
    k_given: bool = True  # False when k is the default (with all, k then does not cap the matches)
    lang: str = "en"  # the language place names are given in: "en" or "zh" (where the gazetteer has it)
    with_ids: bool = False  # results carry catalog ids: set by the web front end, never by a socket request
    text_in: tuple[str, ...] = ()  # words or phrases that must all appear in the text read in the photo
    pairs: str = "one"  # "one": a RAW+JPEG shot is one result (the JPEG, naming the RAW); "both": each file

    @property
    def filtered(self) -> bool:
        """Whether the request names any filter."""
        return any(v is not None for v in (self.share, self.path_prefix, self.after, self.before, self.camera,
                                           self.place)) or bool(self.text_in)


SORTS = ("score", "date", "-date")
PAIRS = ("one", "both")
MAX_SECONDS = 1e7  # a moment of a video: no video is 115 days long
LANGUAGES = ("en", "zh")


def _fail(message: str) -> ProtocolError:
    return ProtocolError(BAD_REQUEST, message)


def _string(data: dict, key: str, *, max_len: int = 4096) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(f"'{key}' must be a string")
    if not value.strip():
        raise _fail(f"'{key}' must not be empty")
    if len(value) > max_len:
        raise _fail(f"'{key}' is longer than {max_len} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _fail(f"'{key}' holds a lone surrogate (\\ud800-\\udfff) that is not text") from None
    return value


def _path(data: dict, key: str) -> str | None:
    """An absolute path; bytes that are not UTF-8 arrive as \\udc80-\\udcff escapes (os.fsdecode)."""
    value = data.get(key)
    if not isinstance(value, str):
        return _string(data, key)
    if not value.startswith("/") or "\0" in value or len(value) > 4096:
        raise _fail(f"'{key}' must be an absolute path (starting with /, no NUL, at most 4096 characters)")
    try:
        os.fsencode(value)
    except UnicodeEncodeError:
        raise _fail(f"'{key}' is not a path this system can name") from None
    return value


def _time(data: dict, key: str) -> float | None:
    """Seconds since the epoch from a number or an ISO 8601 date/time."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        raise _fail(f"'{key}' must be a date (YYYY-MM-DD) or seconds since 1970")
    # Far dates are clamped (catalog times are int64 nanoseconds); NaN fails every comparison.
    if isinstance(value, (int, float)) and -math.inf <= value <= math.inf:
        return float(max(-TIME_LIMIT, min(TIME_LIMIT, value)))
    if isinstance(value, str) and len(value) <= 64:
        try:
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                parsed = parsed.astimezone()  # local time, as a person means it
            return max(-TIME_LIMIT, min(TIME_LIMIT, parsed.astimezone(timezone.utc).timestamp()))
        except (ValueError, OverflowError, OSError):  # not a date, or one the C library cannot place
            pass
    raise _fail(f"'{key}' must be a date (YYYY-MM-DD) or seconds since 1970")


MAX_TEXT_TERMS = 16


def _text_in(data: dict) -> tuple[str, ...]:
    """text_in: 1 to MAX_TEXT_TERMS words or phrases, each non-empty text."""
    raw = data.get("text_in")
    if raw is None:
        return ()
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_TEXT_TERMS:
        raise _fail(f"'text_in' must be a list of 1 to {MAX_TEXT_TERMS} words or phrases")
    terms = []
    for i, item in enumerate(raw):
        key = f"text_in[{i}]"
        if not isinstance(item, str):
            raise _fail(f"{key} must be a string")
        terms.append(_string({key: item}, key, max_len=256) or "")
    return tuple(terms)


def _terms(data: dict, optional: bool = False) -> tuple[Term, ...]:
    terms: list[Term] = []
    text = _string(data, "text")
    image = _path(data, "image")
    if text:
        terms.append(Term(1.0, text=text))
    if image:
        terms.append(Term(1.0, image=image))
    raw = data.get("terms")
    if raw is not None:
        if not isinstance(raw, list) or not raw or len(raw) > MAX_TERMS:
            raise _fail("'terms' must be a list of 1 to 16 {\"text\" or \"image\", \"weight\"} objects")
        for i, item in enumerate(raw):
            if not isinstance(item, dict):
                raise _fail(f"terms[{i}] must be an object")
            weight = item.get("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not abs(weight) <= MAX_WEIGHT:
                raise _fail(f"terms[{i}].weight must be a number from -{MAX_WEIGHT:g} to {MAX_WEIGHT:g}")
            t_text, t_image = _string(item, "text"), _path(item, "image")
            if (t_text is None) == (t_image is None):
                raise _fail(f"terms[{i}] needs exactly one of 'text' or 'image'")
            unknown = set(item) - {"text", "image", "weight", "time"}
            if unknown:
                raise _fail(f"terms[{i}] has unknown keys: {', '.join(sorted(unknown))}")
            seconds = item.get("time")
            if seconds is not None and (t_image is None or isinstance(seconds, bool)
                                        or not isinstance(seconds, (int, float)) or not 0 <= seconds <= MAX_SECONDS):
                raise _fail(f"terms[{i}].time goes with an image (a video) and must be seconds from 0 to "
                            f"{MAX_SECONDS:g}")
            terms.append(Term(float(weight), text=t_text, image=t_image,
                              time=float(seconds) if seconds is not None else None))
    if not terms:
        if optional:
            return ()
        raise _fail("search needs 'text', 'image', 'terms', 'q', 'text_in' or a filter")
    if not any(t.weight > 0 for t in terms):
        raise _fail("at least one term needs a positive weight")
    return tuple(terms)


SEARCH_KEYS = {"v", "op", "id", "text", "image", "terms", "k", "share", "path_prefix", "after", "before", "camera",
               "sort", "place", "all", "q", "lang", "text_in", "pairs"}
OTHER_KEYS = {"scan": {"v", "op", "id", "share"}}
COMMON_KEYS = {"v", "op", "id"}


def parse_request(line: bytes, max_k: int) -> Request:
    """Validate one request line (without its newline)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(BAD_JSON, "request is not UTF-8") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # ValueError covers integers too long to convert
        raise ProtocolError(BAD_JSON, "request is not valid JSON (one object per line)") from None
    if not isinstance(data, dict):
        raise ProtocolError(BAD_REQUEST, "request must be a JSON object")
    request_id = data.get("id")
    if request_id is not None and (isinstance(request_id, bool) or not isinstance(request_id, (str, int))
                                   or len(str(request_id)) > 256):
        raise _fail("'id' must be a string or an integer (at most 256 characters)")
    try:
        return _parse_object(data, request_id, max_k)
    except ProtocolError as exc:
        exc.request_id = request_id  # the error reply still names the request it answers
        raise


def _parse_object(data: dict, request_id: Any, max_k: int) -> Request:
    version = data.get("v", VERSION)
    if isinstance(version, bool) or version != VERSION or not isinstance(version, int):
        raise ProtocolError(UNSUPPORTED_VERSION,
                            f"protocol version {str(version)[:20]!r} is not supported; this server speaks {VERSION}")
    op = data.get("op")
    if not isinstance(op, str):
        raise _fail("'op' is missing or not a string; use one of " + ", ".join(OPS))
    if op not in OPS:
        raise ProtocolError(UNKNOWN_OP, f"unknown op {op[:40]!r}; use one of " + ", ".join(OPS))
    allowed = SEARCH_KEYS if op == "search" else OTHER_KEYS.get(op, COMMON_KEYS)
    unknown = set(data) - allowed
    if unknown:
        names = ", ".join(repr(k[:40]) for k in sorted(unknown)[:5])
        raise _fail(f"unknown keys for '{op}': {names}; allowed: {', '.join(sorted(allowed))}")
    if op == "scan":
        return Request(op, request_id, share=_string(data, "share", max_len=256))
    if op != "search":
        return Request(op, request_id)
    k = data.get("k", 10)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= max_k:
        raise _fail(f"'k' must be a whole number from 1 to {max_k}")
    sort = data.get("sort", "score")
    if sort not in SORTS:
        raise _fail("'sort' must be one of " + ", ".join(SORTS))
    every = data.get("all", False)
    if not isinstance(every, bool):
        raise _fail("'all' must be true or false")
    q = _string(data, "q")
    lang = data.get("lang", "en")
    if lang not in LANGUAGES:
        raise _fail("'lang' must be one of " + ", ".join(LANGUAGES))
    pairs = data.get("pairs", "one")
    if pairs not in PAIRS:
        raise _fail("'pairs' must be one of " + ", ".join(PAIRS))
    request = Request(op, request_id, (), k, _string(data, "share", max_len=256), _path(data, "path_prefix"),
                      _time(data, "after"), _time(data, "before"), _string(data, "camera", max_len=256), sort,
                      _string(data, "place", max_len=256), every, q, "k" in data, lang, text_in=_text_in(data),
                      pairs=pairs)
    # A query box may hold only filters ("place:Lisbon 2019"), and so may a request: both list photos by
    # date; a request with only words to find in the photos' text ranks by how well they match.
    return replace(request, terms=_terms(data, optional=q is not None or request.filtered))
