"""Opening a path without following any symbolic link on the way.

``O_NOFOLLOW`` guards only the last component of a path: a folder above it
swapped for a link (``ln -s /srv/photos/bob /srv/photos/alice/l``) would be
followed. So the path is walked one component at a time from ``base``, each
folder opened with ``O_NOFOLLOW`` relative to the one before (``dir_fd``);
what is opened is what was checked, whatever is renamed meanwhile.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Callable

from .errors import NasclipError

_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class LinkRefused(NasclipError):
    """A component of the path is a symbolic link, or a folder in it is not a folder."""


def open_nofollow(path: str | os.PathLike, *, base: str | os.PathLike = "/", flags: int = os.O_RDONLY,
                  on_folder: Callable[[int, os.stat_result], None] | None = None) -> int:
    """An fd of the file at path (below base), opened with no symlink in any component.

    ``base`` itself is trusted (opened as given); every component below it
    is opened with ``O_NOFOLLOW``. ``on_folder(fd, stat)`` is called for
    each folder on the way, base included (it may raise to refuse). Raises
    LinkRefused for a link or a non-folder on the way, OSError as os.open
    does (FileNotFoundError, PermissionError, ...). The caller closes the fd.
    """
    base_text, full = os.fspath(base), os.fspath(path)
    relative = os.path.relpath(full, base_text) if os.path.isabs(full) else full
    parts = [p for p in Path(relative).parts if p not in ("", ".")]
    if not parts or ".." in parts:
        raise LinkRefused(f"{full}: not a file below {base_text}")
    fd = os.open(base_text, _FOLDER_FLAGS)
    try:
        for name in parts[:-1]:
            if on_folder is not None:
                on_folder(fd, os.fstat(fd))
            try:
                child = os.open(name, _FOLDER_FLAGS, dir_fd=fd)
            except OSError as exc:
                _refuse_if_link(exc, name, fd, full)
                raise
            os.close(fd)
            fd = child
        if on_folder is not None:
            on_folder(fd, os.fstat(fd))
        try:
            return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        except OSError as exc:
            _refuse_if_link(exc, parts[-1], fd, full)
            raise
    finally:
        os.close(fd)


def _refuse_if_link(exc: OSError, name: str, parent: int, full: str) -> None:
    """Turn 'it is a link' (ELOOP, or ENOTDIR on a link) into LinkRefused; other errors stand."""
    try:
        st = os.lstat(name, dir_fd=parent)
    except OSError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise LinkRefused(f"{full}: {name} is a symbolic link, which nasclip does not follow") from None
    if isinstance(exc, NotADirectoryError):
        raise LinkRefused(f"{full}: {name} is not a folder") from None
