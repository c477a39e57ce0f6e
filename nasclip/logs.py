"""Logging: to the journal with structured fields where possible, else to stderr.

Under systemd (``$JOURNAL_STREAM`` set) with systemd-python installed, records
go to the journal directly and extra fields (``PHOTO_PATH``) become journal
fields. Without systemd-python, stderr lines carry ``<N>`` priority prefixes
that journald understands. Outside systemd, plain timestamped lines.
"""

from __future__ import annotations

import logging
import os
import sys

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class _PrefixFormatter(logging.Formatter):
    """sd-daemon(3) style: '<4>message' lets journald set the priority."""

    def format(self, record: logging.LogRecord) -> str:
        level = _PRIORITY.get(record.levelno, 6)
        return f"<{level}>{super().format(record)}"


def setup_logging(level: str = "info", *, identifier: str = "nasclipd") -> None:
    """Configure the root 'nasclip' logger once, for an entry point."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler: logging.Handler
    under_systemd = bool(os.environ.get("JOURNAL_STREAM"))
    if under_systemd:
        try:
            from systemd.journal import JournalHandler  # type: ignore[import-not-found]

            handler = JournalHandler(SYSLOG_IDENTIFIER=identifier)
            handler.setFormatter(logging.Formatter("%(message)s"))
        except ImportError:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(_PrefixFormatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                                               "%Y-%m-%d %H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("nasclip").setLevel(level.upper())
