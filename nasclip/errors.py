"""The one error family of nasclip.

Library code raises these; only entry points (nasclipd, nasclip, nasclip-query)
turn them into a message and an exit code. Messages are written for the NAS
owner: they name the file or setting and say what to change.
"""

from __future__ import annotations

import errno
import sys
from types import ModuleType


class NasclipError(Exception):
    """Base class: something nasclip can explain to a person."""

    exit_code = 1


class ConfigError(NasclipError):
    """The configuration file is missing, malformed or inconsistent."""

    exit_code = 78  # EX_CONFIG: systemd shows it as a configuration problem.


class ModelError(NasclipError):
    """A model folder is missing files, has a malformed manifest, or fails to load."""

    exit_code = 78


class DownloadError(NasclipError):
    """A model file could not be fetched, or what arrived is not what was promised.

    Messages name the file, the URL and what to do (run the command again to
    resume, check the network, install from a folder with --from).
    """


class DecodeError(NasclipError):
    """A photo could not be turned into pixels.

    ``retry`` is True when the file may still be arriving (for example a
    truncated JPEG whose mtime is recent): the indexer tries it again later
    instead of marking it failed for good.
    """

    def __init__(self, message: str, *, retry: bool = False) -> None:
        super().__init__(message)
        self.retry = retry


class StoreError(NasclipError):
    """The catalog or the vector index cannot be opened or written."""


class DiskFull(StoreError):
    """The file system of the state directory is full (ENOSPC, EDQUOT, SQLITE_FULL).

    Not fatal: nothing was replaced or trimmed, the caller keeps what it was
    writing and tries again later; the Store's ``space`` reports the condition.
    """

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class CatalogDamaged(StoreError):
    """The catalog database file is corrupt: the daemon must not run on it."""

    exit_code = 65  # EX_DATAERR: restarting does not help (the unit's RestartPreventExitStatus)


def is_disk_full(exc: BaseException) -> bool:
    """True for 'no space' from the kernel (ENOSPC, EDQUOT) or from SQLite (SQLITE_FULL)."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    sqlite3 = _sqlite3()
    if sqlite3 is not None and isinstance(exc, sqlite3.Error):
        return _sqlite_code(exc) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return False


def is_corrupt(exc: BaseException) -> bool:
    """True for SQLite's 'database disk image is malformed' and 'file is not a database'."""
    sqlite3 = _sqlite3()
    return sqlite3 is not None and isinstance(exc, sqlite3.DatabaseError) and (
        _sqlite_code(exc) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB) or "malformed" in str(exc))


def _sqlite3() -> ModuleType | None:
    """The sqlite3 module if anything imported it: without it, no error can be SQLite's.

    (Not imported here: the query client uses this module and no database.)
    """
    return sys.modules.get("sqlite3")


def _sqlite_code(exc: BaseException) -> int | None:
    """The primary result code (extended codes such as SQLITE_CORRUPT_INDEX carry it in the low byte)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


class ProtocolError(NasclipError):
    """A query request or reply does not follow docs/protocol.md."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.request_id: object = None  # set once the request's id is known


class DaemonUnavailable(NasclipError):
    """The query socket is missing, refuses connections or is not accessible."""

    exit_code = 2


class SocketAccessDenied(DaemonUnavailable):
    """The query socket exists but this user may not connect to it."""

    exit_code = 3


class PathRefused(NasclipError):
    """A path leads through a symbolic link or '..': nasclip opens files without following either."""
