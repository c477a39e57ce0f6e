"""The state directory: private to the service account, and used by one daemon at a time.

The catalog holds every path and every vector of every user, so nothing in
the state directory may be readable by group or others, whatever the unit's
``StateDirectoryMode=``/``UMask=`` or an owner's umask say: nasclipd checks at
start-up and takes group/other bits away (or refuses, naming the file and the
command, where it cannot). ``models/`` is left alone: model files are public
data, often installed by root, and the folder above is private anyway.

One daemon per state directory: a second one would index into the same
catalog and serve a stale copy of the index. An exclusive ``flock`` on
``<state_dir>/lock`` (holding the owner's pid, for the message) is taken
before the catalog is opened; the kernel drops it when the process dies, so
a kill -9 leaves no stale lock behind.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
from pathlib import Path

from ..errors import StoreError

log = logging.getLogger("nasclip.state")

PRIVATE_UMASK = 0o077
LOCK_NAME = "lock"
PUBLIC_SUBDIRS = ("models",)


def loose_entries(state_dir: Path) -> list[tuple[Path, int]]:
    """(path, mode) of state_dir and everything below it that group or others may use."""
    found = []
    for folder, dirs, files in os.walk(state_dir):
        here = Path(folder)
        if here == state_dir:
            dirs[:] = [d for d in dirs if d not in PUBLIC_SUBDIRS]
        for path in [here] + [here / name for name in files]:
            try:
                st = path.lstat()
            except OSError:
                continue  # gone meanwhile
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o077:
                found.append((path, stat.S_IMODE(st.st_mode)))
    return found


def make_private(state_dir: Path) -> list[str]:
    """Take group/other bits off state_dir and its contents; returns what changed, e.g. 'catalog.db (0644 -> 0600)'.

    StoreError if a file cannot be changed (it belongs to someone else).
    """
    fixed = []
    for path, mode in loose_entries(state_dir):
        try:
            os.chmod(path, mode & 0o700)
        except OSError as exc:
            owner = path.stat().st_uid
            raise StoreError(f"{path} is readable by group or others ({mode:04o}) and cannot be made private "
                             f"({exc.strerror}; it belongs to uid {owner}). Make the state directory the service "
                             f"account's: chown -R {os.getuid()}: {state_dir} && chmod -R go= {state_dir}") from None
        name = "." if path == state_dir else path.relative_to(state_dir).as_posix()
        fixed.append(f"{name} ({mode:04o} -> {mode & 0o700:04o})")
    return fixed


class StateLock:
    """An exclusive lock on a state directory, held while the object lives (or until release())."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, state_dir: Path, what: str = "nasclipd") -> "StateLock":
        """Lock state_dir or raise StoreError naming the pid that holds it."""
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            path = state_dir / LOCK_NAME
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot create the lock file in {state_dir}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StoreError(f"cannot lock {path}: {exc.strerror}") from None
            raise StoreError(f"{state_dir} is in use by nasclipd (pid {holder}); {what} cannot run beside it. "
                             "Stop it first (systemctl stop nasclip), or give this one its own state_dir") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:  # a full disk: the lock holds without the pid in it
            log.debug("could not write the pid into %s: %s", path, exc.strerror)
        return cls(fd, path)

    def release(self) -> None:
        """Unlock; idempotent. The file stays (removing it would race with the next locker)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
