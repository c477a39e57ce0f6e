"""Files that are one picture: a RAW and its JPEG, a Live Photo's still and its clip. From names alone.

Pure functions over the names in one folder; nothing is opened and nothing
is stored (the store and the results decide what to do with the answer).

* **RAW + JPEG**: cameras shooting "RAW+JPEG" write both with the same stem
  in the same folder (``IMG_0042.CR3``, ``IMG_0042.JPG``; Canon and Sony now
  also RAW+HEIF). One shot: the still is shown, the RAW named as its original.
* **Live Photo**: an iPhone writes the still (``IMG_0042.HEIC``, or ``.JPG``
  when set to "most compatible" or exported) and a short ``IMG_0042.MOV`` of
  the moments around it. One photo: the clip is not a video of its own.

Stems are compared ignoring case (``casefold``), since SMB clients and
cameras disagree on it (``img_0042.jpg`` beside ``IMG_0042.CR3``). Where a
stem has several stills (``.JPG`` and ``.HEIC`` both), the one shown is the
first of ``STILL_PREFERENCE``, then by name; the others are left alone.
Names may be ``str`` or ``bytes`` (the catalog keeps paths as bytes); they
come back as given.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .formats import RAW_EXTENSIONS, STILL_EXTENSIONS, extension

Name = TypeVar("Name", str, bytes)

# Which still of a stem is shown: the camera's JPEG first, then HEIF.
STILL_PREFERENCE = STILL_EXTENSIONS
# A Live Photo's clip (QuickTime, as iPhones write and export it).
LIVE_CLIP_EXTENSIONS = (".mov",)


@dataclass(frozen=True)
class RawPair(Generic[Name]):
    """A shot kept as a still and as RAW: the still is shown, the RAWs are its originals."""

    shown: Name
    originals: tuple[Name, ...]


@dataclass(frozen=True)
class LivePhoto(Generic[Name]):
    """A Live Photo: the still that is the photo, and the clip that belongs to it."""

    still: Name
    clip: Name


@dataclass(frozen=True)
class FolderPairs(Generic[Name]):
    """What one folder's names pair up into."""

    raw_pairs: tuple[RawPair[Name], ...] = ()
    live_photos: tuple[LivePhoto[Name], ...] = ()

    def not_indexed(self) -> frozenset[Name]:
        """Names never indexed on their own: Live Photo clips."""
        return frozenset(p.clip for p in self.live_photos)

    def not_shown_alone(self) -> frozenset[Name]:
        """Names a result shows only through their partner (unless the user asks for both): RAW originals, clips."""
        return frozenset(r for pair in self.raw_pairs for r in pair.originals) | self.not_indexed()

    def original_of(self, still: Name) -> tuple[Name, ...]:
        """The RAW originals of a shown still; () if it has none."""
        return next((pair.originals for pair in self.raw_pairs if pair.shown == still), ())


def stem(name: str | bytes) -> str:
    """A file name without its last extension, case folded: what pairs compare."""
    return os.path.splitext(os.fsdecode(name))[0].casefold()


def folder_pairs(names: Iterable[Name]) -> FolderPairs[Name]:
    """The RAW+JPEG pairs and Live Photos among the names of one folder (module doc)."""
    groups: dict[str, list[Name]] = {}
    for name in names:
        groups.setdefault(stem(name), []).append(name)
    raw_pairs: list[RawPair[Name]] = []
    live: list[LivePhoto[Name]] = []
    for _, members in sorted(groups.items()):
        if len(members) < 2:
            continue
        stills = sorted((n for n in members if extension(n) in STILL_EXTENSIONS), key=_preference)
        if not stills:
            continue
        raws = tuple(sorted(n for n in members if extension(n) in RAW_EXTENSIONS))
        clips = sorted(n for n in members if extension(n) in LIVE_CLIP_EXTENSIONS)
        if raws:
            raw_pairs.append(RawPair(stills[0], raws))
        if clips:
            live.append(LivePhoto(stills[0], clips[0]))
    return FolderPairs(tuple(raw_pairs), tuple(live))


def _preference(name: str | bytes) -> tuple[int, str]:
    return STILL_PREFERENCE.index(extension(name)), os.fsdecode(name)
