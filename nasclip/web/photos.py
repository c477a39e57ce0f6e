"""From a catalog id to an open photo the web user may read, or one answer: not found.

The only way from a URL to the file system. The id names a catalog row that
answers searches; its path is built from the share root as configured and
the stored relative path, and opened as likes.ImageTerms opens a query
photo: the folders above the share root are judged as the kernel judges
them (AccessCheck.may_enter), everything below it is walked without
following a symbolic link (fsopen.open_nofollow), with the user's search
permission checked on each folder really opened and the read permission on
the file really opened. Whatever goes wrong — no such row, a row that is
gone, a share no longer configured, a link, a permission, a folder or FIFO
where a photo was — the caller gets the same ``NotFound``, so a photo the
user may not read cannot be told from one that does not exist.
"""

from __future__ import annotations

import mimetypes
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import NasclipError
from ..fsopen import open_nofollow
from ..query.access import AccessCheck, Peer
from ..query.acl import R, X
from ..shares import Shares
from ..store.catalog import decode_path
from ..store.reader import Candidate, CatalogReader

MAX_ID = (1 << 63) - 1


class NotFound(NasclipError):
    """No photo with this id that this user may read (the two are not told apart)."""

    def __init__(self) -> None:
        super().__init__("no such photo")


@dataclass
class OpenPhoto:
    """A photo opened for one request; the caller closes it."""

    fd: int
    st: os.stat_result
    path: str  # as results spell it: below the share root as configured
    row: Candidate
    resolved: str = ""  # the same with the share root's own links resolved (what a walk without links accepts)

    @property
    def media_type(self) -> str:
        kind, _ = mimetypes.guess_type(self.path, strict=False)
        return kind or "application/octet-stream"

    @property
    def etag(self) -> str:
        return f'"{self.st.st_ino:x}-{self.st.st_size:x}-{self.st.st_mtime_ns:x}"'

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "OpenPhoto":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_photo(reader: CatalogReader, shares: Shares, peer: Peer, photo_id: int) -> OpenPhoto:
    """The photo with this id, opened for reading as peer may; NotFound otherwise."""
    if not 0 < photo_id <= MAX_ID:
        raise NotFound()
    row = reader.searchable(photo_id)
    if row is None:
        raise NotFound()
    root = shares.root(row.share)
    if root is None:
        raise NotFound()
    relpath = decode_path(row.relpath)
    access = AccessCheck(peer)
    if not access.may_enter(root):  # the folders above the root (and the root), links followed as the kernel does
        raise NotFound()

    def enter(fd: int, st: os.stat_result) -> None:
        if not access.allows(fd, st, X):
            raise NotFound()
    try:
        # O_NONBLOCK: a FIFO put where a photo was must not hold a worker.
        fd = open_nofollow(relpath, base=str(root), flags=os.O_RDONLY | os.O_NONBLOCK, on_folder=enter)
    except (NasclipError, OSError):  # NotFound, PathRefused (a link, '..'), ENOENT, EACCES, ...
        raise NotFound() from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or not access.allows(fd, st, R):
            raise NotFound()
    except BaseException:
        os.close(fd)
        raise
    return OpenPhoto(fd, st, str(Path(root) / relpath), row, str(Path(os.path.realpath(root)) / relpath))
