"""The watcher: file-system events and reconcile scans become catalog changes.

Two threads with the usual start/loop/stop shape (nasclip.lifecycle.Worker).
The event thread drains watchdog events from a bounded queue, holds new files
back until they are complete (settle.py), turns renames into in-place
moves and deletes into ``gone`` rows, and checks the health of inotify shares.
The scan thread runs reconcile scans at low priority: at start-up, on each
share's schedule, when asked, and whenever events may have been lost; it also
checks polled shares, so a hung network mount holds up scanning, not the
events of local disks.

This module is the facade; the parts live beside it:

- ``inotify``: the watchdog observer, the watches, the kernel's limits, polling
  as the fallback (and the watchdog facts all of it relies on);
- ``health``: each share's state, and whether it is there and can be trusted;
- ``events``: watchdog events become moves, deletes and settled files;
- ``changes``: the changes go to the catalog, held in order while the disk is full;
- ``schedule``: which scan runs next, on the scan thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Callable

from watchdog import events as ev
from watchdog.observers.inotify import InotifyObserver

from ..config import Config, ShareConfig
from ..lifecycle import Worker
from ..store.store import Change, Store
from .changes import CatalogWrites
from .events import EventInterpreter, FoundRecent
from .health import HEALTH_EVERY, Health, ShareState, ShareTable
from .inotify import Watches, inotify_limit, max_user_watches
from .scanner import PathFilter
from .schedule import Scans
from .settle import Settler

# Imported from here by `nasclip doctor` and the tests.
__all__ = ["EVENT_QUEUE", "HEALTH_EVERY", "FoundRecent", "ShareState", "Watcher", "inotify_limit",
           "max_user_watches"]

log = logging.getLogger("nasclip.watcher")

EVENT_QUEUE = 100_000   # events waiting for the event thread; beyond that they count as lost
CLOSE_GRACE = 0.5       # after close-write (or a rename into place) the file must be quiet this long
OPEN_LIMIT = 10.0       # a file written to but never closed is taken as it is after this long unchanged


class Watcher:
    """Keeps the catalog in step with the shares."""

    def __init__(self, store: Store, shares: tuple[ShareConfig, ...], settle_seconds: float,
                 on_change: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.monotonic,
                 queue_size: int = EVENT_QUEUE) -> None:
        self.store = store
        self.on_change = on_change
        self.clock = clock
        self.table = ShareTable.of(shares)
        self.settler = Settler(settle_seconds, CLOSE_GRACE, OPEN_LIMIT, clock)
        self.settle_seconds = settle_seconds
        self._lock = threading.RLock()  # share state and watches; both threads check health
        self._worker = Worker("nasclip-watcher", self._step, log, "watcher", error_pause=1.0)
        self._share_update: tuple[ShareConfig, ...] | None = None  # from a config reload
        sink: queue.Queue[tuple[str, ev.FileSystemEvent]] = queue.Queue(queue_size)
        lost = threading.Event()  # events were dropped (kernel or our queue): rescan
        # The parts ask for scans through request_scan, which the scans part answers.
        self.writes = CatalogWrites(self.table, store, clock, on_change, self.request_scan)
        self.watches = Watches(self.table, sink, lost)
        self.health = Health(self.table, store, self.watches, self._lock, clock, self.request_scan,
                             lambda: self._worker.stopping)
        self.events = EventInterpreter(self.table, sink, lost, self.settler, self.health, self.writes,
                                       self.request_scan, clock)
        self.scans = Scans(self.table, store, self.settler, self.health, self.events, clock, on_change)

    @property
    def shares(self) -> dict[str, ShareState]:
        return self.table.states

    @property
    def filters(self) -> dict[str, PathFilter]:
        return self.table.filters

    @property
    def add_watch(self) -> Callable[[Path, ev.FileSystemEventHandler], object]:
        """The call that adds a watch; a test may replace it to inject ENOSPC."""
        return self.watches.add_watch

    @add_watch.setter
    def add_watch(self, add: Callable[[Path, ev.FileSystemEventHandler], object]) -> None:
        self.watches.add_watch = add

    @property
    def _observer(self) -> InotifyObserver | None:
        return self.watches.observer

    @property
    def settle_seconds(self) -> float:
        return self.settler.settle_seconds

    @settle_seconds.setter
    def settle_seconds(self, seconds: float) -> None:
        """Also set by a config reload."""
        self.settler.settle_seconds = seconds
        self.settler.close_grace = min(CLOSE_GRACE, seconds)
        self.settler.open_limit = max(OPEN_LIMIT, 5 * seconds)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the observer and both threads; returns at once (shares are checked by the threads)."""
        self.watches.start()
        self.request_scan()
        self._worker.start()
        self.scans.worker.start()

    def stop(self) -> None:
        self._worker.stop()
        self.scans.worker.stop()

    def close(self) -> None:
        """Stop both threads and the observer; idempotent."""
        self.stop()
        self._worker.join()
        self.scans.worker.join()
        with self._lock:
            self.watches.close()
        self.watches.uninstall()

    def is_alive(self) -> bool:
        return self._worker.is_alive() and self.scans.worker.is_alive()

    def reconfigure(self, config: Config) -> None:
        """Take on a reloaded config: the settle time at once, the shares at the event thread's next loop."""
        self.settle_seconds = config.indexer.settle_seconds
        self.update_shares(config.shares)

    @property
    def overflows(self) -> int:
        """Times lost events were noticed (a burst of overflows may count once)."""
        return self.events.overflows

    @property
    def kernel_overflows(self) -> int:
        """Inotify queue overflows the kernel reported (watchdog's log lines seen)."""
        return self.watches.kernel_overflows

    def request_scan(self, share: str | None = None, below: str = "") -> None:
        """Ask for a reconcile scan of one share (or all), optionally of one folder only."""
        self.scans.request(share, below)

    def scan_once(self) -> bool:
        """Run one requested or scheduled scan; False when none was due."""
        return self.scans.scan_once()

    # ------------------------------------------------------------------ event thread

    def _step(self) -> float:
        self.loop(timeout=0.2)  # waits for events itself
        return 0.0

    def loop(self, timeout: float = 0.0) -> int:
        """Drain events, settle files, apply due deletes, check health; returns changes applied."""
        if self._share_update is not None:
            self._apply_share_update()
        changes: list[Change] = self.events.drain(timeout)
        now = self.clock()
        self.events.check_lost(now)
        changes += self.events.due_deletes(now)
        self.health.check_due(owned_by_scanner=False, now=now)
        with self.events.count_lock:  # status() sees a settled file either settling or in the catalog
            changes += self.events.settled()
            return self.writes.apply(changes)

    # ------------------------------------------------------------------ config reload

    def update_shares(self, shares: tuple[ShareConfig, ...]) -> None:
        """Take a reloaded share list; the event thread applies it at its next loop()."""
        self._share_update = shares
        self.events.wake()

    def _apply_share_update(self) -> None:
        """Watch and scan new shares, forget removed ones, restart changed ones (event thread only).

        The share dicts are replaced, never mutated, because the scan thread
        and status() read them concurrently.
        """
        wanted, self._share_update = {s.name: s for s in self._share_update or ()}, None
        table = self.table
        with self._lock:
            shares, filters = dict(table.states), dict(table.filters)
            for name, state in table.states.items():
                if wanted.get(name) == state.config:
                    continue
                self.watches.unwatch(state)
                del shares[name], filters[name]
                self.events.forget_share(name)
                if name not in wanted:
                    gone = self.writes.remove_share(name)
                    log.info("share '%s' was removed from the config: %d photos leave the search results",
                             name, gone)
            added = [wanted[n] for n in wanted if n not in shares]
            for share in added:
                shares[share.name] = ShareState(share)
                filters[share.name] = PathFilter(share)
            table.states, table.filters = shares, filters
        for share in added:
            log.info("share '%s' (%s, watch: %s): checking and scanning", share.name, share.path, share.watch)
            self.request_scan(share.name)
        self.health.next_events = self.health.next_scanner = 0.0  # new shares are checked (and watched) at once

    # ------------------------------------------------------------------ status

    def status(self) -> list[dict]:
        """Per-share status for `nasclip status`."""
        out = []
        now = self.clock()
        settling = self.events.settling()
        for state in self.shares.values():
            scan_info = None
            if state.last_scan is not None:
                scan_info = {"files": state.last_scan.files, "folders": state.last_scan.folders,
                             "seconds": round(state.last_scan.seconds, 3),
                             "cpu_seconds": round(state.last_scan.cpu_seconds, 3)}
            out.append({"name": state.config.name, "path": str(state.config.path), "watch": state.mode,
                        "available": state.available is not False, "problem": state.problem,
                        "last_scan": scan_info,
                        "next_scan_in": round(max(0.0, state.next_scan - now), 1) if state.available else None,
                        "settling": settling[state.config.name],
                        "unreadable_folders": sorted(state.denied)})
        return out
