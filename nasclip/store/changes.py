"""What the other parts hand the store: file-system changes from the watcher, results from the indexer.

Plain frozen values, so that the watcher and the indexer never touch the
catalog themselves: ``Store.apply`` and ``Store.record`` are the only writers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np

from ..meta.exif import PhotoMeta
from .catalog import FileRow

# ---------------------------------------------------------------------- changes from the watcher


@dataclass(frozen=True)
class Seen:
    """A file exists with this size and mtime."""

    share: str
    relpath: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Deleted:
    """A file (or, with folder=True, everything below a folder) is gone."""

    share: str
    relpath: str
    folder: bool = False


@dataclass(frozen=True)
class Moved:
    """A file (or folder) was renamed; rows follow without re-encoding."""

    share: str
    old: str
    new_share: str
    new: str
    folder: bool = False


Change = Union[Seen, Deleted, Moved]

# ---------------------------------------------------------------------- results from the indexer


@dataclass(frozen=True)
class Encoded:
    """The file of row ``row`` was encoded (or reuses ``donor``'s vectors).

    A photo (or RAW) has one vector; a video one per sampled moment, row by
    row in ``vector``, with the moments' seconds in ``times`` (in time order).
    """

    row: FileRow
    fingerprint: str
    vector: np.ndarray | None = None
    donor: int | None = None
    meta: PhotoMeta | None = None  # read from the file; None with a donor (its row's is copied)
    times: tuple[float, ...] | None = None  # a video's moments
    duration: float | None = None  # a video's length in seconds


@dataclass(frozen=True)
class LiveClip:
    """The video of ``row`` is a Live Photo's motion beside its still (``still``): not indexed on its own."""

    row: FileRow
    fingerprint: str
    still: str  # the still's path below the share root
    duration: float | None = None


@dataclass(frozen=True)
class Failed:
    """The photo of ``row`` cannot be indexed; with retry_at set, try again then."""

    row: FileRow
    fingerprint: str | None
    error: str
    retry_at: float | None = None


Result = Union[Encoded, LiveClip, Failed]

# ---------------------------------------------------------------------- results of the text pass (nasclip/ocr)


@dataclass(frozen=True)
class TextRead:
    """The photo of ``row`` (as its fingerprint says) was read: its lines, none if it shows no text."""

    row: FileRow
    lines: tuple[str, ...]
    searchable: str  # the folded form the text index holds (nasclip/ocr/textform.py)


@dataclass(frozen=True)
class TextReused:
    """The photo of ``row`` is a copy of ``donor``'s, whose text (or failure) it takes."""

    row: FileRow
    donor: int


@dataclass(frozen=True)
class TextFailed:
    """The photo of ``row`` cannot be read for text; ``error`` says why."""

    row: FileRow
    error: str


TextResult = Union[TextRead, TextReused, TextFailed]
