"""The query protocol's wire format: JSON lines, error codes and reply shapes (docs/protocol.md).

What both ends need and nothing more: the client imports only this (a search
from the shell pays for every import), the server also protocol.py, which
validates requests.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False
if TYPE_CHECKING:  # importing typing costs a search from the shell milliseconds; annotations are strings here
    from typing import Any


VERSION = 1
OPS = ("search", "status", "ping", "scan", "failed")

# Error codes (docs/protocol.md lists them with their meaning).
BAD_JSON = "bad_json"
BAD_REQUEST = "bad_request"
UNKNOWN_OP = "unknown_op"
TOO_LARGE = "too_large"
TIMEOUT = "timeout"
BUSY = "busy"
NOT_FOUND = "not_found"
FORBIDDEN = "forbidden"
UNSUPPORTED_VERSION = "unsupported_version"
INTERNAL = "internal"


def encode(reply: dict) -> bytes:
    """One reply line."""
    # ASCII escapes keep file names that are not UTF-8 (surrogate-escaped) exact.
    return json.dumps(reply, ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n"


def request_line(**fields: Any) -> bytes:
    """One request line of this protocol version (the client's side of ``encode``)."""
    return encode({"v": VERSION, **fields})


def decode_reply(line: bytes) -> dict | None:
    """A reply line as a dict, or None when it is not a JSON object (not nasclip's protocol)."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def error_reply(code: str, message: str, request_id: Any = None) -> dict:
    reply: dict[str, Any] = {"v": VERSION, "ok": False, "error": {"code": code, "message": message}}
    if request_id is not None:
        reply["id"] = request_id
    return reply


def ok_reply(request_id: Any = None, **fields: Any) -> dict:
    reply: dict[str, Any] = {"v": VERSION, "ok": True}
    if request_id is not None:
        reply["id"] = request_id
    reply.update(fields)
    return reply
