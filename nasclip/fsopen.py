"""Opening a file without following a symbolic link anywhere on its path.

``O_NOFOLLOW`` guards only the last component: ``/srv/photos/alice/l/t1.jpg``
with ``l`` a link to bob's folder opens bob's photo, and checking the folders
by name first (``stat`` of each) judges what the path pointed to then, not
what is opened later. :func:`open_nofollow` walks the path one component at
a time with ``openat(O_PATH | O_NOFOLLOW)``, each step relative to the folder
opened before, so every check is made on the folder actually opened and a
link swapped in between two checks cannot redirect the walk. ``openat2`` with
``RESOLVE_NO_SYMLINKS`` would do it in one call, but needs Linux 5.6 and has
no Python binding.

Used by searches (a query image opened for the asking user) and by the
indexer (a photo opened below its share root).
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Callable

from .errors import PathRefused

FolderCheck = Callable[[int, os.stat_result], None]

_FOLDER_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


def _components(path: str, base: str) -> list[str]:
    """The names to walk from base to path; PathRefused for '..' or an absolute path outside base."""
    if os.path.isabs(path):
        root = base.rstrip("/") or "/"
        if root != "/" and path != root and not path.startswith(root + "/"):
            raise PathRefused(f"{path} is not below {base}")
        path = path[len(root):]
    names = [name for name in path.split("/") if name not in ("", ".")]
    if ".." in names:
        raise PathRefused(f"{path}: nasclip does not resolve '..' in a path; give the path without it")
    return names


def _refuse_link(path: str, name: str) -> PathRefused:
    return PathRefused(f"{path}: {name} is a symbolic link; nasclip does not follow links")


def open_nofollow(path: str, *, base: str = "/", flags: int = os.O_RDONLY,
                  on_folder: FolderCheck | None = None) -> int:
    """A descriptor of the file at path, opened with flags; nothing below base may be a symbolic link.

    path is absolute (and then must lie below base) or relative to base.
    base itself is opened as given, links and all: it is configuration,
    such as a share root. '.' and empty components are skipped; '..' is
    refused, as is a link at any component (PathRefused). on_folder(fd,
    st) is called for base and for every folder below it on the way, in
    order, with an O_PATH descriptor and its fstat: the caller judges what
    was really opened (an O_PATH descriptor reads its attributes through
    ``/proc/self/fd/N``) and may raise to stop the walk. Other failures are
    os.open's OSError (ENOENT, EACCES, ENOTDIR). The caller closes the
    descriptor returned.
    """
    names = _components(path, base)
    fd = os.open(base, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if not names:  # the path is base itself
            return os.open(base, flags | os.O_CLOEXEC)
        if on_folder is not None:
            on_folder(fd, os.fstat(fd))
        for name in names[:-1]:
            child = os.open(name, _FOLDER_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode):
                raise _refuse_link(path, name)
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
            if on_folder is not None:
                on_folder(fd, st)
        try:
            opened = os.open(names[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # what O_NOFOLLOW answers for a link
                raise _refuse_link(path, names[-1]) from None
            raise
        if flags & os.O_PATH and stat.S_ISLNK(os.fstat(opened).st_mode):  # O_PATH opens the link itself
            os.close(opened)
            raise _refuse_link(path, names[-1])
        return opened
    finally:
        os.close(fd)
