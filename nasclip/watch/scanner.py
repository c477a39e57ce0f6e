"""Reconcile scans: the file tree compared with the catalog by size and mtime.

A scan is the source of truth; inotify only makes nasclip prompt. It never
opens a photo: one ``lstat`` per file, compared with the catalog row. Files
still being written (mtime within the settle time) are handed back to the
caller to settle instead of being indexed half-copied. A share whose root is
missing, or empty while the catalog knows many photos there, is reported
unavailable and nothing in it is deleted: that is an unmounted volume, not a
wipe. Folders that cannot be read are reported, and their rows are kept.
"""

from __future__ import annotations

import errno
import fnmatch
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ..config import ShareConfig
from ..store.catalog import prefix_range
from ..store.changes import Change, Deleted, Seen
from ..store.store import Store

log = logging.getLogger("nasclip.scanner")

# An empty share root hiding at least this many known photos is an unmounted
# volume, not a share somebody emptied.
MOUNT_GUARD = 50
BATCH = 1000
# Errors that mean "this folder is simply not there (any more)".
_ABSENT = (errno.ENOENT, errno.ENOTDIR)


def _compile(patterns: list[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(fnmatch.translate(p) for p in patterns), re.IGNORECASE)


def _compile_bytes(patterns: list[str]) -> re.Pattern[bytes] | None:
    if not patterns:
        return None
    return re.compile(os.fsencode("|".join(fnmatch.translate(p) for p in patterns)), re.IGNORECASE)


class PathFilter:
    """Which paths of a share are photos to index (extensions, exclude globs).

    A pattern without ``/`` is matched against every part of the path below
    the share root (so ``@eaDir`` hides each such folder and all below it); a
    pattern with ``/`` is matched against the whole relative path. Matching
    ignores case, as SMB clients do.
    """

    def __init__(self, share: ShareConfig) -> None:
        self.extensions = frozenset("." + e.lower().lstrip(".") for e in share.extensions)
        parts = [p for p in share.exclude if "/" not in p]
        paths = [p.strip("/") for p in share.exclude if "/" in p]
        self._part, self._path = _compile(parts), _compile(paths)
        # The same rules on file names as bytes, which is how scans read folders
        # and how the catalog keys paths: an unchanged file is never decoded.
        self.extensions_bytes = frozenset(os.fsencode(e) for e in self.extensions)
        self._part_bytes, self._path_bytes = _compile_bytes(parts), _compile_bytes(paths)

    def excluded_bytes(self, name: bytes, relpath: bytes) -> bool:
        """excluded() for names and paths as bytes."""
        if self._part_bytes is not None and self._part_bytes.match(name):
            return True
        return self._path_bytes is not None and self._path_bytes.match(relpath) is not None

    def excluded(self, name: str, relpath: str | None = None) -> bool:
        """True if a file or folder with this name (at relpath) is skipped, with everything below it."""
        if self._part is not None and self._part.match(name):
            return True
        return self._path is not None and relpath is not None and self._path.match(relpath) is not None

    def photo_name(self, name: str) -> bool:
        """True if a file with this name has a photo extension."""
        return os.path.splitext(name)[1].lower() in self.extensions

    def folder_wanted(self, relpath: str) -> bool:
        """True if no part of this folder path (below the root) is excluded."""
        parts = relpath.split("/")
        return not any(self.excluded(p, "/".join(parts[:i + 1])) for i, p in enumerate(parts))

    def wanted(self, relpath: str) -> bool:
        """True for a photo file below the root that no exclude pattern hides."""
        return self.photo_name(relpath.rsplit("/", 1)[-1]) and self.folder_wanted(relpath)


@dataclass
class ScanReport:
    """What one scan saw and did."""

    share: str
    below: str = ""
    files: int = 0
    folders: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    available: bool = True
    problem: str | None = None
    changes: dict[str, int] = field(default_factory=dict)
    recent: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)  # folder -> reason


def walk(root: Path, pathfilter: PathFilter, below: str = "",
         on_unreadable: Callable[[str, str], None] | None = None) -> Iterator[tuple[bytes, int, int] | None]:
    """Yield (relpath as bytes, size, mtime_ns) per photo below root/below, and None per folder read.

    Paths are bytes (file names on a NAS need not be UTF-8; the catalog keys
    them the same way). Symbolic links are not followed. A folder that cannot
    be listed (or whose files cannot be stat'ed) goes to on_unreadable with
    the reason.
    """
    extensions = pathfilter.extensions_bytes
    excluded = pathfilter.excluded_bytes
    base = os.fsencode(root)
    stack = [os.fsencode(below.strip("/"))]
    while stack:
        rel = stack.pop()
        try:
            with os.scandir(os.path.join(base, rel) if rel else base) as listing:
                entries = list(listing)
        except OSError as exc:
            if exc.errno not in _ABSENT and on_unreadable:
                on_unreadable(os.fsdecode(rel) or ".", exc.strerror or str(exc))
            continue
        yield None
        prefix = rel + b"/" if rel else b""
        denied = False
        for entry in entries:
            name = entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    child = prefix + name
                    if not excluded(name, child):
                        stack.append(child)
                    continue
                dot = name.rfind(b".")
                if dot < 0 or name[dot:].lower() not in extensions:
                    continue
                child = prefix + name
                if excluded(name, child) or not entry.is_file(follow_symlinks=False):
                    continue
                stat = entry.stat(follow_symlinks=False)
            except PermissionError as exc:
                # A folder we may list but not enter (r-- without x): its rows stay.
                if not denied and on_unreadable:
                    on_unreadable(os.fsdecode(rel) or ".", exc.strerror or str(exc))
                denied = True
                continue
            except OSError:
                continue  # vanished between listing and stat
            yield child, stat.st_size, stat.st_mtime_ns


def count_folders(root: Path) -> int:
    """Folders below root, excluded ones too: what a recursive inotify watch needs (d_type only, no stat)."""
    count, stack = 0, [str(root)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                count += 1
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                    except OSError:
                        continue
        except OSError:
            continue
    return count


def known_photos(store: Store, share: str) -> int:
    """Live catalog rows of a share."""
    return store.reader().live_in_share(share)


def unavailable(share: ShareConfig, store: Store, empty_ok: bool = False) -> str | None:
    """Why the share's root cannot be trusted right now, or None when it can.

    Missing, unreadable, or empty while the catalog knows at least
    MOUNT_GUARD photos there: all of these look like an unmounted volume.
    ``empty_ok`` is for a caller that saw the share being emptied (delete events).
    """
    try:
        with os.scandir(share.path) as entries:
            empty = next(entries, None) is None
    except FileNotFoundError:
        return f"{share.path} is missing"
    except NotADirectoryError:
        return f"{share.path} is not a folder"
    except OSError as exc:
        return f"{share.path} cannot be read ({exc.strerror or exc})"
    if not empty or empty_ok:
        return None
    known = known_photos(store, share.name)
    if known >= MOUNT_GUARD:
        return f"{share.path} is empty but {known} photos are known there"
    return None


def live_rows(store: Store, share: str, below: str = "") -> dict[bytes, tuple[int, int]]:
    """(size, mtime_ns) of the share's rows that are not gone, keyed by stored path, optionally below a folder."""
    return store.reader().live_rows(share, prefix_range(below) if below.strip("/") else None)


def _exists(path: bytes | str) -> bool:
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell: do not delete
    return True


def scan(share: ShareConfig, store: Store, settle_seconds: float, below: str = "",
         clock: Callable[[], float] = time.time, pathfilter: PathFilter | None = None,
         check: Callable[[], str | None] | None = None) -> ScanReport:
    """Reconcile share (or the folder below) with the catalog; changes are applied in batches.

    ``check`` says why the share is unavailable (None when it is fine); it
    defaults to ``unavailable`` and runs before the walk and again before
    anything is deleted.
    """
    started, cpu_started = time.monotonic(), time.thread_time()
    below = below.strip("/")
    report = ScanReport(share.name, below)
    check = check or (lambda: unavailable(share, store))
    problem = check()
    if problem is not None:
        report.available, report.problem = False, problem
        return report
    pathfilter = pathfilter or PathFilter(share)
    root = os.fsencode(share.path)
    known = live_rows(store, share.name, below)
    pending: list[Seen] = []
    recent_ns = int((clock() - settle_seconds) * 1e9)

    def count(summary: dict[str, int]) -> None:
        for key, n in summary.items():
            report.changes[key] = report.changes.get(key, 0) + n

    def flush() -> None:
        # Re-checked right before writing: a file deleted while we walked must
        # not come back as a row the indexer then chases.
        count(store.apply([s for s in pending if _exists(os.path.join(root, os.fsencode(s.relpath)))]))
        pending.clear()

    for item in walk(share.path, pathfilter, below, on_unreadable=report.unreadable.__setitem__):
        if item is None:
            report.folders += 1
            continue
        raw, size, mtime_ns = item
        report.files += 1
        if known.pop(raw, None) == (size, mtime_ns):
            continue
        if mtime_ns > recent_ns:
            report.recent.append(os.fsdecode(raw))  # may still be arriving: the watcher settles it
            continue
        pending.append(Seen(share.name, os.fsdecode(raw), size, mtime_ns))
        if len(pending) >= BATCH:
            flush()
    flush()
    # Deletions last, and only while the root still looks mounted: a volume
    # that went away during the walk must not read as "every photo deleted".
    problem = check()
    if problem is not None:
        report.available, report.problem = False, problem
        return report
    if "." not in report.unreadable:
        hidden = tuple(os.fsencode(rel) + b"/" for rel in report.unreadable if rel != ".")
        gone: list[Change] = [Deleted(share.name, os.fsdecode(raw)) for raw in known
                              if not raw.startswith(hidden) and not _exists(os.path.join(root, raw))]
        for start in range(0, len(gone), BATCH):
            count(store.apply(gone[start:start + BATCH]))
    report.seconds = time.monotonic() - started
    report.cpu_seconds = time.thread_time() - cpu_started
    return report
