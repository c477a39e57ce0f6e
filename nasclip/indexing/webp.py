"""WebP photos through libwebp's own decoder: straight to RGB, at reduced scale where the photo is big.

Pillow decodes every WebP through libwebp's animation API: an RGBA canvas the
size of the photo, allocated and cleared before a pixel is decoded, then
converted to RGB. libwebp's advanced API (``WebPDecoderConfig`` in its
``decode.h``) decodes into a buffer of our own in the mode we ask for, and can
scale while it decodes: it rescales the Y, U and V planes row by row before
the colour conversion, so the full-size picture never exists. On the 38 real
photos re-encoded as WebP (bench/bench_decode.py), 5.7 MP on average, CPU per
photo to a ViT-B/32 input: Pillow 112 ms, this module in full 74 ms (the same
tensor to the last bit), at reduced scale 55 ms.

The scale is a whole factor (1/2, 1/3, ...) keeping both sides at least
``MARGIN`` × the model's input. libwebp's rescaler averages areas; on a whole
factor that is Pillow's own ``reduce``. A fractional factor let the rescaler's
area grid beat against the photo's detail: a 1600×1203 flower photo scaled by
1/1.34 missed the parity bar by itself (0.025 against 0.02), where whole
factors keep every photo within 0.0062 of the full decode and 0.0032 on
average. The JPEG draft's 2.5× would leave 0.0038 on average here, too near
the 0.004 bar.

The library is the libwebp Pillow itself uses: the one in Pillow's wheel
(``pillow.libs``), else the system's (``libwebp.so.7``, which Debian's Pillow
depends on). Without either, or for an animated WebP, or for any file libwebp
refuses here, the caller decodes with Pillow as before, which then says what
is wrong with the file.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import struct
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

log = logging.getLogger("nasclip.imaging")

# Both sides of a reduced-scale decode keep at least this many times the model's input.
MARGIN = 3
# decode.h: WEBP_DECODER_ABI_VERSION of libwebp 0.5 to 1.x; the library refuses a
# structure layout of another major version (the init call returns 0).
_ABI = 0x0209
_MODE_RGB, _MODE_RGBA = 0, 1  # WEBP_CSP_MODE
_OK = 0  # VP8_STATUS_OK
_HEADER = 12  # "RIFF", the size, "WEBP"


class _Features(ctypes.Structure):
    _fields_ = [("width", ctypes.c_int), ("height", ctypes.c_int), ("has_alpha", ctypes.c_int),
                ("has_animation", ctypes.c_int), ("format", ctypes.c_int), ("pad", ctypes.c_uint32 * 5)]


class _RGBABuffer(ctypes.Structure):
    _fields_ = [("rgba", ctypes.c_void_p), ("stride", ctypes.c_int), ("size", ctypes.c_size_t)]


class _YUVABuffer(ctypes.Structure):  # only for the union's size: nasclip asks for RGB(A)
    _fields_ = [("y", ctypes.c_void_p), ("u", ctypes.c_void_p), ("v", ctypes.c_void_p), ("a", ctypes.c_void_p),
                ("y_stride", ctypes.c_int), ("u_stride", ctypes.c_int), ("v_stride", ctypes.c_int),
                ("a_stride", ctypes.c_int), ("y_size", ctypes.c_size_t), ("u_size", ctypes.c_size_t),
                ("v_size", ctypes.c_size_t), ("a_size", ctypes.c_size_t)]


class _Buffers(ctypes.Union):
    _fields_ = [("RGBA", _RGBABuffer), ("YUVA", _YUVABuffer)]


class _DecBuffer(ctypes.Structure):
    _fields_ = [("colorspace", ctypes.c_int), ("width", ctypes.c_int), ("height", ctypes.c_int),
                ("is_external_memory", ctypes.c_int), ("u", _Buffers), ("pad", ctypes.c_uint32 * 4),
                ("private_memory", ctypes.c_void_p)]


class _Options(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int) for name in (
        "bypass_filtering", "no_fancy_upsampling", "use_cropping", "crop_left", "crop_top", "crop_width",
        "crop_height", "use_scaling", "scaled_width", "scaled_height", "use_threads", "dithering_strength",
        "flip", "alpha_dithering_strength")] + [("pad", ctypes.c_uint32 * 5)]


class _Config(ctypes.Structure):
    _fields_ = [("input", _Features), ("output", _DecBuffer), ("options", _Options)]


class Features(NamedTuple):
    width: int
    height: int
    alpha: bool
    animated: bool


def is_webp(head: bytes) -> bool:
    """True if head (the first 12 bytes of a file) starts a WebP file."""
    return len(head) >= _HEADER and head[:4] == b"RIFF" and head[8:12] == b"WEBP"


@cache
def _library() -> Any | None:
    """libwebp with its decoding functions typed, or None where there is none that nasclip can use."""
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
            lib.WebPInitDecoderConfigInternal.argtypes = [ctypes.POINTER(_Config), ctypes.c_int]
            lib.WebPGetFeaturesInternal.argtypes = [ctypes.c_char_p, ctypes.c_size_t,
                                                    ctypes.POINTER(_Features), ctypes.c_int]
            lib.WebPDecode.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(_Config)]
            if lib.WebPInitDecoderConfigInternal(ctypes.byref(_Config()), _ABI):
                log.debug("WebP photos are decoded by %s", path)
                return lib
        except (OSError, AttributeError) as exc:  # not loadable, or not libwebp
            log.debug("cannot use %s for WebP: %s", path, exc)
    log.info("no libwebp to decode WebP at reduced scale with; Pillow decodes WebP photos in full")
    return None


def _candidates() -> list[str]:
    import PIL

    bundled = sorted((Path(PIL.__file__).resolve().parent.parent / "pillow.libs").glob("libwebp-*.so*"))
    system = ctypes.util.find_library("webp")
    return [str(p) for p in bundled] + ([system] if system else [])


def features(data: bytes) -> Features | None:
    """What the file's header says, or None if libwebp is missing or refuses the header."""
    lib = _library()
    if lib is None:
        return None
    found = _Features()
    if lib.WebPGetFeaturesInternal(data, len(data), ctypes.byref(found), _ABI) != _OK:
        return None
    return Features(found.width, found.height, bool(found.has_alpha), bool(found.has_animation))


def reduction(width: int, height: int, min_side: int | None, long_side: int | None = None) -> int:
    """The whole factor to decode at: both sides at least MARGIN × min_side, or the long side at least long_side."""
    if long_side is not None:
        return max(1, max(width, height) // long_side)
    return max(1, int(min(width, height) // (MARGIN * (min_side or 1))))


def decode(data: bytes, found: Features, factor: int) -> Image.Image | None:
    """The picture at 1/factor scale, RGB (RGBA with alpha), or None if libwebp cannot decode it.

    The caller has checked the size against its pixel limit: the buffer is
    allocated here, before libwebp reads a pixel.
    """
    lib = _library()
    if lib is None or found.animated:  # Pillow shows an animation's first frame
        return None
    config = _Config()
    if not lib.WebPInitDecoderConfigInternal(ctypes.byref(config), _ABI):
        return None
    width, height = found.width, found.height
    if factor > 1:
        width, height = -(-width // factor), -(-height // factor)
        config.options.use_scaling = 1
        config.options.scaled_width, config.options.scaled_height = width, height
    channels = 4 if found.alpha else 3
    pixels = np.empty((height, width, channels), dtype=np.uint8)
    output = config.output
    output.colorspace = _MODE_RGBA if found.alpha else _MODE_RGB
    output.is_external_memory = 1
    output.u.RGBA.rgba = pixels.ctypes.data
    output.u.RGBA.stride = width * channels
    output.u.RGBA.size = pixels.nbytes
    # ctypes lets go of the GIL for the call: the decode pool's threads decode side by side.
    if lib.WebPDecode(data, len(data), ctypes.byref(config)) != _OK:
        return None
    mode = "RGBA" if found.alpha else "RGB"
    image = Image.frombuffer(mode, (width, height), pixels, "raw", mode, 0, 1)
    image.info.update(chunks(data))
    return image


def chunks(data: bytes) -> dict[str, bytes]:
    """The EXIF and XMP chunks of a WebP file, under Pillow's info keys ("exif", "xmp"); damage ends the walk."""
    found: dict[str, bytes] = {}
    names = {b"EXIF": "exif", b"XMP ": "xmp"}
    at = _HEADER
    while at + 8 <= len(data):
        fourcc, size = data[at:at + 4], struct.unpack_from("<I", data, at + 4)[0]
        end = at + 8 + size
        if end > len(data):
            break
        if fourcc in names:
            found[names[fourcc]] = data[at + 8:end]
        at = end + (size & 1)  # chunks are padded to an even length
    return found
