"""Event interpretation: watchdog events become catalog changes.

Events wait in a bounded queue; beyond it they count as lost, and lost events
(ours or the kernel's) become a rescan of every share. New and written files
are held back until complete (settle.py). Renames become in-place moves,
resolved across shares: one inotify instance watches them all, so a move from
one share to another is one paired event. Deletes wait DELETE_DELAY and become
``gone`` rows only if the share is still healthy then: files vanishing because
a volume is going away are not deletions.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections import deque
from typing import TYPE_CHECKING, Callable

from watchdog import events as ev

from ..store.store import Change, Deleted, Moved, Seen
from .health import DELETE_DELAY
from .inotify import inotify_limit
from .settle import Activity, Settler

if TYPE_CHECKING:
    from .changes import CatalogWrites
    from .health import Health, ShareState, ShareTable
    from .schedule import RequestScan

log = logging.getLogger("nasclip.watcher")


class FoundRecent(ev.FileSystemEvent):
    """Not a watchdog event: a scan found a file modified within the settle time."""

    event_type = "nasclip-found-recent"


class EventInterpreter:
    """Drains the event queue into changes; the event thread's part of the watcher."""

    def __init__(self, table: ShareTable, sink: queue.Queue[tuple[str, ev.FileSystemEvent]], lost: threading.Event,
                 settler: Settler, health: Health, writes: CatalogWrites, request_scan: RequestScan,
                 clock: Callable[[], float]) -> None:
        self.table = table
        self.queue = sink               # filled by the inotify handlers and by scans (FoundRecent)
        self.lost = lost                # events were dropped (kernel or our queue): rescan
        self.settler = settler
        self.health = health
        self.writes = writes
        self.request_scan = request_scan
        self.clock = clock
        self.overflows = 0              # times that was noticed (a burst of overflows may count once)
        self._overflow_report = (float("-inf"), 0)  # when the last warning was logged, overflows then
        self.deletes: deque[tuple[float, Change]] = deque()
        # Files a scan found still arriving, queued for the settler: counted so
        # that status never shows "nothing settling" while some are on their way.
        self._arriving: dict[str, int] = {}
        self.count_lock = threading.Lock()

    # ------------------------------------------------------------------ the queue

    def drain(self, timeout: float) -> list[Change]:
        """Interpret the events queued (waiting up to timeout for the first)."""
        changes: list[Change] = []
        try:
            share, event = self.queue.get(timeout=timeout) if timeout else self.queue.get_nowait()
            self._on_event(share, event, changes)
            for _ in range(10_000):
                share, event = self.queue.get_nowait()
                self._on_event(share, event, changes)
        except queue.Empty:
            pass
        return changes

    def wake(self) -> None:
        """Have a waiting drain() return now."""
        try:
            self.queue.put_nowait((None, None))  # type: ignore[arg-type]
        except queue.Full:
            pass  # it is busy anyway and loops within a moment

    def found_recent(self, state: ShareState, relpaths: list[str]) -> None:
        """Files a scan found being written right now, maybe: they are settled like new ones."""
        name = state.config.name
        for relpath in relpaths:
            with self.count_lock:
                try:
                    self.queue.put_nowait((name, FoundRecent(str(state.config.path / relpath))))
                except queue.Full:
                    self.lost.set()
                    break
                self._arriving[name] = self._arriving.get(name, 0) + 1

    def check_lost(self, now: float) -> None:
        """Lost events become a rescan of every share, and one warning a minute at most."""
        if not self.lost.is_set():
            return
        self.lost.clear()
        self.overflows += 1
        self.request_scan()
        logged_at, logged_count = self._overflow_report
        if now - logged_at >= 60.0:  # one line a minute at most, however big the copy
            self._overflow_report = (now, self.overflows)
            log.warning("file events were lost (inotify queue overflow%s); rescanning every share. If this "
                        "happens often, raise fs.inotify.max_queued_events (now %s)",
                        f", {self.overflows - logged_count} times in the last minute" if logged_count else "",
                        inotify_limit("max_queued_events"))

    def settled(self) -> list[Change]:
        """Files that are complete now (call under count_lock, with the write that follows)."""
        return [Seen(share, relpath, size, mtime_ns) for (share, relpath), size, mtime_ns in self.settler.ready()]

    def settling(self) -> dict[str, int]:
        """Files of each share not yet complete, or found by a scan and on their way to the settler."""
        with self.count_lock:
            return {name: self.settler.counts.get(name, 0) + self._arriving.get(name, 0)
                    for name in self.table.states}

    def forget_share(self, name: str) -> None:
        """A share left or changed in the config: nothing it had pending is applied."""
        self.settler.forget_share(name)
        self.deletes = deque(d for d in self.deletes if d[1].share != name)
        with self.count_lock:
            self._arriving.pop(name, None)

    # ------------------------------------------------------------------ deletes

    def due_deletes(self, now: float) -> list[Change]:
        due: list[Change] = []
        while self.deletes and now - self.deletes[0][0] >= DELETE_DELAY:
            due.append(self.deletes.popleft()[1])
        ready: list[Change] = []
        for name in {c.share for c in due}:
            state = self.table.states.get(name)
            if state is None:
                continue
            if not state.available or self.health.problem(state) is not None:
                # Files vanishing because the volume is going away are not deletions.
                self.health.soon()
                continue
            root = state.config.path
            for change in (c for c in due if c.share == name):
                assert isinstance(change, Deleted)
                if not os.path.lexists(root / change.relpath):
                    ready.append(change)
                elif change.folder:  # replaced by a new folder of that name
                    self.request_scan(name, change.relpath)
                else:  # replaced (e.g. saved as delete + create): settle the new file
                    self.settler.saw((name, change.relpath), str(root / change.relpath), Activity.CHANGED)
        return ready

    def _delete(self, state: ShareState, change: Deleted) -> None:
        state.deleted_at = now = self.clock()
        self.deletes.append((now, change))

    # ------------------------------------------------------------------ events

    def _relative(self, root: str, path: str | bytes) -> str | None:
        """Path below the share root, or None if outside it (or the root itself)."""
        path = os.fsdecode(path)
        if not path.startswith(root + os.sep):
            return None
        return path[len(root) + 1:].replace(os.sep, "/")

    def _saw(self, share: str, relpath: str, what: Activity) -> None:
        path = str(self.table.states[share].config.path / relpath)
        if not self.settler.saw((share, relpath), path, what):
            self.lost.set()  # too many files settling at once: a scan catches up later

    def _on_event(self, share: str, event: ev.FileSystemEvent, changes: list[Change]) -> None:
        if event is None:  # wake() waking us up
            return
        if isinstance(event, FoundRecent):
            with self.count_lock:
                self._on_file_event(share, event, changes)
                if share in self._arriving:
                    self._arriving[share] -= 1
        else:
            self._on_file_event(share, event, changes)

    def _locate(self, path: str | bytes) -> tuple[ShareState, str] | None:
        """The available share holding path, and the path below its root."""
        for state in self.table.states.values():
            rel = self._relative(str(state.config.path), path)
            if rel is not None:
                return (state, rel) if state.available else None
        return None

    def _on_move(self, event: ev.FileSystemEvent, changes: list[Change]) -> None:
        """A rename, resolved against every share: one inotify instance watches them all, so a
        move from one share to another arrives as one paired event, not as a delete and a create."""
        src = self._locate(event.src_path)
        dest = self._locate(event.dest_path) if event.dest_path else None
        folder = event.is_directory
        filters = self.table.filters

        def wanted(loc: tuple[ShareState, str] | None) -> bool:
            if loc is None:
                return False
            pathfilter = filters[loc[0].config.name]
            return pathfilter.folder_wanted(loc[1]) if folder else pathfilter.wanted(loc[1])

        src_ok = wanted(src)
        dest_ok = wanted(dest)
        if src is not None:
            name = src[0].config.name
            if folder:
                self.settler.forget_below(name, src[1])
            else:
                self.settler.forget((name, src[1]))
        if src is not None and dest is not None and src_ok and dest_ok:
            changes.append(Moved(src[0].config.name, src[1], dest[0].config.name, dest[1], folder=folder))
            if folder:
                # Applied now, so the scan of the destination below finds the
                # photos already there instead of taking them for new ones.
                self.writes.apply(changes)
                changes.clear()
        elif src is not None and src_ok:  # moved out of the shares, or into an excluded folder
            self._delete(src[0], Deleted(src[0].config.name, src[1], folder=folder))
        if dest is not None and dest_ok:
            if folder:  # moved in from outside, or files not known yet
                self.request_scan(dest[0].config.name, dest[1])
            else:
                self._saw(dest[0].config.name, dest[1], Activity.RENAMED)

    def _on_file_event(self, share: str, event: ev.FileSystemEvent, changes: list[Change]) -> None:
        state = self.table.states.get(share)
        if state is None or not state.available:
            return  # the rescan when it is back covers whatever happened meanwhile
        if isinstance(event, (ev.DirMovedEvent, ev.FileMovedEvent)):
            if not event.is_synthetic:  # synthetic ones come with a folder move, which carries them
                self._on_move(event, changes)
            return
        root = str(state.config.path)
        src = self._relative(root, event.src_path)
        pathfilter = self.table.filters[share]
        if event.is_directory:
            if isinstance(event, ev.DirDeletedEvent):
                if src is None:  # the root itself
                    self.health.soon()
                elif pathfilter.folder_wanted(src):
                    self.settler.forget_below(share, src)
                    self._delete(state, Deleted(share, src, folder=True))
            elif isinstance(event, ev.DirCreatedEvent) and not event.is_synthetic and src is not None \
                    and pathfilter.folder_wanted(src):
                self.request_scan(share, src)
            return
        if src is None or not pathfilter.wanted(src):
            return
        if isinstance(event, ev.FileDeletedEvent):
            self.settler.forget((share, src))
            self._delete(state, Deleted(share, src))
        elif isinstance(event, ev.FileCreatedEvent):
            if not event.is_synthetic:  # synthetic ones come with a folder, which is scanned
                self._saw(share, src, Activity.CREATED)
        elif isinstance(event, ev.FileModifiedEvent):
            self._saw(share, src, Activity.WRITTEN)
        elif isinstance(event, ev.FileClosedEvent):
            self._saw(share, src, Activity.CLOSED)
        elif isinstance(event, (ev.FileAttribEvent, FoundRecent)):
            self._saw(share, src, Activity.CHANGED)
