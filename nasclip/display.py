"""Text for people: names made safe to show, numbers, sizes and durations formatted one way.

File names are written by users, and may contain anything.

A newline in a file name would forge a log line or another `nasclip failed`
entry; an escape sequence would drive the terminal. Every text output
(log records, the admin tool, nasclip-query, doctor) passes names through
``printable``. JSON output needs none of this: its encoder escapes them.
"""

from __future__ import annotations

import os

# C0 controls, DEL, C1 controls and the Unicode line and paragraph separators.
_CONTROL = {i: f"\\x{i:02x}" for i in (*range(32), *range(127, 160))} | {
    10: "\\n", 9: "\\t", 13: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def printable(text: str | bytes | os.PathLike) -> str:
    """One line for display: bytes that are not UTF-8 become U+FFFD, control characters are escaped."""
    if not isinstance(text, str):
        text = os.fsdecode(text)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace").translate(_CONTROL)


def group_digits(n: float) -> str:
    """1234567 -> '1 234 567': a thin space groups digits in every language nasclip's users read."""
    return f"{int(n):,}".replace(",", " ")


def human_bytes(n: float) -> str:
    """1234567 -> '1.2 MB' (decimal units, as disks and downloads are sold and shown)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable: the loop returns at TB")


def duration(seconds: float) -> str:
    """A time left, as a person reads it: '45 s', '12 min', '3.5 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def clock(seconds: float) -> str:
    """A moment of a video as players show it: '01:23', '1:02:03' from an hour on (whole seconds, rounded down)."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def parse_clock(text: str) -> float | None:
    """Seconds from '83.4', '1:23', '01:23.5' or '1:02:03'; None if text is none of these."""
    parts = text.strip().split(":")
    if not 1 <= len(parts) <= 3 or not all(parts):
        return None
    try:
        values = [float(p) for p in parts]
    except ValueError:
        return None
    if any(v < 0 or v != v or v == float("inf") for v in values) or any(v >= 60 for v in values[1:]) \
            or any(not p.isdigit() for p in parts[:-1]):
        return None
    seconds = 0.0
    for value in values:
        seconds = seconds * 60 + value
    return seconds
