"""What a video container says of itself: when, where, with what, which way up, and whether it is whole.

Pure functions over the tags FFmpeg reports (``container.metadata`` and the
video stream's) and over the file's first bytes; nothing here decodes.

* Capture time: QuickTime's ``com.apple.quicktime.creationdate`` (iPhones,
  many cameras) is the wall clock with its zone ("2023-06-01T14:00:00+0200"):
  taken as it is. Otherwise ``creation_time`` (MP4/MOV ``mvhd``, Matroska
  ``DateUTC``), which is an instant in UTC with no zone: shown on the NAS's
  own clock, as a file's mtime is, since a family's videos are mostly shot
  where the NAS is. Times before 1990 are unset fields of cameras with no
  clock, not capture times. Both are marked ``source="exif"``: the file's own
  metadata, as opposed to its mtime (the catalog and the query server know
  those two sources).
* Position: ISO 6709 strings (``location``, Android's ``©xyz``; QuickTime's
  ``com.apple.quicktime.location.ISO6709``), "+37.3349-122.0090+072.000/".
* Camera: QuickTime's make/model keys, then Android's.
* Rotation: a phone stores the sensor's landscape frames with a display matrix;
  ``display_transpose`` maps it to the turn and flip FFmpeg's own player
  applies (fftools' autorotate), so a portrait video is upright.
* Completeness: ``incomplete`` says whether a file is shorter than its own
  structure says (MP4/MOV box lengths, RIFF's length, Matroska's segment
  size, transport-stream packets), which for a new file means it may still
  be arriving.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import BinaryIO

from PIL import Image

from ..indexing.imaging import looks_incomplete
from ..meta.exif import CaptureTime, PhotoMeta, Position, camera_names, mtime_taken, parse_capture_time

# Before this (1990-01-01 UTC) a video's date is an unset clock, not a capture time.
EARLIEST = 631152000.0

_LOCAL_KEYS = ("com.apple.quicktime.creationdate",)
_UTC_KEYS = ("creation_time", "date")
_LOCATION_KEYS = ("com.apple.quicktime.location.iso6709", "location", "location-eng")
_MAKE_KEYS = ("com.apple.quicktime.make", "com.android.manufacturer", "make")
_MODEL_KEYS = ("com.apple.quicktime.model", "com.android.model", "model")
# The Live Photo's shared identifier: the still's maker note carries the same one.
CONTENT_ID_KEY = "com.apple.quicktime.content.identifier"

_ISO6709 = re.compile(r"([+-]\d{1,3}(?:\.\d+)?)([+-]\d{1,3}(?:\.\d+)?)([+-]\d+(?:\.\d+)?)?(?:CRS[^/]*)?/?")

EBML_MAGIC = b"\x1a\x45\xdf\xa3"
SEGMENT_ID = b"\x18\x53\x80\x67"
TS_PACKET, M2TS_PACKET = 188, 192


def lowered(*tag_sets: Mapping[str, str]) -> dict[str, str]:
    """Tags of the container and its stream in one dict, keys lower-cased, the first set winning."""
    merged: dict[str, str] = {}
    for tags in tag_sets:
        for key, value in tags.items():
            merged.setdefault(key.lower(), str(value))
    return merged


def capture_time(tags: Mapping[str, str]) -> CaptureTime | None:
    """When the video was shot, from lower-cased tags; None when they do not say (see the module doc)."""
    for key in _LOCAL_KEYS:
        taken = parse_capture_time(tags[key]) if key in tags else None
        if taken is not None and (taken.utc if taken.utc is not None else taken.local) >= EARLIEST:
            return taken
    for key in _UTC_KEYS:
        taken = parse_capture_time(tags[key]) if key in tags else None
        if taken is None or taken.local < EARLIEST:
            continue
        instant = taken.local if taken.offset is None else taken.local - 60 * taken.offset
        on_nas = mtime_taken(instant)  # the NAS's zone at that instant
        return CaptureTime(local=on_nas.local, offset=on_nas.offset, source="exif")
    return None


def position(tags: Mapping[str, str]) -> Position | None:
    """The ISO 6709 position in lower-cased tags; None if absent, out of range or exactly 0,0."""
    for key in _LOCATION_KEYS:
        match = _ISO6709.fullmatch(tags[key].strip()) if key in tags else None
        if match is None:
            continue
        lat, lon = float(match.group(1)), float(match.group(2))
        if abs(lat) > 90 or abs(lon) > 180 or (lat == 0 and lon == 0):
            return None
        altitude = float(match.group(3)) if match.group(3) else None
        if altitude is not None and not -1000 <= altitude <= 50000:
            altitude = None
        return Position(lat=lat, lon=lon, altitude=altitude)
    return None


def video_meta(tags: Mapping[str, str]) -> PhotoMeta:
    """Capture time, camera and position from lower-cased tags; unknown fields None; never raises."""
    make = next((tags[k] for k in _MAKE_KEYS if tags.get(k)), None)
    model = next((tags[k] for k in _MODEL_KEYS if tags.get(k)), None)
    make, model = camera_names(make, model)
    return PhotoMeta(taken=capture_time(tags), make=make, model=model, position=position(tags))


def display_transpose(matrix: Sequence[int] | None) -> Image.Transpose | None:
    """The turn (and flip) that shows a frame upright, from its 3x3 display matrix; None to keep it.

    The same choices as FFmpeg's command line (fftools' autorotate): the
    clockwise angle is minus the matrix's rotation, and the signs of its
    entries decide the flips. Angles that are not a multiple of 90 degrees
    (none a phone writes) are left alone.
    """
    if matrix is None or len(matrix) < 5:
        return None
    a, b, c, d = (float(v) for v in (matrix[0], matrix[1], matrix[3], matrix[4]))
    scale_x, scale_y = math.hypot(a, c), math.hypot(b, d)
    if scale_x == 0 or scale_y == 0:
        return None
    # fftools' get_rotation: minus av_display_rotation_get, rounded, in [0, 360): clockwise degrees.
    clockwise = round(math.degrees(math.atan2(b / scale_y, a / scale_x)))
    clockwise -= 360 * math.floor(clockwise / 360 + 0.9 / 360)
    if abs(clockwise - 90) < 1:
        return Image.Transpose.TRANSPOSE if c > 0 else Image.Transpose.ROTATE_270
    if abs(clockwise - 270) < 1:
        return Image.Transpose.TRANSVERSE if c < 0 else Image.Transpose.ROTATE_90
    if abs(clockwise - 180) < 1:
        if a < 0 and d < 0:
            return Image.Transpose.ROTATE_180
        if a < 0:
            return Image.Transpose.FLIP_LEFT_RIGHT
        return Image.Transpose.FLIP_TOP_BOTTOM if d < 0 else None
    if clockwise < 1:
        return Image.Transpose.FLIP_TOP_BOTTOM if d < 0 else None
    return None


def rotate_tag(tags: Mapping[str, str]) -> Image.Transpose | None:
    """Older files' ``rotate`` tag (clockwise degrees) as a turn; None if absent or not a right angle."""
    text = tags.get("rotate", "").strip()
    turns = {"90": Image.Transpose.ROTATE_270, "180": Image.Transpose.ROTATE_180, "270": Image.Transpose.ROTATE_90}
    return turns.get(text.lstrip("+"))


def incomplete(handle: BinaryIO) -> bool:
    """True when the file is shorter than its container says (module doc); False when it cannot tell."""
    handle.seek(0)
    head = handle.read(64)
    if len(head) < 12:
        return True
    if head[4:8] == b"ftyp" or head[:4] == b"RIFF":
        return looks_incomplete(handle)
    size = handle.seek(0, 2)
    if head[:4] == EBML_MAGIC:
        return _matroska_incomplete(handle, size)
    if head[0] == 0x47 or head[4] == 0x47:  # MPEG-TS sync byte (M2TS: after a 4-byte time code)
        packet = M2TS_PACKET if head[0] != 0x47 else TS_PACKET
        return size % packet != 0
    return False


def _vint(data: bytes, at: int) -> tuple[int, int, bool] | None:
    """An EBML variable-length integer at data[at]: (value, length, all ones = unknown size)."""
    if at >= len(data) or data[at] == 0:
        return None
    length = 8 - data[at].bit_length() + 1
    if at + length > len(data):
        return None
    value = data[at] & (0xFF >> length)
    for byte in data[at + 1:at + length]:
        value = (value << 8) | byte
    return value, length, value == (1 << (7 * length)) - 1


def _matroska_incomplete(handle: BinaryIO, size: int) -> bool:
    """True if the Segment after the EBML header is declared longer than what the file holds."""
    handle.seek(0)
    head = handle.read(4096)
    header = _vint(head, 4)
    if header is None:
        return len(head) < 4096
    at = 4 + header[1] + header[0]  # the Segment element follows the EBML header
    if head[at:at + 4] != SEGMENT_ID:
        return at + 4 > size
    segment = _vint(head, at + 4)
    if segment is None:
        return True
    value, length, unknown = segment
    return not unknown and at + 4 + length + value > size
