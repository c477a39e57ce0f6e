"""Camera RAW files for the tests, written here: DNGs from a known picture, by hand.

A DNG is a TIFF: ``write_dng`` stores a picture's pixels as a 16-bit Bayer
mosaic (RGGB, uncompressed, in a SubIFD as cameras and Adobe's converter do),
with the colour tags LibRaw needs to render it (ColorMatrix1 for linear sRGB
primaries, a neutral white balance), and optionally a preview in IFD0: a JPEG
of the picture at any size (what a camera embeds), or an uncompressed RGB
bitmap. The stored values are the picture's sRGB values linearised, so
LibRaw's rendering (its own gamma and brightness) shows the same picture as
the preview, up to tone.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image

# XYZ (D65) to linear sRGB: a DNG's ColorMatrix1 maps XYZ to camera RGB, so with this
# the "camera" sees linear sRGB and LibRaw's output is the picture's own colours.
XYZ_TO_SRGB = ((3.2406, -1.5372, -0.4986), (-0.9689, 1.8758, 0.0415), (0.0557, -0.2040, 1.0570))
SHORT, LONG, RATIONAL, SRATIONAL, BYTE, ASCII = 3, 4, 5, 10, 1, 2
WHITE = 65535


def linear(picture: Image.Image) -> np.ndarray:
    """sRGB pixels of an RGB picture as linear light, 0-1."""
    value = np.asarray(picture.convert("RGB"), dtype=np.float64) / 255
    return np.where(value <= 0.04045, value / 12.92, ((value + 0.055) / 1.055) ** 2.4)


def mosaic(picture: Image.Image) -> np.ndarray:
    """The RGGB Bayer mosaic a sensor would record of picture (even width and height), 16-bit."""
    light = linear(picture)
    height, width = light.shape[:2]
    cfa = np.empty((height, width), dtype=np.float64)
    cfa[0::2, 0::2] = light[0::2, 0::2, 0]
    cfa[0::2, 1::2] = light[0::2, 1::2, 1]
    cfa[1::2, 0::2] = light[1::2, 0::2, 1]
    cfa[1::2, 1::2] = light[1::2, 1::2, 2]
    return np.clip(np.round(cfa * WHITE), 0, WHITE).astype("<u2")


class _Ifd:
    """One IFD's entries, written with their out-of-line data after it."""

    def __init__(self) -> None:
        self.entries: list[tuple[int, int, int, bytes]] = []  # tag, type, count, little-endian value

    def add(self, tag: int, kind: int, values: list[int] | list[float] | bytes | str) -> None:
        if kind == ASCII:
            data = str(values).encode() + b"\0"
            self.entries.append((tag, kind, len(data), data))
        elif kind == BYTE:
            data = bytes(values)  # type: ignore[arg-type]
            self.entries.append((tag, kind, len(data), data))
        elif kind == SHORT:
            self.entries.append((tag, kind, len(values), struct.pack(f"<{len(values)}H", *values)))
        elif kind == LONG:
            self.entries.append((tag, kind, len(values), struct.pack(f"<{len(values)}I", *values)))
        else:
            signed = kind == SRATIONAL
            parts = []
            for v in values:
                parts.append(struct.pack("<ii" if signed else "<II", round(float(v) * 10000), 10000))
            self.entries.append((tag, kind, len(values), b"".join(parts)))

    def size(self) -> int:
        return 2 + 12 * len(self.entries) + 4 + sum(len(d) + len(d) % 2 for *_, d in self.entries if len(d) > 4)

    def pack(self, at: int, following: int) -> bytes:
        """The IFD placed at offset at, its long values right after it; following: the next IFD's offset."""
        self.entries.sort()
        extra = at + 2 + 12 * len(self.entries) + 4
        head, tail = [struct.pack("<H", len(self.entries))], []
        for tag, kind, count, data in self.entries:
            if len(data) <= 4:
                head.append(struct.pack("<HHI", tag, kind, count) + data.ljust(4, b"\0"))
            else:
                head.append(struct.pack("<HHII", tag, kind, count, extra))
                padded = data + b"\0" * (len(data) % 2)
                tail.append(padded)
                extra += len(padded)
        head.append(struct.pack("<I", following))
        return b"".join(head) + b"".join(tail)


def _colour_tags(ifd: _Ifd, make: str, model: str) -> None:
    ifd.add(271, ASCII, make)
    ifd.add(272, ASCII, model)
    ifd.add(50706, BYTE, [1, 4, 0, 0])  # DNGVersion
    ifd.add(50707, BYTE, [1, 1, 0, 0])  # DNGBackwardVersion
    ifd.add(50708, ASCII, f"{make} {model}")  # UniqueCameraModel
    ifd.add(50721, SRATIONAL, [v for row in XYZ_TO_SRGB for v in row])  # ColorMatrix1
    ifd.add(50778, SHORT, [21])  # CalibrationIlluminant1: D65
    ifd.add(50728, RATIONAL, [1.0, 1.0, 1.0])  # AsShotNeutral


def _raw_tags(ifd: _Ifd, cfa: np.ndarray, subfile: int) -> None:
    height, width = cfa.shape
    ifd.add(254, LONG, [subfile])
    ifd.add(256, LONG, [width])
    ifd.add(257, LONG, [height])
    ifd.add(258, SHORT, [16])
    ifd.add(259, SHORT, [1])
    ifd.add(262, SHORT, [32803])  # CFA
    ifd.add(277, SHORT, [1])
    ifd.add(278, LONG, [height])
    ifd.add(279, LONG, [cfa.nbytes])
    ifd.add(33421, SHORT, [2, 2])  # CFARepeatPatternDim
    ifd.add(33422, BYTE, [0, 1, 1, 2])  # CFAPattern: RGGB
    ifd.add(50717, LONG, [WHITE])  # WhiteLevel
    ifd.add(50714, LONG, [0])  # BlackLevel


def _preview_tags(ifd: _Ifd, preview: Image.Image, data: bytes, jpeg: bool) -> None:
    ifd.add(254, LONG, [1])  # a reduced-resolution copy of the raw image
    ifd.add(256, LONG, [preview.width])
    ifd.add(257, LONG, [preview.height])
    ifd.add(258, SHORT, [8, 8, 8])
    ifd.add(259, SHORT, [7 if jpeg else 1])
    ifd.add(262, SHORT, [6 if jpeg else 2])  # YCbCr (JPEG) or RGB
    ifd.add(277, SHORT, [3])
    ifd.add(278, LONG, [preview.height])
    ifd.add(279, LONG, [len(data)])


def write_dng(path: Path, picture: Image.Image, preview: Image.Image | bytes | None = None,
              preview_format: str = "JPEG", orientation: int = 1, make: str = "nasclip", model: str = "Test Camera",
              taken: str | None = None) -> Path:
    """A DNG of picture (its mosaic), with preview (a picture or JPEG bytes; JPEG or "BITMAP") in IFD0 when given.

    orientation is the TIFF Orientation tag of IFD0: the picture is stored as
    given and a reader must turn it (6: 90 degrees clockwise). taken: IFD0's
    DateTime ("2023:06:01 14:05:06").
    """
    cfa = mosaic(picture)
    ifd0, sub = _Ifd(), _Ifd()
    _colour_tags(ifd0, make, model)
    ifd0.add(274, SHORT, [orientation])
    if taken:
        ifd0.add(306, ASCII, taken)
    blobs: list[bytes] = []
    if isinstance(preview, bytes):
        data = preview
        preview = Image.open(io.BytesIO(data))
        _preview_tags(ifd0, preview, data, True)
        ifd0.add(273, LONG, [0])  # placeholders, fixed below
        ifd0.add(330, LONG, [0])
        _raw_tags(sub, cfa, 0)
        sub.add(273, LONG, [0])
        blobs = [data, cfa.tobytes()]
    elif preview is not None:
        if preview_format == "JPEG":
            buffer = io.BytesIO()
            preview.convert("RGB").save(buffer, "JPEG", quality=92)
            data = buffer.getvalue()
        else:
            data = np.asarray(preview.convert("RGB"), dtype=np.uint8).tobytes()
        _preview_tags(ifd0, preview, data, preview_format == "JPEG")
        ifd0.add(273, LONG, [0])  # placeholders, fixed below
        ifd0.add(330, LONG, [0])
        _raw_tags(sub, cfa, 0)
        sub.add(273, LONG, [0])
        blobs = [data, cfa.tobytes()]
    else:
        _raw_tags(ifd0, cfa, 0)
        ifd0.add(273, LONG, [0])
        blobs = [cfa.tobytes()]
    # Layout: header, IFD0, SubIFD, then the image data.
    at0 = 8
    at_sub = at0 + ifd0.size()
    data_at = at_sub + (sub.size() if sub.entries else 0)
    offsets = []
    for blob in blobs:
        offsets.append(data_at)
        data_at += len(blob) + len(blob) % 2
    if preview is not None:
        _set(ifd0, 273, struct.pack("<I", offsets[0]))
        _set(ifd0, 330, struct.pack("<I", at_sub))
        _set(sub, 273, struct.pack("<I", offsets[1]))
    else:
        _set(ifd0, 273, struct.pack("<I", offsets[0]))
    out = [b"II*\x00" + struct.pack("<I", at0), ifd0.pack(at0, 0)]
    if sub.entries:
        out.append(sub.pack(at_sub, 0))
    for blob in blobs:
        out.append(blob + b"\0" * (len(blob) % 2))
    path.write_bytes(b"".join(out))
    return path


def _set(ifd: _Ifd, tag: int, data: bytes) -> None:
    ifd.entries = [(t, k, c, data if t == tag else d) for t, k, c, d in ifd.entries]
