"""Decoding a claimed file by its kind: a photo, a camera RAW, a video, or a Live Photo's clip.

What the decode pool does with a file the indexer opened (indexer.py: from
the share root, no symbolic link followed, checked against its row), read
through a bounded reader of that one descriptor:

* a photo (imaging.py) or a RAW (nasclip/media/raw.py: the camera's own
  preview where it is large enough, else a half-size demosaic) becomes one
  encoder input, with what the file says of itself;
* a video is sampled (nasclip/media/video.py: key frames only, within the
  ``video`` settings and its own time budget, ``video.decode_timeout``) into
  its moments: pictures at the model's input size, their times, and the
  container's capture time, camera and position. The pictures stay 8-bit RGB
  until their encoder batch: a quarter of a tensor's memory (32 frames of a
  224-pixel model take 5 MB, not 19), which matters with two batches of
  videos being prepared ahead of the encoder;
* a MOV beside a still of its stem in its folder (nasclip/media/pairs.py) is
  that still's Live Photo clip when its container carries Apple's Live Photo
  identifier or it is no longer than ``LIVE_MAX_SECONDS``: not indexed on its
  own. A longer MOV that happens to share a still's name is a video.

Every failure is a DecodeError with its reason (``retry`` where the file may
still be arriving), as for photos.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace
from typing import BinaryIO, Union

import numpy as np
from PIL import Image

from ..media.formats import MediaKind, extension
from ..media.pairs import LIVE_CLIP_EXTENSIONS, folder_pairs
from ..media.raw import open_raw
from ..media.video import VideoLimits, read_video_info, sample_video
from ..meta.exif import PhotoMeta
from ..model.spec import ImageSpec
from ..store.catalog import decode_path, stem_of
from ..store.reader import CatalogReader
from .bounded import DecodeLimits
from .imaging import load_tensor, resize, to_tensor

log = logging.getLogger("nasclip.indexer")

# A Live Photo's clip is about 3 s (1.5 s either side of the still); a MOV named like a
# still and longer than this, without Apple's identifier, is a video of its own.
LIVE_MAX_SECONDS = 6.0

Picture = Union[np.ndarray, Image.Image]  # an encoder input, or a video frame at the model's input size


@dataclass
class Decoded:
    """A file ready for the encoder: one picture (a photo, a RAW) or one per moment (a video)."""

    pictures: list[Picture]
    meta: PhotoMeta | None  # None: not read (indexer.read_metadata off)
    times: tuple[float, ...] | None = None  # a video's moments, in seconds
    duration: float | None = None


def tensor(picture: Picture, spec: ImageSpec) -> np.ndarray:
    """The encoder input of a decoded picture (a video frame is preprocessed here, in its batch)."""
    return picture if isinstance(picture, np.ndarray) else to_tensor(picture, spec)


def decode(kind: MediaKind, handle: BinaryIO, spec: ImageSpec, limits: DecodeLimits, video: VideoLimits,
           read_metadata: bool, name: str = "") -> Decoded:
    """The file's pictures and metadata by its kind (module doc); DecodeError says why not."""
    if kind == "video":
        sampled = sample(handle, spec, video, name)
        return sampled if read_metadata else replace(sampled, meta=None)
    if kind == "raw":
        picture = open_raw(handle, spec.size, limits)
        return Decoded([to_tensor(resize(picture.image, spec), spec)], picture.meta if read_metadata else None)
    found: list[PhotoMeta] = []
    pixels = load_tensor(handle, spec, limits.max_pixels, found if read_metadata else None)
    return Decoded([pixels], (found[0] if found else PhotoMeta()) if read_metadata else None)


def sample(handle: BinaryIO, spec: ImageSpec, limits: VideoLimits, name: str = "") -> Decoded:
    """A video's moments, each frame resized to the model's input, with the container's metadata."""
    started = time.monotonic()
    log.debug("sampling video %s", name)
    video = sample_video(handle, limits, spec.size)
    pictures: list[Picture] = [resize(frame.image, spec) for frame in video.frames]
    log.debug("sampled video %s: %d frames kept of %d key frames decoded in %.2f s", name, len(pictures),
              video.decoded, time.monotonic() - started)
    return Decoded(pictures, video.info.meta, tuple(f.time for f in video.frames), video.info.duration)


def still_of_clip(reader: CatalogReader, share: str, relpath: str) -> str | None:
    """The still (path below the share root) whose Live Photo clip this file would be, by names alone; or None."""
    if extension(relpath) not in LIVE_CLIP_EXTENSIONS:
        return None
    folder, own = os.path.split(relpath)
    stem = stem_of(relpath)
    names = {os.path.basename(decode_path(p.relpath)) for p in reader.partners(share, [stem]).get(stem, [])
             if os.path.dirname(decode_path(p.relpath)) == folder}
    live = next((p for p in folder_pairs(names | {own}).live_photos if p.clip == own), None)
    return os.path.join(folder, live.still) if live is not None else None


def clip_length(handle: BinaryIO, limits: VideoLimits) -> float | None:
    """The length of a Live Photo clip, as its container shows it to be one (module doc); None for a video."""
    info = read_video_info(handle, limits)
    if info.content_id or info.duration <= LIVE_MAX_SECONDS:
        return info.duration
    return None
