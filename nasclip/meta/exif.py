"""What a photo says about itself: when it was taken, with which camera, and where.

``read_meta(image)`` takes a photo already open in Pillow and reads its EXIF
block from what Pillow kept at open time (``image.info["exif"]`` for JPEG,
PNG's eXIf chunk, WebP, and HEIC through pillow-heif; ImageMagick's "Raw
profile type exif" text chunk in PNG too), so the file's image data is never
read a second time and nothing is decoded. A TIFF file is its own EXIF: its
IFDs are read from the handle it was opened from (``image.fp`` until Pillow
loads the pixels and lets go of it; pass ``handle`` after that). A PNG whose
eXIf chunk follows the pixels has it in ``info`` only once the image is loaded.

Every field is independent and may be unknown (None); damaged metadata leaves
its field unknown and never raises:

* ``taken``: DateTimeOriginal (ExifIFD 0x9003) with OffsetTimeOriginal (0x9011)
  and SubSecTimeOriginal (0x9291). Without it, DateTimeDigitized (0x9004, with
  0x9012/0x9292) — a camera writes the same instant there, and for a scan it
  is when the picture became a file, the best there is — then IFD0's DateTime
  (0x0132, with 0x9010/0x9290), the time the software that wrote the file made
  it (a screenshot, an export): still closer to the picture than the NAS's
  mtime, which is usually when it was copied there. ``mtime_taken`` makes the
  mtime fallback, marked ``source="mtime"``.
* ``make``/``model``: trimmed, cut at the first NUL, whitespace collapsed, the
  make not repeated at the start of the model ("Canon" / "EOS R5").
* ``position``: the GPS IFD's latitude/longitude (degrees, minutes, seconds or
  fewer parts) with their N/S/E/W references, and altitude when present.

Times are wall-clock times: ``CaptureTime.local`` is the camera's clock reading
as seconds since 1970-01-01 00:00 *on that clock* (a naive datetime read as
UTC), so a date filter means the date the person saw, whether or not the zone
is known; ``offset`` (minutes east of UTC) gives the instant when it is.

Decisions about damaged or doubtful values:

* dates: all-zero or blank ("0000:00:00 00:00:00", "    :  :  "), impossible
  (Feb 30, hour 24) or outside 1800-2100 are unknown; an offset outside
  -12:00..+14:00 is dropped, the time kept; non-digit sub-seconds are dropped.
* strings that are not UTF-8, or longer than ``MAX_TEXT`` characters, are unknown.
* a position needs both references (N/S, E/W): without one the hemisphere is a
  guess, and a wrong one puts the photo on another continent. Exactly 0,0
  ("Null Island", in the Gulf of Guinea) is what devices without a fix write,
  so it is unknown; so is GPSStatus "V" (measurement void), a degree beyond
  90/180, minutes or seconds of 60 or more. A 0/0 rational in the minutes or
  seconds is read as 0 (some phones write it for "none"); in the degrees it
  makes the position unknown. An altitude outside -1000..50000 m is dropped.
"""

from __future__ import annotations

import calendar
import re
import time
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from typing import BinaryIO, Literal

from PIL import Image

from .ifd import BytesSource, FileSource, Source, Tiff, Value

MAX_TEXT = 128
MIN_YEAR, MAX_YEAR = 1800, 2100
MIN_OFFSET, MAX_OFFSET = -12 * 60, 14 * 60
MIN_ALTITUDE, MAX_ALTITUDE = -1000.0, 50000.0
# A camera's EXIF fits in one JPEG APP1 segment (64 KB); even with maker notes a
# phone's HEIC block is a few hundred KB. Anything bigger is not read at all.
MAX_EXIF_BYTES = 4 << 20

# IFD0
MAKE, MODEL, DATETIME, EXIF_IFD, GPS_IFD = 0x010F, 0x0110, 0x0132, 0x8769, 0x8825
# ExifIFD: (date, offset, sub-seconds) for the original, digitized and IFD0 times.
ORIGINAL = (0x9003, 0x9011, 0x9291)
DIGITIZED = (0x9004, 0x9012, 0x9292)
MODIFIED = (DATETIME, 0x9010, 0x9290)
# GPS IFD
LAT_REF, LAT, LON_REF, LON, ALT_REF, ALT, STATUS = 1, 2, 3, 4, 5, 6, 9

_IFD0_TAGS = frozenset({MAKE, MODEL, DATETIME, EXIF_IFD, GPS_IFD})
_EXIF_TAGS = frozenset(ORIGINAL + DIGITIZED + MODIFIED[1:])
_GPS_TAGS = frozenset({LAT_REF, LAT, LON_REF, LON, ALT_REF, ALT, STATUS})

_DATE = re.compile(r"(\d{4})[:\-](\d\d)[:\-](\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+\-]\d\d:?\d\d)?")
_OFFSET = re.compile(r"([+\-])(\d\d):?(\d\d)")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")


@dataclass(frozen=True)
class CaptureTime:
    """When a photo was taken: its wall-clock time, the zone when known, and where that came from."""

    local: float  # seconds since 1970-01-01 00:00 on the photo's own wall clock
    offset: int | None  # minutes east of UTC; None when the photo does not say
    source: Literal["exif", "mtime"]

    @property
    def utc(self) -> float | None:
        """The instant as a Unix timestamp; None when the zone is unknown."""
        return None if self.offset is None else self.local - 60 * self.offset

    def as_datetime(self) -> datetime:
        """An aware datetime when the zone is known, else a naive one (the wall clock)."""
        naive = datetime(1970, 1, 1) + timedelta(seconds=self.local)
        return naive if self.offset is None else naive.replace(tzinfo=timezone(timedelta(minutes=self.offset)))


@dataclass(frozen=True)
class Position:
    """Where a photo was taken (WGS 84 decimal degrees; metres above sea level)."""

    lat: float
    lon: float
    altitude: float | None = None


@dataclass(frozen=True)
class PhotoMeta:
    """What a photo's metadata says; each field is None when unknown or damaged."""

    taken: CaptureTime | None = None
    make: str | None = None
    model: str | None = None
    position: Position | None = None
    # Where that position is (places.locate): derived, not read; None until looked up.
    place: PlaceRef | None = None


@dataclass(frozen=True)
class PlaceRef:
    """A located photo's nearest city (GeoNames id), its region (admin1 code) and country (ISO 3166-1).

    ``NOWHERE`` (country "") records that the position was looked up and no
    city lies within reach (the open sea), so it is not looked up again.
    """

    city: int | None
    region: str | None
    country: str


NOWHERE = PlaceRef(None, None, "")


def read_meta(image: Image.Image, handle: BinaryIO | None = None) -> PhotoMeta:
    """The metadata of a photo open in Pillow, read from what Pillow already holds; never raises.

    ``handle`` is the file the image was opened from, needed only for a TIFF
    whose pixels are already loaded (Pillow drops ``image.fp`` then).
    """
    try:
        source = _exif_source(image, handle)
    except Exception:  # a handle in a bad state, an odd info value: no metadata, no failure
        return PhotoMeta()
    return meta_from_source(source) if source is not None else PhotoMeta()


def meta_from_exif(block: bytes) -> PhotoMeta:
    """The metadata in an EXIF block: a TIFF structure, with or without its "Exif\\0\\0" header; never raises."""
    source = _block_source(block)
    return meta_from_source(source) if source is not None else PhotoMeta()


def meta_from_source(source: Source) -> PhotoMeta:
    """The metadata of any TIFF structure; damage leaves fields unknown and never raises."""
    try:
        tiff = Tiff(source)
        if not tiff.valid:
            return PhotoMeta()
        ifd0 = tiff.ifd(tiff.first, _IFD0_TAGS)
        exif_at, gps_at = tiff.pointer(ifd0, EXIF_IFD), tiff.pointer(ifd0, GPS_IFD)
        exif = tiff.ifd(exif_at, _EXIF_TAGS) if exif_at else {}
        gps = tiff.ifd(gps_at, _GPS_TAGS) if gps_at else {}
    except Exception:  # the reader is bounded and checks offsets; this is only the last line
        return PhotoMeta()
    make, model = _camera(_text(ifd0.get(MAKE)), _text(ifd0.get(MODEL)))
    return PhotoMeta(taken=_taken({**ifd0, **exif}), make=make, model=model, position=_position(gps))


def parse_capture_time(text: str) -> CaptureTime | None:
    """A capture time from one date string as EXIF or a video container writes it; None if it is not one.

    "2023:06:01 14:00:00", ISO 8601 ("2023-06-01T14:00:00+0200", "...Z"), with or
    without fractions and a zone; the same rules as EXIF dates (see above).
    """
    return _capture(_clean(text), None, None)


def camera_names(make: str | None, model: str | None) -> tuple[str | None, str | None]:
    """Make and model from free text (a video's tags), cleaned as EXIF's are."""
    return _camera(_clean(make) if make else None, _clean(model) if model else None)


def mtime_taken(mtime: float) -> CaptureTime:
    """The fallback capture time from a file's mtime, on the NAS's own clock and zone, marked as such."""
    offset = (time.localtime(mtime).tm_gmtoff or 0) // 60
    return CaptureTime(local=mtime + 60 * offset, offset=offset, source="mtime")


def _exif_source(image: Image.Image, handle: BinaryIO | None) -> Source | None:
    block = image.info.get("exif")
    if block is None and "Raw profile type exif" in image.info:
        # ImageMagick's PNG text chunk: a header of three lines, then the block in hex.
        raw = str(image.info["Raw profile type exif"])
        if len(raw) <= 2 * MAX_EXIF_BYTES + 1024:
            block = bytes.fromhex("".join(raw.split("\n")[3:]))
    if isinstance(block, (bytes, bytearray)):
        return _block_source(bytes(block))
    if image.format == "TIFF":
        fp = getattr(image, "fp", None) or handle
        return FileSource(fp) if fp is not None else None
    return None


def _block_source(block: bytes) -> Source | None:
    if len(block) > MAX_EXIF_BYTES:
        return None
    if block.startswith(b"Exif"):
        block = block[6:]  # "Exif\0\0", whatever its last two bytes are
    elif not block.startswith(_TIFF_MAGIC):
        # Some HEIC writers keep the 4-byte header offset before the TIFF header; find it near the start.
        starts = [i for i in (block.find(m, 0, 16) for m in _TIFF_MAGIC) if i >= 0]
        if not starts:
            return None
        block = block[min(starts):]
    return BytesSource(block)


def _text(value: Value | None) -> str | None:
    """A cleaned ASCII value: UTF-8, no control characters, whitespace collapsed; None if empty or junk."""
    raw = value.text() if value is not None else None
    if raw is None:
        return None
    try:
        return _clean(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None


def _clean(text: str) -> str | None:
    """No control characters, whitespace collapsed; None if empty or longer than MAX_TEXT."""
    text = "".join(c if unicodedata.category(c)[0] != "C" else " " for c in text)
    text = " ".join(text.split())
    return text if text and len(text) <= MAX_TEXT else None


def _camera(make: str | None, model: str | None) -> tuple[str | None, str | None]:
    """Make and model, the model without the make (or the make's first word) in front of it."""
    if make and model:
        lowered = model.casefold()
        for prefix in (make, make.split()[0]):
            if lowered.startswith(prefix.casefold() + " ") and len(model) > len(prefix) + 1:
                model = model[len(prefix) + 1:].strip()
                break
    return make, model


def _taken(entries: dict[int, Value]) -> CaptureTime | None:
    for date_tag, offset_tag, subsec_tag in (ORIGINAL, DIGITIZED, MODIFIED):
        taken = _capture(_text(entries.get(date_tag)), _text(entries.get(offset_tag)),
                         _text(entries.get(subsec_tag)))
        if taken is not None:
            return taken
    return None


def _capture(date: str | None, offset_text: str | None, subsec: str | None) -> CaptureTime | None:
    match = _DATE.fullmatch(date) if date else None
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    if not MIN_YEAR <= year <= MAX_YEAR:
        return None
    try:
        wall = datetime(year, month, day, hour, minute, second)
    except ValueError:  # Feb 30, hour 24, month 0 (and so every all-zero date)
        return None
    fraction = match.group(7) or (subsec.strip() if subsec else "")
    local = calendar.timegm(wall.timetuple()) + (int(fraction[:9]) / 10 ** len(fraction[:9])
                                                 if fraction.isdigit() and fraction.isascii() else 0.0)
    offset = _offset(offset_text) if offset_text else None
    if offset is None and match.group(8):  # some writers append the zone to the date itself
        offset = 0 if match.group(8) == "Z" else _offset(match.group(8))
    return CaptureTime(local=local, offset=offset, source="exif")


def _offset(text: str) -> int | None:
    match = _OFFSET.fullmatch(text.strip())
    if match is None or int(match.group(3)) >= 60:
        return None
    minutes = int(match.group(2)) * 60 + int(match.group(3))
    minutes = -minutes if match.group(1) == "-" else minutes
    return minutes if MIN_OFFSET <= minutes <= MAX_OFFSET else None


def _position(gps: dict[int, Value]) -> Position | None:
    status = _text(gps.get(STATUS))
    if status is not None and status.upper() == "V":  # "measurement void": the receiver had no fix
        return None
    lat = _coordinate(gps.get(LAT), _text(gps.get(LAT_REF)), "N", "S", 90)
    lon = _coordinate(gps.get(LON), _text(gps.get(LON_REF)), "E", "W", 180)
    if lat is None or lon is None or (lat == 0 and lon == 0):
        return None
    return Position(lat=lat, lon=lon, altitude=_altitude(gps.get(ALT), gps.get(ALT_REF)))


def _coordinate(value: Value | None, ref: str | None, positive: str, negative: str, limit: int) -> float | None:
    """Decimal degrees from 1-3 rationals (degrees, minutes, seconds) and a reference letter."""
    parts = value.rationals() if value is not None else None
    sign = {positive: 1, negative: -1}.get(ref.upper()) if ref else None
    if not parts or len(parts) > 3 or sign is None:
        return None
    degrees = Fraction(0)
    for index, (numerator, denominator) in enumerate(parts):
        if denominator == 0:
            if numerator == 0 and index > 0:  # 0/0 minutes or seconds: "none", read as 0
                continue
            return None
        part = Fraction(numerator, denominator)
        if part < 0 or (index > 0 and part >= 60):
            return None
        degrees += part / 60 ** index
    if degrees > limit:
        return None
    return sign * float(degrees)


def _altitude(value: Value | None, ref: Value | None) -> float | None:
    parts = value.rationals() if value is not None else None
    if not parts or len(parts) != 1 or parts[0][1] == 0:
        return None
    below = ref.ints() if ref is not None else None  # 0: above sea level (also the default), 1: below
    altitude = float(Fraction(*parts[0])) * (-1 if below and below[0] == 1 else 1)
    return altitude if MIN_ALTITUDE <= altitude <= MAX_ALTITUDE else None
