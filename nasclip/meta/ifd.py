"""A bounded reader of TIFF-structured metadata: the few tags nasclip wants, and nothing else.

EXIF is a TIFF structure: a byte-order mark, a pointer to IFD0, and IFDs of
12-byte entries (tag, type, count, value or offset) that point at further
IFDs (ExifIFD 0x8769, GPS 0x8825). A photo's EXIF is written by whoever made
the file, so nothing in it is trusted:

* an IFD is read only when a known pointer leads to it, once, and the next-IFD
  chain is never followed: a looping or self-referencing offset costs one
  more read of the same IFD, not a hang;
* an IFD claiming more than ``MAX_ENTRIES`` entries is refused (cameras write
  a few dozen; 65535 entries is junk or an attack, and costs time to walk);
* a value is read only for a tag the caller asked for and only up to
  ``MAX_VALUE`` bytes: a count of 2^31 is declined before any byte is read,
  never allocated;
* every offset is checked against the data's end; a truncated block gives the
  entries that are whole and drops the rest.

Pillow parses EXIF too, and copes with most of this (it warns and skips), but
it decodes every value of every entry, raises ``struct.error`` on a block cut
inside its header, needs the file still open for a TIFF's sub-IFDs (and drops
``image.fp`` when it loads one), and reports damage through ``warnings``, which
is process-global state the decode threads would share. Reading the dozen tags
wanted here ourselves keeps the cost bounded by construction.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import BinaryIO, Protocol

# Cameras write 10-80 entries per IFD; more than this is not a photo's metadata.
MAX_ENTRIES = 512
# The longest value wanted is a make or model string; nothing useful is longer.
MAX_VALUE = 1024
# A TIFF file's IFDs are read from the file itself: at most this many bytes in all.
MAX_FILE_READ = 1 << 20

BYTE, ASCII, SHORT, LONG, RATIONAL, UNDEFINED, SLONG, SRATIONAL, IFD = 1, 2, 3, 4, 5, 7, 9, 10, 13
_SIZES = {BYTE: 1, ASCII: 1, SHORT: 2, LONG: 4, RATIONAL: 8, UNDEFINED: 1, SLONG: 4, SRATIONAL: 8, IFD: 4,
          6: 1, 8: 2, 11: 4, 12: 8}


class Source(Protocol):
    """Random access to the TIFF structure: at most ``length`` bytes at ``offset`` (fewer at the end)."""

    def read(self, offset: int, length: int) -> bytes: ...


class BytesSource:
    """A TIFF structure held in memory (the EXIF block of a JPEG, PNG, WebP or HEIC)."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            return b""
        return bytes(self._data[offset:offset + length])


class FileSource:
    """A TIFF file read through its handle, within ``MAX_FILE_READ`` bytes; the handle's position is restored."""

    def __init__(self, handle: BinaryIO, budget: int = MAX_FILE_READ) -> None:
        self._handle = handle
        self._budget = budget

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or length > self._budget:
            return b""
        self._budget -= length
        here = self._handle.tell()
        try:
            self._handle.seek(offset, os.SEEK_SET)
            return self._handle.read(length)
        finally:
            self._handle.seek(here, os.SEEK_SET)


@dataclass(frozen=True)
class Value:
    """One entry's type, count and raw value bytes, in the structure's byte order."""

    type: int
    count: int
    raw: bytes
    endian: str  # "<" or ">"

    def text(self) -> bytes | None:
        """The bytes of an ASCII value up to its first NUL; None for any other type."""
        if self.type != ASCII:
            return None
        return self.raw.split(b"\x00", 1)[0]

    def ints(self) -> tuple[int, ...] | None:
        """The values of a BYTE, SHORT or LONG entry (UNDEFINED read as bytes); None for other types."""
        if self.type in (BYTE, UNDEFINED):
            return tuple(self.raw)
        if self.type == SHORT:
            return struct.unpack(f"{self.endian}{self.count}H", self.raw)
        if self.type in (LONG, IFD):
            return struct.unpack(f"{self.endian}{self.count}I", self.raw)
        return None

    def rationals(self) -> tuple[tuple[int, int], ...] | None:
        """The (numerator, denominator) pairs of a RATIONAL or SRATIONAL entry; None for other types."""
        if self.type not in (RATIONAL, SRATIONAL):
            return None
        code = "I" if self.type == RATIONAL else "i"
        pairs = struct.unpack(f"{self.endian}{2 * self.count}{code}", self.raw)
        return tuple(zip(pairs[::2], pairs[1::2]))


class Tiff:
    """The header of a TIFF structure and bounded reads of its IFDs."""

    def __init__(self, source: Source) -> None:
        self.source = source
        head = source.read(0, 8)
        self.endian = {b"II*\x00": "<", b"MM\x00*": ">"}.get(head[:4], "")
        self.first = struct.unpack(f"{self.endian}I", head[4:8])[0] if self.endian and len(head) == 8 else 0

    @property
    def valid(self) -> bool:
        """True when the header is a classic TIFF's (BigTIFF and anything else are not read)."""
        return self.first >= 8

    def ifd(self, offset: int, wanted: frozenset[int]) -> dict[int, Value]:
        """The entries of the IFD at offset whose tag is wanted; {} for an IFD that is out of bounds or too big."""
        if not self.endian or offset < 8:
            return {}
        head = self.source.read(offset, 2)
        if len(head) < 2:
            return {}
        (count,) = struct.unpack(f"{self.endian}H", head)
        if count > MAX_ENTRIES:
            return {}
        table = self.source.read(offset + 2, 12 * count)
        found: dict[int, Value] = {}
        for start in range(0, len(table) - 11, 12):  # a truncated table keeps its whole entries
            tag, kind, n = struct.unpack_from(f"{self.endian}HHI", table, start)
            if tag not in wanted or tag in found or kind not in _SIZES:
                continue
            size = _SIZES[kind] * n
            if n == 0 or size > MAX_VALUE:
                continue
            if size <= 4:
                raw = table[start + 8:start + 8 + size]
            else:
                (at,) = struct.unpack_from(f"{self.endian}I", table, start + 8)
                raw = self.source.read(at, size)
                if len(raw) < size:
                    continue
            found[tag] = Value(kind, n, raw, self.endian)
        return found

    def pointer(self, entries: dict[int, Value], tag: int) -> int:
        """The offset a LONG/IFD pointer entry holds; 0 when absent or malformed."""
        value = entries.get(tag)
        numbers = value.ints() if value is not None and value.type in (LONG, IFD) else None
        return numbers[0] if numbers and len(numbers) == 1 else 0
