"""Reconcile scans: the file tree compared with the catalog by size and mtime.

A scan is the source of truth; inotify only makes nasclip prompt. It never
opens a photo: one ``stat`` per file, compared with the catalog row. Files
still being written (mtime within the settle time) are handed back to the
caller instead of being indexed half-copied. A share whose root is missing,
or empty while the catalog knows many photos there, is reported unavailable
and nothing in it is deleted: that is an unmounted volume, not a wipe.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from .config import ShareConfig
from .store import Change, Deleted, Seen, Store

log = logging.getLogger("nasclip.scanner")

# An empty share root hides at least this many known photos: treat as unmounted.
MOUNT_GUARD = 50
BATCH = 1000


class PathFilter:
    """Which paths of a share are photos to index (extensions, exclude globs)."""

    def __init__(self, share: ShareConfig) -> None:
        self.extensions = tuple(e.lower() for e in share.extensions)
        self.patterns = tuple(share.exclude)

    def excluded(self, name: str) -> bool:
        """True if a file or folder with this name is skipped (with everything below it)."""
        return any(fnmatch.fnmatchcase(name, p) for p in self.patterns)

    def wanted(self, relpath: str) -> bool:
        """True for a photo file below the root that no exclude pattern hides."""
        parts = relpath.split("/")
        if not parts[-1].lower().endswith(self.extensions):
            return False
        return not any(self.excluded(p) for p in parts)


@dataclass
class ScanReport:
    """What one scan saw and did."""

    share: str
    files: int = 0
    folders: int = 0
    seconds: float = 0.0
    available: bool = True
    changes: dict[str, int] = field(default_factory=dict)
    recent: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def walk(root: Path, pathfilter: PathFilter, below: str = "",
         on_denied: Callable[[str], None] | None = None) -> Iterator[tuple[str, int, int] | None]:
    """Yield (relpath, size, mtime_ns) per photo below root/below, and None per folder entered."""
    stack = [below.strip("/")]
    while stack:
        rel = stack.pop()
        folder = root / rel if rel else root
        try:
            entries = list(os.scandir(folder))
        except PermissionError:
            if on_denied:
                on_denied(rel or ".")
            continue
        except (FileNotFoundError, NotADirectoryError):
            continue
        yield None
        for entry in entries:
            child = f"{rel}/{entry.name}" if rel else entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not pathfilter.excluded(entry.name):
                        stack.append(child)
                    continue
                if not entry.is_file(follow_symlinks=False) or not pathfilter.wanted(child):
                    continue
                stat = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished between listing and stat
            yield child, stat.st_size, stat.st_mtime_ns


def count_folders(root: Path, pathfilter: PathFilter) -> int:
    """Folders an inotify watch would be needed for (no stat calls: d_type only)."""
    count, stack = 0, [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                count += 1
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False) and not pathfilter.excluded(entry.name):
                        stack.append(Path(entry.path))
        except OSError:
            continue
    return count


def root_available(share: ShareConfig, store: Store) -> bool:
    """False when the root is missing, or empty while the catalog knows many photos there."""
    try:
        if not share.path.is_dir():
            return False
        with os.scandir(share.path) as entries:
            empty = next(entries, None) is None
    except OSError:
        return False
    if not empty:
        return True
    known = store.reader().execute("SELECT COUNT(*) FROM files WHERE share=? AND state!='gone'",
                                   (share.name,)).fetchone()[0]
    return known < MOUNT_GUARD


def scan(share: ShareConfig, store: Store, settle_seconds: float, below: str = "",
         clock: Callable[[], float] = time.time) -> ScanReport:
    """Reconcile share (or the folder below) with the catalog; changes are applied in batches."""
    started = time.monotonic()
    report = ScanReport(share.name)
    if not root_available(share, store):
        report.available = False
        return report
    pathfilter = PathFilter(share)
    known: dict[str, tuple[int, int, str]] = {}
    for relpath, size, mtime_ns, state in store.catalog_rows(share.name, below):
        known[relpath] = (size, mtime_ns, state)
    pending: list[Change] = []
    recent_ns = int((clock() - settle_seconds) * 1e9)

    def flush() -> None:
        for key, n in store.apply(pending).items():
            report.changes[key] = report.changes.get(key, 0) + n
        pending.clear()

    for item in walk(share.path, pathfilter, below, on_denied=report.unreadable.append):
        if item is None:
            report.folders += 1
            continue
        relpath, size, mtime_ns = item
        report.files += 1
        row = known.pop(relpath, None)
        if row is not None and row[:2] == (size, mtime_ns) and row[2] != "gone":
            continue
        if mtime_ns > recent_ns:
            report.recent.append(relpath)  # still being written, maybe: let the watcher settle it
            continue
        pending.append(Seen(share.name, relpath, size, mtime_ns))
        if len(pending) >= BATCH:
            flush()
    if report.files == 0 and not below and len(known) >= MOUNT_GUARD:
        report.available = False  # emptied while we walked: unmounted, not deleted
        pending.clear()
        return report
    # Rows below a folder we could not read are not deleted: we do not know.
    hidden = tuple(f"{rel}/" for rel in report.unreadable if rel != ".")
    if "." not in report.unreadable:
        pending.extend(Deleted(share.name, relpath) for relpath, (_, _, state) in known.items()
                       if state != "gone" and not relpath.startswith(hidden))
    flush()
    report.seconds = time.monotonic() - started
    return report
