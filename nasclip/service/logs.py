"""Logging: to the journal with structured fields where possible, else to stderr.

Under systemd (``$JOURNAL_STREAM`` names our stderr) records go to journald's
native protocol — one datagram per record, no libsystemd needed — so that
upper-case extra fields such as ``PHOTO_PATH`` become journal fields
(``journalctl -u nasclip PHOTO_PATH=/srv/photos/x.jpg``). If the journal
socket cannot be reached, stderr lines carry ``<N>`` priority prefixes that
journald understands. Outside systemd, plain timestamped lines.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import struct
import sys
from pathlib import Path

from ..display import printable

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}
# Journal field names: upper case, digits and '_', not starting with '_' (those are trusted fields).
_FIELD_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


class PrintableArgs(logging.Filter):
    """Escapes the text arguments of every record (file names, reasons), never the format string.

    Multi-line messages nasclip writes on purpose (a list of config problems,
    a traceback) keep their lines; only what was filled in is made one line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(_escaped(a) for a in args)
        elif isinstance(args, dict):
            record.args = {k: _escaped(v) for k, v in args.items()}
        return True


def _escaped(value: object) -> object:
    return printable(value) if isinstance(value, (str, bytes, os.PathLike)) else value


def priority(levelno: int) -> int:
    """syslog priority of a logging level."""
    for level in sorted(_PRIORITY, reverse=True):
        if levelno >= level:
            return _PRIORITY[level]
    return 7


class _PrefixFormatter(logging.Formatter):
    """sd-daemon(3) style: '<4>message' lets journald set the priority."""

    def format(self, record: logging.LogRecord) -> str:
        return f"<{priority(record.levelno)}>{super().format(record)}"


def encode_entry(fields: dict[str, str]) -> bytes:
    """One journal entry in the native protocol's datagram format."""
    out = bytearray()
    for name, value in fields.items():
        data = value.encode("utf-8", "surrogateescape")
        if b"\n" in data:  # binary-safe form: name, newline, 64-bit little-endian length, data
            out += name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += name.encode() + b"=" + data + b"\n"
    return bytes(out)


class JournalHandler(logging.Handler):
    """Sends each record to journald as one entry with structured fields.

    Besides MESSAGE and PRIORITY, every upper-case attribute of the record
    (``log.warning(..., extra={"PHOTO_PATH": path})``) becomes a field. When
    the journal cannot take an entry, the record goes to ``fallback``.
    """

    def __init__(self, identifier: str, path: Path = JOURNAL_SOCKET,
                 fallback: logging.Handler | None = None) -> None:
        super().__init__()
        self.identifier = identifier
        self.path = path
        self.fallback = fallback
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def fields(self, record: logging.LogRecord) -> dict[str, str]:
        fields = {
            "MESSAGE": self.format(record),
            "PRIORITY": str(priority(record.levelno)),
            "SYSLOG_IDENTIFIER": self.identifier,
            "LOGGER": record.name,
            "THREAD_NAME": record.threadName or "",
            "CODE_FILE": record.pathname,
            "CODE_LINE": str(record.lineno),
            "CODE_FUNC": record.funcName,
        }
        for key, value in record.__dict__.items():
            if _FIELD_NAME.fullmatch(key) and value is not None:
                fields[key] = os.fsdecode(value) if isinstance(value, (bytes, os.PathLike)) else str(value)
        return fields

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._socket.sendto(encode_entry(self.fields(record)), str(self.path))
        except OSError:
            # No journald (or an entry too large for a datagram): never lose the line.
            if self.fallback is not None:
                self.fallback.handle(record)
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self._socket.close()
        super().close()


def stderr_is_journal() -> bool:
    """True when systemd connected our stderr to the journal ($JOURNAL_STREAM is 'device:inode' of it)."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    try:
        stat = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return expected == f"{stat.st_dev}:{stat.st_ino}"


def setup_logging(level: str = "info", *, identifier: str = "nasclipd",
                  journal_socket: Path = JOURNAL_SOCKET) -> None:
    """Configure logging once, for an entry point; ``level`` applies to nasclip's loggers."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    handler: logging.Handler
    if stderr_is_journal():
        prefixed = logging.StreamHandler(sys.stderr)
        prefixed.setFormatter(_PrefixFormatter("%(name)s: %(message)s"))
        if journal_socket.exists():
            handler = JournalHandler(identifier, journal_socket, fallback=prefixed)
            handler.setFormatter(logging.Formatter("%(message)s"))
        else:
            handler = prefixed
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                                               "%Y-%m-%d %H:%M:%S"))
    # File names come from users: one with a newline must not forge a log line.
    handler.addFilter(PrintableArgs())
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    set_level(level)


def set_level(level: str) -> None:
    """Change the verbosity of nasclip's loggers (also on a config reload)."""
    logging.getLogger("nasclip").setLevel(level.upper())
