"""A web search's URL to the socket protocol's own request, validated by the protocol's own parser.

``GET /api/search?q=...&k=...&after=...`` becomes the JSON object a socket
client would send, and protocol.parse_request validates it: the web has no
filters of its own, so every search key the protocol has (or gains) works
here unchanged, with the same checks and the same error messages. Query
parameters named like a protocol search key pass through; their JSON type
comes from the protocol's Request field of the same name (a whole number for
``k``, true/false for a flag, a number or a date for ``after``/``before``).
Only what a URL cannot say safely is the web's: the search box
(``search_box``, the one place that decides how the box's text reaches the
protocol), ``like`` (a catalog id, resolved to a path by the server after
the access check: a web user never names a file), and ``offset`` (pages
of results as the page scrolls).
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass, replace
from typing import Any, Mapping

from ..errors import ProtocolError
from ..query.protocol import BAD_REQUEST, SEARCH_KEYS, Request, parse_request

# Keys the web sets itself, or that would let a URL name a file: never taken from the URL.
NOT_FROM_URL = {"v", "op", "id", "terms", "image", "text"}
WEB_KEYS = {"q", "like", "offset"}
MAX_OFFSET = 10_000
_TYPES = typing.get_type_hints(Request)


@dataclass(frozen=True)
class WebSearch:
    """The protocol request object (not yet validated), and the web's own paging."""

    request: dict[str, Any]
    like: int | None
    offset: int
    k: int


def search_box(text: str) -> dict[str, Any]:
    """The protocol keys for what was typed in the search box: the protocol's query box, ``q``.

    The daemon parses it as it parses nasclip-query's words (query/querybox.py): descriptions
    joined by + and -, operators, plain dates and place names. One place on purpose.
    """
    return {"q": text} if text.strip() else {}


def _typed(key: str, value: str) -> Any:
    """A URL value as the JSON type the protocol expects for key (by its Request field)."""
    hint = _TYPES.get(key)
    args = set(typing.get_args(hint)) if typing.get_origin(hint) in (typing.Union, types.UnionType) else {hint}
    args.discard(type(None))
    if args == {int} and value.strip().lstrip("-").isdigit():
        return int(value)
    if args == {bool}:
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
    if args == {float}:  # seconds since 1970, or a date the protocol parses itself
        try:
            number = float(value)
        except ValueError:
            return value
        return number if number == number and abs(number) != float("inf") else value
    return value


def _whole(params: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    value = params.get(key)
    if value is None or value == "":
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise ProtocolError(BAD_REQUEST, f"'{key}' must be a whole number from {low} to {high}")
    return int(value)


def web_search(params: Mapping[str, str], default_k: int, max_k: int) -> WebSearch:
    """The protocol request for a /api/search URL's parameters (ProtocolError for what is wrong)."""
    unknown = set(params) - (SEARCH_KEYS - NOT_FROM_URL) - WEB_KEYS
    if unknown:
        names = ", ".join(repr(k[:40]) for k in sorted(unknown)[:5])
        allowed = sorted((SEARCH_KEYS - NOT_FROM_URL - {"k"}) | WEB_KEYS | {"k"})
        raise ProtocolError(BAD_REQUEST, f"unknown parameters: {names}; allowed: {', '.join(allowed)}")
    request: dict[str, Any] = {"op": "search"}
    for key, value in params.items():
        if key in SEARCH_KEYS and key != "k":
            request[key] = _typed(key, value)
    box = params.get("q", "")
    if box.strip():
        request.update(search_box(box))
    like = None
    if params.get("like"):
        like = _whole(params, "like", 0, 1, (1 << 63) - 1)
    offset = _whole(params, "offset", 0, 0, MAX_OFFSET)
    k = _whole(params, "k", default_k, 1, max_k)
    if offset + k > max_k:
        raise ProtocolError(BAD_REQUEST, f"'offset' + 'k' may be at most {max_k} (query.max_k)")
    request["k"] = offset + k
    return WebSearch(request, like, offset, k)


def validated(search: WebSearch, image: str | None, max_k: int) -> Request:
    """The protocol's Request for search, with the resolved "more like this" photo (protocol.parse_request)."""
    request = dict(search.request)
    if image is not None:
        request["image"] = image
    # ASCII with \u escapes: a file name that is not UTF-8 travels as the protocol says (lone surrogates).
    line = json.dumps(request).encode("ascii")
    return replace(parse_request(line, max_k), with_ids=True)  # the web names photos by their catalog id
