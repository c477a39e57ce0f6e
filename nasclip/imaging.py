"""Photos to encoder input: decoding real-world files and preprocessing from the manifest.

Decoding is as expensive as encoding unless it is done well, so JPEGs are
decoded at reduced scale in the DCT (``draft``) before anything else touches
the pixels, EXIF orientation included. Every mode a NAS holds (CMYK, 16-bit,
palette, alpha, greyscale) ends up as 8-bit RGB. Preprocessing follows the
model manifest exactly, so the same photo gives the same tensor on every
backend.
"""

from __future__ import annotations

import errno
import struct
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import DecodeError
from .modelspec import ImageSpec

try:  # HEIC/HEIF from phones; part of the default install, optional in principle.
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - only without the dependency
    pillow_heif = None

# Pillow's own bomb guard would fire before ours with a less helpful message;
# nasclip checks the decoded size against indexer.max_pixels itself.
Image.MAX_IMAGE_PIXELS = None


def open_photo(path: Path, min_side: int, max_pixels: int) -> Image.Image:
    """Decode path into an 8-bit RGB image with EXIF orientation applied.

    JPEGs are decoded at the smallest DCT scale that keeps both sides at
    least ``min_side``. Raises DecodeError naming the reason; ``retry`` is
    set for truncated data, which may mean the file is still arriving.
    """
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise DecodeError("file disappeared before it could be read") from None
    except PermissionError:
        raise DecodeError("permission denied (give the nasclip user read access)") from None
    except OSError as exc:
        raise DecodeError(f"cannot open: {exc.strerror or exc}") from None
    with handle:
        try:
            image = _decode(handle, min_side, max_pixels)
        except DecodeError:
            raise
        except UnidentifiedImageError:
            if _is_empty(handle):
                raise DecodeError("empty file (0 bytes)", retry=True) from None
            raise DecodeError("not an image Pillow can read (unknown or corrupt format)") from None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as exc:
            text = str(exc)
            if "truncated" in text or isinstance(exc, EOFError):
                raise DecodeError("truncated (incomplete file, maybe still being copied)", retry=True) from None
            if isinstance(exc, OSError) and exc.errno == errno.EIO:
                raise DecodeError(f"read error from the disk: {exc}") from None
            raise DecodeError(f"corrupt image data: {text or type(exc).__name__}") from None
        except MemoryError:
            raise DecodeError("not enough memory to decode (lower indexer.max_pixels)") from None
    return image



def _is_empty(handle) -> bool:
    handle.seek(0, 2)
    return handle.tell() == 0


def _decode(handle, min_side: int, max_pixels: int) -> Image.Image:
    with warnings.catch_warnings():
        # Pillow warns about odd EXIF and palette transparency; failures raise instead.
        warnings.simplefilter("ignore")
        image = Image.open(handle)
        if image.format == "JPEG":
            # Must come before anything loads the image (exif_transpose included).
            image.draft("RGB", (min_side, min_side))
        width, height = image.size
        if width * height > max_pixels:
            raise DecodeError(
                f"{width}×{height} pixels is more than indexer.max_pixels ({max_pixels}); "
                "raise the setting if this photo is genuine")
        image.load()
        image = ImageOps.exif_transpose(image)
        return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any Pillow mode; transparency is composited onto white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode in ("I", "F"):
        # 16-bit and 32-bit greyscale: scale to 8 bits instead of clipping at 255.
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
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


def resize(image: Image.Image, spec: ImageSpec) -> Image.Image:
    """Resize (and crop) to the model's input size as the manifest says."""
    size = spec.size
    if spec.resize == "squash":
        return image.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
    # crop: shortest side to size, then a centre crop, as torchvision's
    # Resize + CenterCrop do for OpenAI CLIP.
    width, height = image.size
    if width <= height:
        new_w, new_h = size, max(size, int(size * height / width))
    else:
        new_w, new_h = max(size, int(size * width / height)), size
    image = image.resize((new_w, new_h), Image.Resampling.BICUBIC, reducing_gap=3.0)
    left = int(round((new_w - size) / 2.0))
    top = int(round((new_h - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def to_tensor(image: Image.Image, spec: ImageSpec) -> np.ndarray:
    """One preprocessed input (no batch axis) in the manifest's layout and dtype."""
    pixels = np.asarray(image, dtype=np.uint8)
    if spec.channel_order == "BGR":
        pixels = pixels[..., ::-1]
    if spec.dtype == "float32":
        std = np.asarray(spec.std, dtype=np.float32)
        scale = 1.0 / (255.0 * std)
        offset = -np.asarray(spec.mean, dtype=np.float32) / std
        data = pixels.astype(np.float32) * scale + offset
    else:
        data = pixels
    if spec.layout == "NCHW":
        data = data.transpose(2, 0, 1)
    return np.ascontiguousarray(data)


def load_tensor(path: Path, spec: ImageSpec, max_pixels: int) -> np.ndarray:
    """Decode and preprocess one photo for the image encoder."""
    return to_tensor(resize(open_photo(path, spec.size, max_pixels), spec), spec)
