"""Image terms ("more like this"): a photo, a RAW or a moment of a video as a query vector.

The file is opened by a walk that follows no symbolic link and checks the
asker's search permission on each folder it really opened, then the read
permission on the opened file: a link (or one swapped in during the walk)
cannot make nasclipd read someone else's file. nasclip-query resolves links
as the asking user first.

When the file is indexed and unchanged its stored vector is used: a photo's
own, or for a video the stored moment nearest the time asked for (the first
one without a time). Otherwise it is decoded within the decode limits and
at most ``query.max_image_decodes`` at once: a photo as the indexer decodes
it, a RAW through its preview or a half-size demosaic, a video's key frame
nearest the time (nasclip/media/video.py ``frame_at``).
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import numpy as np

from ..errors import DecodeError, PathRefused, ProtocolError
from ..fsopen import open_nofollow
from ..indexing.bounded import DecodeLimits, open_bounded
from ..indexing.encoder import Encoder
from ..indexing.imaging import load_tensor, resize, to_tensor
from ..media.formats import kind_of
from ..media.raw import open_raw
from ..media.video import VideoLimits, frame_at
from ..shares import Shares
from ..store import catalog as cat
from ..store.moments import moment_id
from ..store.store import Store
from ..store.vectors import VectorIndex
from .access import AccessCheck
from .acl import R, X
from .protocol import BAD_REQUEST, BUSY, FORBIDDEN, NOT_FOUND

DECODE_WAIT = 1.0  # seconds a --like query waits for a decode slot before it is told 'busy'


class ImageTerms:
    """Query vectors of files the asker names; safe to share across threads."""

    def __init__(self, store: Store, shares: Shares, limits: DecodeLimits, video: VideoLimits,
                 max_decodes: int) -> None:
        self.store = store
        self.shares = shares  # replaced by a config reload, as are the limits
        self.limits = limits
        self.video = video
        self.max_decodes = max_decodes
        self._decodes = threading.BoundedSemaphore(max_decodes)

    def vector(self, image: str, seconds: float | None, access: AccessCheck, index: VectorIndex, model: str,
               encoder: Encoder) -> np.ndarray:
        """The vector of a file the peer may read (module doc); ProtocolError saying why not."""
        if not image.startswith("/"):
            raise ProtocolError(BAD_REQUEST, f"image path must be absolute: {image}")
        refused = ProtocolError(FORBIDDEN, f"cannot use {image}: it does not exist or you may not read it")

        def enter(fd: int, st: os.stat_result) -> None:
            if not access.allows(fd, st, X):
                raise refused
        # O_NONBLOCK keeps a FIFO from holding a worker.
        try:
            fd = open_nofollow(image, flags=os.O_RDONLY | os.O_NONBLOCK, on_folder=enter)
        except PathRefused as exc:
            if access.peer.is_root:
                raise ProtocolError(BAD_REQUEST, f"cannot use {image}: {exc}") from None
            raise refused from None
        except FileNotFoundError:
            if access.peer.is_root:
                raise ProtocolError(NOT_FOUND, f"no such photo: {image}") from None
            raise refused from None
        except OSError as exc:
            if access.peer.is_root:
                raise ProtocolError(BAD_REQUEST, f"cannot open {image}: {exc.strerror}") from None
            raise refused from None
        try:
            st = os.fstat(fd)
            if not access.allows(fd, st, R):
                raise refused
            if not stat.S_ISREG(st.st_mode):
                raise ProtocolError(BAD_REQUEST, f"cannot use {image}: not a regular file")
            if st.st_size == 0:  # also every /proc file, which cannot be read like a photo
                raise ProtocolError(BAD_REQUEST, f"cannot use {image}: the file is empty")
            stored = self._stored(image, st, seconds, index, model)
            if stored is not None:
                return stored
            try:
                tensor = self._decode(fd, st.st_size, image, seconds, encoder)
            except DecodeError as exc:
                raise ProtocolError(BAD_REQUEST, f"cannot use {image} as a query: {exc}") from None
            except OSError as exc:  # e.g. a file that cannot seek
                raise ProtocolError(BAD_REQUEST, f"cannot use {image} as a query: {exc.strerror or exc}") from None
        finally:
            os.close(fd)
        return encoder.encode_images(tensor[None])[0]

    def _stored(self, image: str, st: os.stat_result, seconds: float | None, index: VectorIndex,
                model: str) -> np.ndarray | None:
        """The stored vector of an indexed, unchanged file: its own, or its moment nearest seconds; else None."""
        located = self.shares.locate(Path(self.shares.spelled(image)))
        if located is None:
            return None
        reader = self.store.reader()
        found = reader.indexed_id(located[0], cat.encode_path(located[1]), st.st_size, st.st_mtime_ns)
        if found is None:
            return None
        times = reader.moment_times(model, found)
        if not times:
            return index.get(found)
        wanted = seconds or 0.0
        nearest = min(range(len(times)), key=lambda i: abs(times[i] - wanted))
        return index.get(moment_id(found, nearest))

    def _decode(self, fd: int, size: int, image: str, seconds: float | None, encoder: Encoder) -> np.ndarray:
        """A query file's tensor, within the decode limits and the --like slots."""
        kind = kind_of(image)
        limits = self.video.read if kind == "video" else self.limits
        handle = open_bounded(fd, size, limits)  # an oversized file is refused before it takes a slot
        # Each slot may hold hundreds of MB of pixels for a moment: a few users
        # must not be able to make the daemon as large as they like.
        if not self._decodes.acquire(timeout=DECODE_WAIT):
            raise ProtocolError(BUSY, f"{self.max_decodes} --like photos are being decoded "
                                      "(query.max_image_decodes); try again in a moment")
        spec = encoder.spec.image
        try:
            if kind == "video":
                return to_tensor(resize(frame_at(handle, self.video, spec.size, seconds or 0.0), spec), spec)
            if kind == "raw":
                return to_tensor(resize(open_raw(handle, spec.size, limits).image, spec), spec)
            return load_tensor(handle, spec, limits.max_pixels)
        finally:
            self._decodes.release()
