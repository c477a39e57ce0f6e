"""Settling: files seen changing are held back until they are complete.

A photo still being copied must not be indexed half-written. What counts as
complete depends on what was seen:

- closed after writing (inotify close-write), or renamed into place: size
  and mtime unchanged for a short grace;
- written to but not closed yet: the writer still holds it open; only after
  ``open_limit`` without any change (a writer that never closes, or a lost
  close event) is it taken as it is;
- anything else (created without a write seen, found by a scan, attributes
  changed; every file on a polled share): size and mtime unchanged for
  ``settle_seconds``, and not empty.

Size and mtime are taken when an event arrives and compared only once the
quiet period is over, so waiting files cost nothing in between.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from enum import Enum
from typing import Callable

Key = tuple[str, str]  # (share, relpath)


class Activity(Enum):
    """What an event says about a file."""

    CREATED = "created"      # a new name; a writer may follow
    WRITTEN = "written"      # data written, the writer still has it open
    CLOSED = "closed"        # the writer closed it
    RENAMED = "renamed"      # renamed into place: complete unless written again
    CHANGED = "changed"      # attributes changed, or a scan found it recently modified


@dataclass
class _Entry:
    path: str
    stat: tuple[int, int] | None
    last_change: float
    writing: bool = False
    closed: bool = False


def _stat(path: str) -> tuple[int, int] | None:
    """Size and mtime of a regular file; None for anything else, a symbolic link above all (never followed)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return st.st_size, st.st_mtime_ns


class Settler:
    """Tracks files until they are complete; owned by one thread."""

    def __init__(self, settle_seconds: float, close_grace: float, open_limit: float,
                 clock: Callable[[], float], limit: int = 100_000) -> None:
        self.settle_seconds = settle_seconds
        self.close_grace = min(close_grace, settle_seconds)
        self.open_limit = max(open_limit, settle_seconds)
        self.clock = clock
        self.limit = limit
        self._entries: dict[Key, _Entry] = {}
        self.counts: dict[str, int] = {}  # files waiting, by share (kept in step, for status)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Key) -> bool:
        return key in self._entries

    def saw(self, key: Key, path: str, what: Activity) -> bool:
        """Record an event for the file at path; False if the tracker is full (rescan instead)."""
        now = self.clock()
        current = _stat(path)
        entry = self._entries.get(key)
        if entry is None:
            if len(self._entries) >= self.limit:
                return False
            entry = self._entries[key] = _Entry(path, current, now)
            self.counts[key[0]] = self.counts.get(key[0], 0) + 1
        elif what is not Activity.CHANGED or current != entry.stat:
            # A scan finding the same recent file again must not restart its wait.
            entry.stat, entry.last_change = current, now
        if what is Activity.WRITTEN:
            entry.writing, entry.closed = True, False
        elif what in (Activity.CLOSED, Activity.RENAMED):
            entry.writing, entry.closed = False, True
        return True

    def _drop(self, key: Key) -> None:
        del self._entries[key]
        self.counts[key[0]] -= 1

    def forget(self, key: Key) -> None:
        if key in self._entries:
            self._drop(key)

    def forget_below(self, share: str, folder: str) -> None:
        """Drop every entry below a folder (moved or deleted as a whole)."""
        prefix = folder.rstrip("/") + "/"
        for key in [k for k in self._entries if k[0] == share and (k[1].startswith(prefix) or not folder)]:
            self._drop(key)

    def forget_share(self, share: str) -> None:
        self.forget_below(share, "")

    def _wait(self, entry: _Entry) -> float:
        if entry.closed:
            return self.close_grace
        if entry.writing or not entry.stat or entry.stat[0] == 0:
            return self.open_limit
        return self.settle_seconds

    def ready(self) -> list[tuple[Key, int, int]]:
        """(key, size, mtime_ns) of files now complete; they stop being tracked."""
        now = self.clock()
        done: list[tuple[Key, int, int]] = []
        for key, entry in list(self._entries.items()):
            if now - entry.last_change < self._wait(entry):
                continue
            current = _stat(entry.path)
            if current is None:
                self._drop(key)  # gone again (its delete event does the rest), or not a regular file
            elif current != entry.stat:
                entry.stat, entry.last_change = current, now  # changed without an event: wait again
            else:
                self._drop(key)
                done.append((key, *current))
        return done
