"""A full disk as a reported state: which writes wait for space, since when, said once.

A full file system is not a crash: the catalog rolls back, a checkpoint keeps
the old index and the vector log, the watcher and the indexer hold what they
could not write and try again. This records the condition for ``status`` and
``STATUS=``, and logs one line when it begins and one when it ends — not one
per retry. Each kind of write ("catalog", "index") is tracked apart, because a
small catalog transaction can succeed while a checkpoint still cannot.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

from ..errors import DiskFull

log = logging.getLogger("nasclip.space")


class SpaceMonitor:
    """Disk-full conditions by kind of write; thread-safe."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._lock = threading.Lock()
        self._full: dict[str, tuple[float, DiskFull]] = {}

    def full(self, kind: str, exc: DiskFull) -> None:
        """A write of this kind failed for want of space."""
        with self._lock:
            first = not self._full
            known = kind in self._full
            self._full.setdefault(kind, (time.time(), exc))
        if first:
            log.error("disk is full: %s. Indexing waits and nothing is lost: encoded vectors are kept in "
                      "memory and in the catalog's vector log, the last good index checkpoint stays. Free space "
                      "on %s; nasclip resumes by itself", exc, exc.path or self.state_dir)
        elif not known:
            log.debug("disk still full, now also for the %s: %s", kind, exc)

    def clear(self, kind: str) -> None:
        """A write of this kind succeeded."""
        with self._lock:
            if kind not in self._full:
                return
            del self._full[kind]
            resolved = not self._full
        if resolved:
            log.warning("disk space is back: indexing and checkpoints resume")

    @property
    def is_full(self) -> bool:
        return bool(self._full)

    def status(self) -> dict | None:
        """{'since', 'waiting', 'path', 'error', 'free_bytes'} while some write waits for space, else None."""
        with self._lock:
            if not self._full:
                return None
            since = min(t for t, _ in self._full.values())
            waiting = sorted(self._full)
            exc = next(iter(self._full.values()))[1]
        path = exc.path or str(self.state_dir)
        try:
            free: int | None = shutil.disk_usage(Path(path).parent if not Path(path).is_dir() else path).free
        except OSError:
            free = None
        return {"since": since, "waiting": waiting, "path": path, "error": str(exc), "free_bytes": free}

    def line(self) -> str | None:
        """The STATUS= wording, or None."""
        status = self.status()
        if status is None:
            return None
        return f"DISK FULL at {status['path']}: waiting for space, nothing lost"
