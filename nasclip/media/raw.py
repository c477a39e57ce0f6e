"""Camera RAW to a picture: the camera's own preview where it is large enough, else a reduced demosaic.

RAW files (DNG, CR2, CR3, NEF, ARW, RAF, ORF, RW2, PEF) go through LibRaw
(rawpy, whose wheels carry it). Demosaicing a 24-megapixel RAW in full costs
seconds; but nearly every camera embeds a JPEG rendering of the shot, full
size (Canon, Pentax, Nikon's large preview) or 1-2 megapixels (Sony, Fuji,
Panasonic), which ``extract_thumb`` hands over without touching the raw data.
That JPEG is decoded like any photo (imaging.py: reduced in the DCT) when its
short side is at least ``PREVIEW_MARGIN`` × the model's input, which leaves
the final resize a real reduction; a smaller one (phones' DNGs carry 256-pixel
thumbnails, some none) is not used, and LibRaw demosaics at half size instead
(``half_size``: each 2×2 Bayer cell becomes one pixel, no interpolation, a
quarter of the work) with the camera's white balance.

Orientation: a preview that carries its own EXIF Orientation is turned by it
(Fujifilm embeds a whole EXIF block); otherwise by the RAW's orientation
(LibRaw's ``sizes.flip``, read from the RAW's own metadata), which the
demosaic applies itself. The pixel limit is checked on the RAW's header before
anything is unpacked, the file is read through the bounded reader, and any
failure is a DecodeError with its reason.

Metadata: the RAW's own EXIF where it is a TIFF structure (DNG, CR2, NEF, ARW,
PEF, and ORF and RW2 under their own magic numbers), else the preview's (RAF),
else LibRaw's capture time (CR3).
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

import numpy as np
from PIL import Image

from ..errors import DecodeError
from ..indexing.bounded import DecodeLimits
from ..indexing.imaging import open_photo, resize, to_rgb, to_tensor
from ..meta.exif import CaptureTime, PhotoMeta, meta_from_source
from ..meta.ifd import BytesSource, Tiff
from ..model.spec import ImageSpec
from .files import Source, bounded

log = logging.getLogger("nasclip.raw")

# An embedded preview is used when its short side is at least this many times the model's
# input side: the decode and resize after it then shrink by 2× or more, as they do for a
# photo, and every camera's "large" preview (1080 pixels and up) qualifies for a 224 input.
PREVIEW_MARGIN = 2
ORIENTATION = 0x0112
# LibRaw's flip codes (sizes.flip) as turns of the stored pixels.
FLIPS = {3: Image.Transpose.ROTATE_180, 5: Image.Transpose.ROTATE_90, 6: Image.Transpose.ROTATE_270}
# Header magic of TIFF-structured RAWs that are not plain TIFF: Olympus ORF, Panasonic RW2.
TIFF_LIKE = (b"IIRO", b"IIRS", b"MMOR", b"IIU\x00")
_STRIPS = frozenset({273, 279, 324, 325, 330})


@dataclass(frozen=True)
class RawPicture:
    """A RAW as an upright 8-bit RGB picture, how it was made, and what the file says of itself."""

    image: Image.Image
    route: Literal["preview", "demosaic"]
    meta: PhotoMeta
    raw_size: tuple[int, int]  # the sensor image's width and height




def open_raw(source: Source, min_side: int, limits: DecodeLimits) -> RawPicture:
    """The picture of a RAW (module doc); raises DecodeError naming the reason.

    source: a path, or a file the caller opened (bounded.open_bounded) and
    that is read whole.
    """
    data = _read(source, limits)
    rawpy = _rawpy()
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            sizes = raw.sizes
            if sizes.raw_width * sizes.raw_height > limits.max_pixels:
                raise DecodeError(f"{sizes.raw_width}×{sizes.raw_height} pixels is more than indexer.max_pixels "
                                  f"({limits.max_pixels}); raise the setting if this photo is genuine")
            meta = _tiff_meta(data)
            if _tiff_incomplete(data):
                raise DecodeError("truncated (incomplete file, maybe still being copied)", retry=True)
            size = (int(sizes.width), int(sizes.height))  # LibRaw changes sizes when it demosaics at half size
            picture = _from_preview(raw, min_side, limits, meta, size)
            if picture is None:
                picture = _demosaic(raw, meta, size)
            if picture.meta.taken is None:
                picture = replace(picture, meta=replace(picture.meta, taken=_libraw_time(raw)))
            return picture
    except DecodeError:
        raise
    except MemoryError:
        raise DecodeError("not enough memory to decode (lower indexer.max_pixels)") from None
    except rawpy.LibRawFileUnsupportedError:
        raise DecodeError("not a RAW file LibRaw can read (unknown format or camera)") from None
    except rawpy.LibRawIOError:
        raise DecodeError("truncated (incomplete file, maybe still being copied)", retry=True) from None
    except (rawpy.LibRawError, ValueError, OSError) as exc:
        raise DecodeError(f"damaged RAW data ({type(exc).__name__}: {exc})") from None


def raw_tensor(source: Source, spec: ImageSpec, limits: DecodeLimits) -> tuple[np.ndarray, PhotoMeta]:
    """A RAW's encoder input, preprocessed exactly as photos are, and its metadata."""
    picture = open_raw(source, spec.size, limits)
    return to_tensor(resize(picture.image, spec), spec), picture.meta


def _rawpy() -> Any:
    import rawpy

    return rawpy


def _read(source: Source, limits: DecodeLimits) -> bytes:
    """The whole file, through the bounded reader (LibRaw takes a RAW as one buffer)."""
    with bounded(source, limits) as handle:
        return handle.read()


def _from_preview(raw: Any, min_side: int, limits: DecodeLimits, meta: PhotoMeta,
                  raw_size: tuple[int, int]) -> RawPicture | None:
    """The embedded preview as the picture, if there is one large enough; None otherwise."""
    rawpy = _rawpy()
    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None
    except rawpy.LibRawError as exc:  # a damaged preview: the raw data may still be fine
        log.debug("ignoring an unreadable preview: %s", exc)
        return None
    if thumb.format == rawpy.ThumbFormat.JPEG:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = Image.open(io.BytesIO(thumb.data), formats=("JPEG",))
            if min(header.size) < PREVIEW_MARGIN * min_side:
                return None
            own_turn = ORIENTATION in header.getexif()
        found: list[PhotoMeta] = []
        image = open_photo(io.BytesIO(thumb.data), min_side, limits.max_pixels, found)
        if not own_turn:
            image = _turned(image, raw.sizes.flip)
        if found and meta == PhotoMeta():
            meta = found[0]
        return RawPicture(image, "preview", meta, raw_size)
    pixels = np.asarray(thumb.data)
    if pixels.ndim != 3 or min(pixels.shape[:2]) < PREVIEW_MARGIN * min_side:
        return None
    image = to_rgb(Image.fromarray(pixels.astype(np.uint8)))
    return RawPicture(_turned(image, raw.sizes.flip), "preview", meta, raw_size)


def _demosaic(raw: Any, meta: PhotoMeta, raw_size: tuple[int, int]) -> RawPicture:
    """LibRaw's rendering at half size, camera white balance, turned upright by LibRaw."""
    pixels = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
    image = Image.fromarray(np.ascontiguousarray(pixels[..., :3]), "RGB")
    return RawPicture(image, "demosaic", meta, raw_size)


def _turned(image: Image.Image, flip: int) -> Image.Image:
    turn = FLIPS.get(flip)
    return image.transpose(turn) if turn is not None else image


def _as_tiff(data: bytes) -> BytesSource | None:
    """The file as a TIFF structure when it is one (ORF and RW2 under their own magic); None otherwise."""
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return BytesSource(data)
    if data[:4] in TIFF_LIKE:
        return BytesSource((b"II*\x00" if data[:2] == b"II" else b"MM\x00*") + data[4:])
    return None


def _tiff_meta(data: bytes) -> PhotoMeta:
    source = _as_tiff(data)
    return meta_from_source(source) if source is not None else PhotoMeta()


def _tiff_incomplete(data: bytes) -> bool:
    """True when a strip or tile of IFD0 or its SubIFDs (where the raw data is) ends past the file."""
    source = _as_tiff(data)
    if source is None:
        return False
    tiff = Tiff(source)
    if not tiff.valid:
        return False
    ifd0 = tiff.ifd(tiff.first, _STRIPS)
    subs = ifd0.get(330)
    pointers = (subs.ints() or ()) if subs is not None else ()
    for entries in [ifd0] + [tiff.ifd(at, _STRIPS) for at in pointers[:8]]:
        for offsets_tag, counts_tag in ((273, 279), (324, 325)):
            offsets, counts = entries.get(offsets_tag), entries.get(counts_tag)
            starts = offsets.ints() if offsets is not None else None
            lengths = counts.ints() if counts is not None else None
            if starts and lengths and max(s + n for s, n in zip(starts, lengths)) > len(data):
                return True
    return False


def _libraw_time(raw: Any) -> CaptureTime | None:
    """LibRaw's capture time (from the maker's metadata), as the camera's wall clock; None if unset."""
    try:
        stamp = raw.other.timestamp
    except Exception:  # older rawpy without `other`
        return None
    if not isinstance(stamp, datetime) or stamp.year < 1990:
        return None
    naive = stamp.replace(tzinfo=None)
    local = (naive - datetime(1970, 1, 1)).total_seconds()
    return CaptureTime(local=local, offset=None, source="exif")
