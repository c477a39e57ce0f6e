"""Thumbnails: made from the open photo when first asked for, kept on disk within a size.

A thumbnail is made only from a photo the asking user opened through
photos.open_photo (the access check comes first, cached or not), decoded
within the indexer's limits (bounded.open_bounded: file size, pixels from
the header, decode time; JPEGs at reduced scale in the DCT) and with at most
``web.thumb_workers`` decodes at once. It is cached under
``state_dir/thumbs``, named by a hash of the row id and the file's size and
mtime (a changed photo gets a new thumbnail; the old one ages out), written
to a temporary file and renamed, so a reader never sees half of one. When
the cache grows past ``web.thumb_cache_bytes`` the least recently used go
first (a cache hit refreshes the file's mtime). A full disk costs only the
caching: the thumbnail is still served.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..errors import DecodeError, NasclipError
from ..indexing.bounded import DecodeLimits, open_bounded
from ..indexing.imaging import open_photo
from ..media.formats import kind_of
from ..media.raw import open_raw
from ..media.video import VideoLimits, frame_at
from .photos import OpenPhoto

log = logging.getLogger("nasclip.web")

FOLDER = "thumbs"
QUALITY = 80
DECODE_WAIT = 10.0  # seconds a thumbnail waits for a decode slot before the request is told to retry


class ThumbBusy(NasclipError):
    """Every decode slot stayed taken: try again in a moment."""


@dataclass
class CacheStats:
    hits: int = 0
    made: int = 0
    evicted: int = 0
    failed: int = 0


class ThumbCache:
    """Thumbnails on disk, bounded in bytes; thread-safe."""

    def __init__(self, state_dir: Path, max_bytes: int, size: int, limits: DecodeLimits, workers: int,
                 video: VideoLimits | None = None) -> None:
        self.folder = state_dir / FOLDER
        self.max_bytes = max_bytes
        self.size = size
        self.limits = limits
        self.video = video or VideoLimits()
        self._slots = threading.BoundedSemaphore(workers)
        self._lock = threading.Lock()
        self.stats = CacheStats()
        self._bytes: int | None = None  # counted at the first write
        self._write_error = ""

    def key(self, photo: OpenPhoto, at: float | None = None) -> str:
        """The cache name of photo's thumbnail (a video's at a moment): changes with the file and the size."""
        st = photo.st
        text = f"{photo.row.id}:{st.st_size}:{st.st_mtime_ns}:{self.size}"
        if self._video(photo):
            text += f":{round(at or 0.0, 1)}"
        return hashlib.sha256(text.encode()).hexdigest()[:40]

    @staticmethod
    def _video(photo: OpenPhoto) -> bool:
        return kind_of(photo.path) == "video"

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.jpg"

    def get(self, photo: OpenPhoto, at: float | None = None) -> tuple[bytes, bool]:
        """(JPEG bytes of photo's thumbnail, whether it came from the cache); DecodeError, ThumbBusy."""
        key = self.key(photo, at)
        path = self._path(key)
        try:
            data = path.read_bytes()
        except OSError:
            pass
        else:
            if data:
                self.stats.hits += 1
                try:
                    os.utime(path)  # recently used: evicted last
                except OSError:
                    pass
                return data, True
        data = self.make(photo, at)
        self.stats.made += 1
        self._store(path, data)
        return data, False

    def make(self, photo: OpenPhoto, at: float | None = None) -> bytes:
        """A thumbnail of the open photo (a video's frame nearest at), within the decode limits and slots."""
        if not self._slots.acquire(timeout=DECODE_WAIT):
            raise ThumbBusy("thumbnails are being made for others (web.thumb_workers); try again in a moment")
        try:
            kind = kind_of(photo.path)
            handle = open_bounded(photo.fd, photo.st.st_size, self.video.read if kind == "video" else self.limits)
            try:
                if kind == "video":
                    image = frame_at(handle, self.video, self.size // 2, at or 0.0)
                elif kind == "raw":
                    image = open_raw(handle, self.size // 2, self.limits).image
                else:
                    image = open_photo(handle, self.size, self.limits.max_pixels)
            except DecodeError:
                self.stats.failed += 1
                raise
            image.thumbnail((self.size, self.size), Image.Resampling.LANCZOS, reducing_gap=2.0)
            out = io.BytesIO()
            image.save(out, "JPEG", quality=QUALITY, optimize=True)
            return out.getvalue()
        finally:
            self._slots.release()

    def _store(self, path: Path, data: bytes) -> None:
        if self.max_bytes <= 0 or len(data) > self.max_bytes:
            return
        temp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with open(temp, "wb") as out:
                out.write(data)
            os.replace(temp, path)
        except OSError as exc:
            try:
                temp.unlink(missing_ok=True)
            except OSError:
                pass  # its folder could not be made: nothing was written
            if str(exc) != self._write_error:  # a full disk is said once, not for every thumbnail
                self._write_error = str(exc)
                log.warning("cannot cache a thumbnail in %s (served anyway): %s", self.folder, exc)
            return
        self._write_error = ""
        with self._lock:
            if self._bytes is None:
                self._bytes = self._count()
            else:
                self._bytes += len(data)
            if self._bytes > self.max_bytes:
                self._evict()

    def _entries(self) -> list[tuple[float, int, Path]]:
        """(mtime, size, path) of every cached thumbnail."""
        found = []
        try:
            folders = list(os.scandir(self.folder))
        except OSError:
            return []
        for folder in folders:
            if not folder.is_dir(follow_symlinks=False):
                continue
            try:
                with os.scandir(folder.path) as entries:
                    for entry in entries:
                        if entry.name.endswith(".jpg") and entry.is_file(follow_symlinks=False):
                            st = entry.stat(follow_symlinks=False)
                            found.append((st.st_mtime, st.st_size, Path(entry.path)))
            except OSError:
                continue
        return found

    def _count(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def _evict(self) -> None:
        """Remove the least recently used thumbnails until the cache is at 90% of its size (called locked)."""
        entries = sorted(self._entries())
        total = sum(size for _, size, _ in entries)
        target = int(self.max_bytes * 0.9)
        for _, size, path in entries:
            if total <= target:
                break
            try:
                path.unlink()
            except OSError:
                continue
            total -= size
            self.stats.evicted += 1
        self._bytes = total

    def cached_bytes(self) -> int:
        with self._lock:
            if self._bytes is None:
                self._bytes = self._count()
            return self._bytes
