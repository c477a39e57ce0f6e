"""Photos to encoder input: decoding real-world files and preprocessing from the manifest.

Decoding is as expensive as encoding unless it is done well, so JPEGs are
decoded at reduced scale in the DCT (``draft``) before anything else touches
the pixels, EXIF orientation included, and WebPs by libwebp while it decodes
(webp.py). The other formats have no reduced-scale decode that keeps the
tensor as close to a full decode (``reduce_on_load`` says why,
bench/bench_decode.py measures them all). ``Photo`` carries the photo's own
size and the decoder's scale, so the model's crop falls where it falls in the
full photo whatever size the decoder rounded to. Files are read within
bounded.py's deadline and byte budget. The pixel limit is checked on the
header alone, so a decompression bomb never gets its pixels allocated. Every
mode a NAS holds (CMYK, 16-bit, palette, alpha, greyscale) ends up as 8-bit
RGB. Preprocessing follows the model manifest exactly, so the same photo
gives the same tensor on every backend.
"""

from __future__ import annotations

import logging
import math
import os
import struct
import warnings
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DecodeError
from ..meta.exif import PhotoMeta, read_meta
from ..model.spec import ImageSpec
from . import webp
from .memory import release_memory

log = logging.getLogger("nasclip.imaging")

try:  # HEIC/HEIF from phones; part of the default install, optional in principle.
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - only without the dependency
    pillow_heif = None

try:  # JPEG XL (pillow-jxl-plugin, libjxl inside its wheel); registers the "JXL" format on import.
    import pillow_jxl  # noqa: F401
except ImportError:  # pragma: no cover - only without the dependency
    pass

# Pillow's own bomb guard would fire before ours with a less helpful message;
# nasclip checks the header's size against indexer.max_pixels itself.
Image.MAX_IMAGE_PIXELS = None

# Only photo formats. Pillow would otherwise also try EPS (which runs
# Ghostscript), PSD, ICO and a dozen formats no camera writes, on any file
# that happens to carry a photo extension.
PHOTO_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF", "JXL")

_TRUNCATED = "truncated (incomplete file, maybe still being copied)"
# After a decode this big, freed pixel buffers are handed back to the system at once.
TRIM_PIXELS = 16_000_000
# A JPEG is decoded in the DCT at no less than this many times the model's input size.
# The DCT's reduced-scale decode is a coarse filter: when the bicubic resize after it
# has too little left to do, its aliasing reaches the tensor. On the 64 photos of
# tests/system/test_image_parity.py against open_clip's full-decode preprocessing, with
# the crop placed from the photo's own size (``Photo``), the mean difference in
# normalised units and the worst photo's were: 2x 0.0025 and 0.0139, 2.5x 0.0017 and
# 0.0054, 3x 0.0014 and 0.0039 (bars 0.004 and 0.02). Before the crop was placed that
# way, a reduced size rounded up moved it, and 2x cost one photo 0.035. 2.5x decodes
# an 8-megapixel phone photo and a 1920×1200 one at the next smaller scale than 3x.
JPEG_DRAFT_MARGIN = 2.5


Source = Path | BinaryIO


class Photo(NamedTuple):
    """A decoded photo, upright: its pixels, which may be fewer than the file's (a reduced-scale decode), and how many.

    ``size`` is the photo's own size in the file, ``scale`` the decoded
    pixels per pixel of it along each axis: ``resize`` places the model's
    crop by them exactly where it falls in the full photo, whatever a decoder
    rounded its reduced size to.
    """

    image: Image.Image
    size: tuple[int, int]
    scale: tuple[float, float]


def open_photo(source: Source, min_side: int, max_pixels: int,
               meta_out: list[PhotoMeta] | None = None, *, long_side: int | None = None) -> Image.Image:
    """decode_photo's pixels."""
    return decode_photo(source, min_side, max_pixels, meta_out, long_side=long_side).image


def decode_photo(source: Source, min_side: int, max_pixels: int,
                 meta_out: list[PhotoMeta] | None = None, *, long_side: int | None = None) -> Photo:
    """Decode source (a path, or a file the caller opened) into an 8-bit RGB image with EXIF orientation applied.

    JPEGs are decoded at the smallest DCT scale that keeps both sides at
    least ``JPEG_DRAFT_MARGIN`` × ``min_side`` (with ``long_side``: that
    keeps the long side at least that long, as text recognition wants it),
    other formats in full.
    Raises DecodeError naming the reason; ``retry`` is
    set when the file looks incomplete (empty, or shorter than its own
    structure says), which may mean it is still arriving. A file object is
    read from its start and left open.
    """
    if not isinstance(source, (str, os.PathLike)):
        source.seek(0)
        return _decode_handle(source, min_side, max_pixels, meta_out, long_side)
    try:
        handle = open(source, "rb")
    except OSError as exc:
        raise opening_error(exc) from None
    with handle:
        return _decode_handle(handle, min_side, max_pixels, meta_out, long_side)


def opening_error(exc: OSError) -> DecodeError:
    """Why a file could not be opened, said for the NAS owner."""
    if isinstance(exc, FileNotFoundError):
        return DecodeError("file disappeared before it could be read")
    if isinstance(exc, PermissionError):
        return DecodeError("permission denied (give the nasclip user read access, then run `nasclip scan`)")
    return DecodeError(f"cannot open: {exc.strerror or exc}")


def _decode_handle(handle: BinaryIO, min_side: int, max_pixels: int,
                   meta_out: list[PhotoMeta] | None = None, long_side: int | None = None) -> Photo:
    """_decode, with every failure turned into a DecodeError that says why."""
    try:
        return _decode(handle, min_side, max_pixels, meta_out, long_side)
    except DecodeError:
        raise
    except MemoryError:
        raise DecodeError("not enough memory to decode (lower indexer.max_pixels)") from None
    except UnidentifiedImageError:
        if _size(handle) == 0:
            raise DecodeError("empty file (0 bytes)", retry=True) from None
        if looks_incomplete(handle):
            raise DecodeError(_TRUNCATED, retry=True) from None
        raise DecodeError("not an image nasclip can read (unknown format or damaged header)") from None
    except Exception as exc:  # decoders raise OSError, ValueError, SyntaxError, struct.error, ...
        text = str(exc)
        lowered = text.lower()
        if isinstance(exc, OSError) and exc.errno is not None:
            raise DecodeError(f"read error: {exc.strerror or exc}") from None
        if isinstance(exc, EOFError) or "truncated" in lowered or "end of file" in lowered \
                or looks_incomplete(handle):
            raise DecodeError(_TRUNCATED, retry=True) from None
        raise DecodeError(f"damaged image data ({type(exc).__name__}: {text[:200] or 'no detail'})") from None


def _size(handle: BinaryIO) -> int:
    handle.seek(0, 2)
    return handle.tell()


def looks_incomplete(handle: BinaryIO) -> bool:
    """True when the file is shorter than its own container structure says.

    Covers the formats whose decoders do not say "truncated" themselves:
    RIFF (WebP, AVI) carries its total length up front, and ISO boxes (HEIC,
    AVIF, JPEG XL's container, MP4/MOV) carry each top-level box's length.
    """
    size = _size(handle)
    handle.seek(0)
    head = handle.read(16)
    if len(head) < 12:
        return True
    if head[:4] == b"RIFF":
        return struct.unpack("<I", head[4:8])[0] + 8 > size
    if head[4:8] in (b"ftyp", b"JXL "):
        offset = 0
        while offset < size:
            handle.seek(offset)
            box = handle.read(16)
            if len(box) < 8:
                return True
            length = struct.unpack(">I", box[:4])[0]
            if length == 1:
                if len(box) < 16:
                    return True
                length = struct.unpack(">Q", box[8:16])[0]
            elif length == 0:  # the box runs to the end of the file
                return False
            if length < 8:
                return False  # malformed, not short: let the decoder's message stand
            offset += length
        return offset > size
    if head[:2] == b"\xff\xd8":
        # A whole JPEG ends with EOI; camera files may pad after it, so look near the end.
        handle.seek(max(0, size - 4096))
        return b"\xff\xd9" not in handle.read()
    return False


def _decode(handle: BinaryIO, min_side: int, max_pixels: int,
            meta_out: list[PhotoMeta] | None = None, long_side: int | None = None) -> Photo:
    with warnings.catch_warnings():
        # Pillow warns about odd EXIF and palette transparency; failures raise instead.
        warnings.simplefilter("ignore")
        photo = _decode_webp(handle, min_side, max_pixels, long_side)
        if photo is None:
            opened = Image.open(handle, formats=PHOTO_FORMATS)
            # The header alone gives the size: refuse bombs before a pixel is allocated.
            size = opened.size
            _check_pixels(*size, max_pixels)
            # Before anything loads it, exif_transpose included.
            if long_side is not None:
                fit_on_load(opened, long_side)
            else:
                reduce_on_load(opened, min_side)
            opened.load()
            if opened.size == size:
                photo = Photo(opened, size, (1.0, 1.0))
            elif opened.format == "JPEG":  # the DCT's whole 1/k, its last pixel on a side partly padding
                factor = 1 / round(size[0] / opened.width)
                photo = Photo(opened, size, (factor, factor))
            else:  # a decoder whose picture is not the size its header said: the picture it gave
                photo = Photo(opened, opened.size, (1.0, 1.0))
        image = photo.image
        if meta_out is not None:  # after load (a TIFF's tags are read from handle), before the rotation
            meta_out.append(read_meta(image, handle))
        decoded = image.size
        _apply_orientation(image)
        (width, height), (scale_x, scale_y) = photo.size, photo.scale
        if image.size != decoded:  # turned a quarter
            return Photo(to_rgb(image), (height, width), (scale_y, scale_x))
        return Photo(to_rgb(image), photo.size, photo.scale)


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise DecodeError(
            f"{width}×{height} pixels is more than indexer.max_pixels ({max_pixels}); "
            "raise the setting if this photo is genuine")


def _decode_webp(handle: BinaryIO, min_side: int, max_pixels: int, long_side: int | None) -> Photo | None:
    """A WebP decoded by libwebp directly (webp.py), at a whole-factor reduced scale; None: let Pillow decode it."""
    if not webp.is_webp(handle.read(12)):
        handle.seek(0)
        return None
    handle.seek(0)
    data = handle.read()
    found = webp.features(data)
    handle.seek(0)
    if found is None:
        return None
    _check_pixels(found.width, found.height, max_pixels)
    image = webp.decode(data, found, webp.reduction(found.width, found.height, min_side, long_side))
    if image is None:
        return None
    return Photo(image, (found.width, found.height), (image.width / found.width, image.height / found.height))


def read_header_meta(handle: BinaryIO) -> PhotoMeta:
    """A photo's capture time, camera and position from its header, decoding no pixels; empty if unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(handle, formats=PHOTO_FORMATS) as image:
                return read_meta(image, handle)
    except Exception:  # any file the decoder refuses (the indexer said why when it was indexed)
        return PhotoMeta()


def reduce_on_load(image: Image.Image, min_side: int) -> str | None:
    """Have image's decoder decode at reduced scale where its format allows; what it will decode, or None (in full).

    Both sides keep at least ``JPEG_DRAFT_MARGIN`` × ``min_side``. Must come
    before anything loads the image. The answer ("JPEG DCT 1/4") is for
    bench/bench_decode.py.
    """
    # JPEG: the DCT decodes at 1/2, 1/4 or 1/8 scale for a fraction of the cost.
    # HEIC: decoded in full, embedded thumbnail or not. pillow-heif's draft would
    # decode a thumbnail instead, but a thumbnail is only as good as the scaler that
    # made it: libheif's (heif-enc, ImageMagick, GIMP, pillow-heif) picks nearest
    # pixels, and on real photos its thumbnails of 1-2.5x the input size left a mean
    # difference of 0.014-0.17 to the full decode in normalised units, 0.009-0.03
    # even at 3.5-7x (the parity bar is 0.004). A phone's thumbnail is a few hundred
    # pixels, about 1x, where even the DCT's filtered 1x copy misses the bar (0.011).
    # WebP: scaled by libwebp itself while it decodes, before Pillow sees it (webp.py).
    # AVIF, PNG and TIFF have no reduced-scale decode (a pyramidal TIFF's smaller
    # pages come from slide scanners and GIS, not cameras).
    if image.format != "JPEG":
        return None
    width = image.width
    side = math.ceil(min_side * JPEG_DRAFT_MARGIN)
    image.draft("RGB", (side, side))
    return f"JPEG DCT 1/{round(width / image.width)}" if image.width < width else None


def fit_on_load(image: Image.Image, long_side: int) -> None:
    """A JPEG decoded at the smallest DCT scale that keeps its long side at least long_side (before loading)."""
    factor = long_side / max(image.size)
    if image.format == "JPEG" and factor < 1:
        image.draft("RGB", (math.ceil(image.width * factor), math.ceil(image.height * factor)))


def _apply_orientation(image: Image.Image) -> None:
    """Turn the pixels upright as EXIF says; a damaged EXIF block only costs the rotation."""
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except Exception as exc:  # EXIF parsing raises a zoo of types on damaged blocks
        log.debug("ignoring unreadable EXIF orientation: %s", exc)


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any Pillow mode; transparency is composited onto white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16"):
        # 16-bit greyscale: keep the high byte. Pillow's own conversion clips
        # everything above 255, which would turn most 16-bit scans white.
        grey = (np.asarray(image).astype(np.uint16) >> 8).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode in ("I", "F"):
        # 32-bit greyscale: 16-bit data unless the values say 8-bit.
        values = np.asarray(image)
        top = 65535.0 if values.max(initial=0) > 255 else 255.0
        grey = np.clip(values * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("LA", "La", "PA", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


def resize(image: Image.Image, spec: ImageSpec, size: tuple[int, int] | None = None,
           scale: tuple[float, float] = (1.0, 1.0)) -> Image.Image:
    """Resize (and crop) to the model's input size as the manifest says.

    ``size`` and ``scale`` say where image came from (``Photo``): the crop is
    placed as in the full photo, and only the crop is resampled, its box in
    image's coordinates. The filter still reads the pixels around the box, so
    this is the resize of the whole photo then the crop (to a rounding step),
    for 2/3 of the work on a 3:2 photo. ``reducing_gap`` first shrinks by a
    whole factor with a box filter and only then resamples: much faster on
    large photos, and the difference to a plain bicubic resize is below what
    CLIP can see.
    """
    side = spec.size
    width, height = size or image.size
    scale_x, scale_y = scale
    if spec.resize == "squash":
        box = (0.0, 0.0, width * scale_x, height * scale_y)
        new_w, new_h, left, top = side, side, 0, 0
    else:
        # crop: shortest side to side, then a centre crop, as torchvision's
        # Resize + CenterCrop do for OpenAI CLIP (same rounding).
        if width <= height:
            new_w, new_h = side, max(side, int(side * height / width))
        else:
            new_w, new_h = max(side, int(side * width / height)), side
        left = int(round((new_w - side) / 2.0))
        top = int(round((new_h - side) / 2.0))
        if (new_w, new_h) == image.size:
            return image.crop((left, top, left + side, top + side))
        box = (left * width / new_w * scale_x, top * height / new_h * scale_y,
               (left + side) * width / new_w * scale_x, (top + side) * height / new_h * scale_y)
    if image.size == (side, side) and box == (0.0, 0.0, side, side):
        return image
    box = (box[0], box[1], min(box[2], image.width), min(box[3], image.height))  # float rounding
    return image.resize((side, side), Image.Resampling.BICUBIC, box=box, reducing_gap=3.0)


def to_tensor(image: Image.Image, spec: ImageSpec) -> np.ndarray:
    """One preprocessed input (no batch axis) in the manifest's layout and dtype.

    ``float32``: (pixel / 255 - mean) / std per channel; ``uint8``: the raw
    pixels, for NPU models that have the normalisation compiled in. Both are
    the same resized pixels, so both backends see the same photo.
    """
    pixels = np.asarray(image, dtype=np.uint8)
    if spec.channel_order == "BGR":
        pixels = pixels[..., ::-1]
    if spec.layout == "NCHW":
        pixels = pixels.transpose(2, 0, 1)
    if spec.dtype == "uint8":
        return np.ascontiguousarray(pixels)
    shape = (3, 1, 1) if spec.layout == "NCHW" else (1, 1, 3)
    std = np.asarray(spec.std, dtype=np.float32)
    mean = np.asarray(spec.mean, dtype=np.float32)
    if spec.channel_order == "BGR":  # mean/std are given per RGB channel
        std, mean = std[::-1], mean[::-1]
    scale = (1.0 / (255.0 * std)).reshape(shape)
    offset = (-mean / std).reshape(shape)
    data = np.empty(pixels.shape, dtype=np.float32)
    np.multiply(pixels, scale, out=data)
    data += offset
    return data


def load_image(source: Source, spec: ImageSpec, max_pixels: int,
               meta_out: list[PhotoMeta] | None = None) -> Image.Image:
    """Decode and resize one photo: the model's input as an RGB image (its metadata appended to meta_out)."""
    photo = decode_photo(source, spec.size, max_pixels, meta_out)
    big = photo.image.width * photo.image.height >= TRIM_PIXELS
    small = resize(photo.image, spec, photo.size, photo.scale)
    del photo
    if big:  # hundreds of MB just freed: give them back rather than keep them for the next one
        release_memory()
    return small


def load_tensor(source: Source, spec: ImageSpec, max_pixels: int,
                meta_out: list[PhotoMeta] | None = None) -> np.ndarray:
    """Decode and preprocess one photo for the image encoder.

    With meta_out, the photo's capture time, camera and position (nasclip/meta/exif.py)
    are appended to it, read from the same open file: no second read of the photo.
    """
    return to_tensor(load_image(source, spec, max_pixels, meta_out), spec)
