"""Which file names are which kind of media: the one list of the extensions nasclip knows.

The watcher and the scanner decide from a name alone (a scan never opens a
file), so the kind is a matter of the extension, compared ignoring case as SMB
clients do. ``media_extensions()`` (photos, RAW and videos) is what a share
indexes by default (``config.DEFAULT_EXTENSIONS``). This module imports
nothing of nasclip's: the config is built from it.
"""

from __future__ import annotations

import os
from typing import Literal

MediaKind = Literal["photo", "raw", "video"]

# Photos Pillow decodes (with pillow-heif and pillow-jxl-plugin): nasclip/indexing/imaging.py.
PHOTO_EXTENSIONS = (
    ".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff",
    ".heic", ".heif", ".avif", ".jxl",
)
# Camera RAW: Adobe DNG (and phones' ProRAW), Canon CR2/CR3, Nikon NEF, Sony ARW,
# Fujifilm RAF, Olympus/OM ORF, Panasonic RW2, Pentax PEF. All go through LibRaw.
RAW_EXTENSIONS = (".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2", ".pef")
# Videos as phones, cameras and camcorders write them: MP4/M4V/MOV (ISO BMFF, QuickTime),
# Matroska and WebM, AVI, 3GP (older phones), AVCHD's MPEG transport streams (MTS, M2TS).
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".3gp", ".mts", ".m2ts")
# Stills a Live Photo (or a camera's RAW+JPEG) can show: what pairs.py treats as "the JPEG".
STILL_EXTENSIONS = (".jpg", ".jpeg", ".heic", ".heif")

_KINDS: dict[str, MediaKind] = {
    **{e: "photo" for e in PHOTO_EXTENSIONS},
    **{e: "raw" for e in RAW_EXTENSIONS},
    **{e: "video" for e in VIDEO_EXTENSIONS},
}


def extension(name: str | bytes) -> str:
    """The lower-case extension of a file name (str or bytes), with its dot; '' if it has none."""
    text = os.fsdecode(name)
    return os.path.splitext(text)[1].lower()


def kind_of(name: str | bytes) -> MediaKind | None:
    """'photo', 'raw' or 'video' for a file name nasclip can index; None for anything else."""
    return _KINDS.get(extension(name))


def media_extensions(kinds: tuple[MediaKind, ...] = ("photo", "raw", "video")) -> tuple[str, ...]:
    """Every extension of the given kinds, in a stable order (all of them: a share's default)."""
    return tuple(e for e, kind in _KINDS.items() if kind in kinds)
