"""What the web front end sends: JSON answers and errors, originals from an open descriptor, the page's files.

Errors have the socket protocol's shape (``{"v": 1, "ok": false, "error":
{"code", "message"}}``) and an HTTP status; the codes are the protocol's
plus ``unauthorized``, ``too_many_attempts`` and ``not_found`` for routes.
An original is sent from the descriptor photos.open_photo opened, never
reopened by name, in chunks read off the event loop, and the descriptor is
closed however the request ends (a browser that scrolls away included).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..query import protocol
from .photos import OpenPhoto

STATIC = Path(__file__).with_name("static")
# The page's files: a fixed list, so no part of a URL ever becomes a path.
PAGE_FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
              "app.css": "text/css; charset=utf-8", "i18n.js": "text/javascript; charset=utf-8",
              "icon.svg": "image/svg+xml"}
CHUNK = 256 << 10

UNAUTHORIZED, TOO_MANY, NOT_FOUND = "unauthorized", "too_many_attempts", protocol.NOT_FOUND
STATUS_OF = {protocol.BAD_JSON: 400, protocol.BAD_REQUEST: 400, protocol.UNKNOWN_OP: 400,
             protocol.UNSUPPORTED_VERSION: 400, protocol.NOT_FOUND: 404, protocol.FORBIDDEN: 403,
             protocol.TOO_LARGE: 413, protocol.TIMEOUT: 504, protocol.BUSY: 503, protocol.INTERNAL: 500,
             UNAUTHORIZED: 401, TOO_MANY: 429}


def json_response(data: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps({"v": protocol.VERSION, **data}, separators=(",", ":")).encode("ascii")
    return Response(body, status, {"cache-control": "no-store", **(headers or {})}, "application/json")


def error(code: str, message: str, status: int | None = None, headers: dict[str, str] | None = None) -> Response:
    return json_response({"ok": False, "error": {"code": code, "message": message}},
                         status or STATUS_OF.get(code, 400), headers)


def not_found() -> Response:
    """The one answer for a missing photo, a photo the user may not read, and a URL that is nothing."""
    return error(NOT_FOUND, "not found", 404)


class PageFiles:
    """The page's files, read once at start-up (and their ETags)."""

    def __init__(self, folder: Path = STATIC) -> None:
        self.files = {name: (folder / name).read_bytes() for name in PAGE_FILES}
        self.etags = {name: '"' + hashlib.sha256(data).hexdigest()[:32] + '"' for name, data in self.files.items()}

    def response(self, name: str, if_none_match: str | None) -> Response:
        if name not in self.files:
            return not_found()
        headers = {"etag": self.etags[name], "cache-control": "no-cache"}  # revalidated: an update shows at once
        if if_none_match == self.etags[name]:
            return Response(status_code=304, headers=headers)
        return Response(self.files[name], 200, headers, PAGE_FILES[name])


class OriginalResponse(Response):
    """An open photo's bytes (all, or one range), read from its descriptor; the descriptor is closed at the end."""

    def __init__(self, photo: OpenPhoto, span: tuple[int, int] | None) -> None:
        self.photo = photo
        size = photo.st.st_size
        self.start, self.end = span if span is not None else (0, size - 1)
        name = Path(photo.path).name
        headers = {"accept-ranges": "bytes", "etag": photo.etag, "cache-control": "private, max-age=3600",
                   "content-length": str(max(0, self.end - self.start + 1)),
                   "content-disposition": "inline; filename*=UTF-8''" + _quote(name)}
        if span is not None:
            headers["content-range"] = f"bytes {self.start}-{self.end}/{size}"
        super().__init__(None, 206 if span is not None else 200, headers, photo.media_type)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            if scope.get("method") == "HEAD":
                await send({"type": "http.response.body", "body": b""})
                return
            position = self.start
            while position <= self.end:
                count = min(CHUNK, self.end + 1 - position)
                data = await anyio.to_thread.run_sync(os.pread, self.photo.fd, count, position)
                if not data:  # the file shrank: end short rather than promise what is not there
                    break
                position += len(data)
                await send({"type": "http.response.body", "body": data, "more_body": position <= self.end})
            if position <= self.end:
                await send({"type": "http.response.body", "body": b""})
        finally:
            self.photo.close()


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name.encode("utf-8", "surrogateescape"), safe="")
