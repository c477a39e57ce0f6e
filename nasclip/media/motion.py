"""Motion photos: the short video a Google or Samsung phone appends to a JPEG.

A motion photo is an ordinary JPEG with an MP4 after its end (EOI). Decoders
stop at EOI, so the still decodes as any JPEG does (imaging.py needs nothing;
tests/system/test_media_formats.py holds it to that). Where the clip is:

* Google's Motion Photo format (and Samsung's phones since 2023): XMP in the
  JPEG lists the file's items in order (``Container:Directory``, each
  ``Container:Item`` with ``Item:Semantic``, ``Item:Length``,
  ``Item:Padding``); the items after the primary image are stored back to back
  at the end of the file, so the ``MotionPhoto`` item's offset is counted back
  from the end.
* Google's older MicroVideo: ``GCamera:MicroVideoOffset`` is the clip's
  distance from the end of the file; the clip runs to the end.
* Samsung's older phones: after EOI a block named ``MotionPhoto_Data`` holds
  the MP4, and a trailer (``SEFH`` ... ``SEFT``) indexes the blocks.
* Otherwise, an MP4 (an ``ftyp`` box) straight after EOI.

Whatever says where it starts, the clip is checked and measured by walking its
top-level ISO boxes: it is an MP4 only if it starts with ``ftyp`` and its boxes
fit in the file. The clip is not indexed: the photo is its still.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import BinaryIO, Literal

SAMSUNG_MARKER = b"MotionPhoto_Data"
XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
# Top-level boxes an MP4 clip may hold; anything else ends the walk.
_BOXES = frozenset({b"ftyp", b"mdat", b"moov", b"free", b"skip", b"wide", b"uuid", b"meta", b"udta", b"pnot",
                    b"sidx", b"moof", b"mfra", b"styp"})
_ITEM = re.compile(rb"<Container:Item\b([^>]*)>|<rdf:li\b([^>]*Item:Semantic[^>]*)>", re.S)
_ATTRIBUTE = re.compile(rb'Item:(\w+)="([^"]*)"')
_MICRO_OFFSET = re.compile(rb'GCamera:MicroVideoOffset(?:="(\d+)"|>(\d+)<)')
_PRESENTATION = re.compile(rb'GCamera:(?:MotionPhotoPresentationTimestampUs|MicroVideoPresentationTimestampUs)'
                           rb'="(-?\d+)"')


@dataclass(frozen=True)
class MotionClip:
    """Where a motion photo's MP4 is: byte offset and length, what said so, and the still's moment in it."""

    offset: int
    length: int
    source: Literal["xmp", "microvideo", "samsung", "trailer"]
    still_at_us: int | None = None  # the still's time in the clip (microseconds), when the XMP says


def find_motion_clip(handle: BinaryIO) -> MotionClip | None:
    """The MP4 clip appended to a JPEG read from handle (from its start); None for a plain JPEG.

    The whole file is read: the caller bounds it (bounded.open_bounded).
    """
    handle.seek(0)
    data = handle.read()
    if not data.startswith(b"\xff\xd8"):
        return None
    xmp = _xmp(data)
    still_at = _presentation(xmp)
    size = len(data)
    candidates: list[tuple[int, Literal["xmp", "microvideo", "samsung", "trailer"]]] = []
    directory = _directory_offset(xmp, size)
    if directory is not None:
        candidates.append((directory, "xmp"))
    micro = _MICRO_OFFSET.search(xmp)
    if micro is not None:
        candidates.append((size - int(micro.group(1) or micro.group(2)), "microvideo"))
    end = jpeg_end(data)
    if end is not None:
        marker = data.find(SAMSUNG_MARKER, end)
        if marker >= 0:
            candidates.append((marker + len(SAMSUNG_MARKER), "samsung"))
        candidates.append((end, "trailer"))
    for offset, source in candidates:
        length = mp4_length(data, offset)
        if length:
            return MotionClip(offset, length, source, still_at)
    return None


def _xmp(data: bytes) -> bytes:
    """The XMP packets of the JPEG's APP1 segments, joined (empty if none)."""
    packets = []
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker in (0xDA, 0xD9):  # start of scan, end of image: no more metadata segments
            break
        (length,) = struct.unpack(">H", data[at + 2:at + 4])
        body = data[at + 4:at + 2 + length]
        if marker == 0xE1 and body.startswith(XMP_HEADER):
            packets.append(body[len(XMP_HEADER):])
        at += 2 + length
    return b"".join(packets)


def _presentation(xmp: bytes) -> int | None:
    found = _PRESENTATION.search(xmp)
    return int(found.group(1)) if found and int(found.group(1)) >= 0 else None


def _directory_offset(xmp: bytes, size: int) -> int | None:
    """The MotionPhoto item's offset from the XMP container directory; None without one."""
    items = []
    for match in _ITEM.finditer(xmp):
        attributes = dict(_ATTRIBUTE.findall(match.group(1) or match.group(2)))
        items.append(attributes)
    motion = [i for i, item in enumerate(items) if item.get(b"Semantic") == b"MotionPhoto"]
    if not motion:
        return None
    try:
        # Items after the primary are stored back to back at the end: count back from it.
        after = sum(int(item.get(b"Length", b"0")) + int(item.get(b"Padding", b"0") or 0)
                    for item in items[motion[0]:])
    except ValueError:
        return None
    offset = size - after
    return offset if 0 < offset < size else None


def jpeg_end(data: bytes) -> int | None:
    """The offset just after the JPEG's EOI marker (its entropy-coded scans skipped); None if it has none."""
    at = 2
    while at + 2 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0xD9:
            return at + 2
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            at += 2
            continue
        if at + 4 > len(data):
            return None
        (length,) = struct.unpack(">H", data[at + 2:at + 4])
        at += 2 + length
        if marker == 0xDA:  # entropy-coded data follows: up to the next marker that is not a stuffed byte or RST
            while True:
                at = data.find(b"\xff", at)
                if at < 0 or at + 1 >= len(data):
                    return None
                following = data[at + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
                    at += 1 if following == 0xFF else 2
                    continue
                break
    return None


def mp4_length(data: bytes, offset: int) -> int:
    """The length of the MP4 whose ftyp box starts at offset (its top-level boxes, walked); 0 if none is there."""
    if offset < 0 or data[offset + 4:offset + 8] != b"ftyp":
        return 0
    at = offset
    kinds: set[bytes] = set()
    while at + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        if kind not in _BOXES:
            break
        if size == 1:
            if at + 16 > len(data):
                break
            (size,) = struct.unpack(">Q", data[at + 8:at + 16])
        elif size == 0:
            size = len(data) - at
        if size < 8 or at + size > len(data):
            break
        kinds.add(kind)
        at += size
    return at - offset if kinds & {b"moov", b"moof"} else 0
