"""The one error family of nasclip.

Library code raises these; only entry points (nasclipd, nasclip, nasclip-query)
turn them into a message and an exit code. Messages are written for the NAS
owner: they name the file or setting and say what to change.
"""

from __future__ import annotations


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
