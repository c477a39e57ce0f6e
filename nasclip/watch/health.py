"""Share health: is each share there, and can what it shows be trusted.

A share whose root is missing, empty where photos were, or no longer the
mount point it was is unavailable: its photos stay searchable and nothing
there is deleted until it is back, when it is rescanned. An inotify share
whose watch stopped (watchdog stops it when the root is deleted) is watched
again and rescanned.

The event thread checks shares watched with inotify (and the observer); the
scan thread checks polled shares, so a hung network mount holds up scanning,
not the events of local disks.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..config import ShareConfig
from ..store.store import Store
from .scanner import PathFilter, ScanReport, unavailable

if TYPE_CHECKING:
    from .inotify import Watches
    from .schedule import RequestScan

log = logging.getLogger("nasclip.watcher")

DELETE_DELAY = 1.0      # deletes wait this long so a volume going away is not taken for a wipe
HEALTH_EVERY = 1.0     # seconds between checks that roots are there and watches alive
POLL_DEFAULT = 300.0    # scan interval of a polled share that does not set one
INOTIFY_DEFAULT = 3600.0


@dataclass
class ShareState:
    """A share as the watcher sees it."""

    config: ShareConfig
    mode: str = "starting"           # inotify | poll | poll (inotify limit) | poll (inotify failed) | unavailable
    available: bool | None = None    # None until first checked
    problem: str | None = None       # why it is unavailable
    was_mount: bool | None = None    # the root was a mount point when last seen available
    watch: object | None = None
    deleted_at: float = float("-inf")  # when events last said something was deleted here
    root_id: str | None = None       # "st_dev:st_ino" of the root when last seen available
    folders: int = 0                 # folders an inotify watch of it needs
    degraded_logged: bool = False
    next_scan: float = 0.0
    last_scan: ScanReport | None = None
    denied: set[str] = field(default_factory=set)

    @property
    def owned_by_scanner(self) -> bool:
        """Polled shares (maybe network mounts) are checked by the scan thread only."""
        return self.config.watch == "poll"

    @property
    def interval(self) -> float:
        configured = self.config.scan_interval
        if self.config.watch == "poll":
            return configured or POLL_DEFAULT
        if self.mode == "inotify":
            return configured or INOTIFY_DEFAULT
        return min(configured or POLL_DEFAULT, POLL_DEFAULT)  # lost inotify: polling must be prompt


@dataclass
class ShareTable:
    """Every share's state and path filter.

    A config reload replaces both dicts, never mutates them, because the
    scan thread and status() read them concurrently.
    """

    states: dict[str, ShareState]
    filters: dict[str, PathFilter]

    @classmethod
    def of(cls, shares: tuple[ShareConfig, ...]) -> ShareTable:
        return cls({s.name: ShareState(s) for s in shares}, {s.name: PathFilter(s) for s in shares})


def root_identity(path: Path) -> str | None:
    """Device and inode of a share root: a mount point shows another one when unmounted."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_dev}:{st.st_ino}"


class Health:
    """Notices shares going away and coming back, and watches that stopped."""

    def __init__(self, table: ShareTable, store: Store, watches: Watches, lock: threading.RLock,
                 clock: Callable[[], float], request_scan: RequestScan, stopping: Callable[[], bool]) -> None:
        self.table = table
        self.store = store
        self.watches = watches
        self.lock = lock  # share state and watches; both threads check health
        self.clock = clock
        self.request_scan = request_scan
        self.stopping = stopping
        self.next_events = 0.0   # when the event thread checks next
        self.next_scanner = 0.0  # when the scan thread checks next

    def soon(self) -> None:
        """Have the event thread check at its next loop (a root deleted, files vanishing)."""
        self.next_events = 0.0

    def check_due(self, owned_by_scanner: bool, now: float) -> None:
        """The checks of one thread, if HEALTH_EVERY has passed since its last."""
        if owned_by_scanner:
            if now >= self.next_scanner:
                self.next_scanner = now + HEALTH_EVERY
                self.check(owned_by_scanner=True)
        elif now >= self.next_events:
            self.next_events = now + HEALTH_EVERY
            self.check(owned_by_scanner=False)

    def check(self, owned_by_scanner: bool) -> None:
        if not owned_by_scanner:
            self.check_observer()
        for state in list(self.table.states.values()):
            if state.owned_by_scanner == owned_by_scanner:
                self.check_share(state)

    def problem(self, state: ShareState) -> str | None:
        """Why the share cannot be trusted now (missing, empty, unmounted), or None.

        An empty root is fine right after delete events emptied it: an
        unmounted volume sends none (inotify says IN_UNMOUNT, a rename away
        says nothing).
        """
        emptied = self.clock() - state.deleted_at < DELETE_DELAY + 2 * HEALTH_EVERY
        # The very folder we saw before, now empty, was emptied (photos moved or deleted
        # while we were not told); an unmounted volume leaves a different folder behind.
        identity = root_identity(state.config.path)
        if state.root_id is None:
            state.root_id = self.store.get_meta(f"share_root:{state.config.name}")
        same_root = identity is not None and identity == state.root_id
        problem = unavailable(state.config, self.store, empty_ok=emptied or same_root)
        if problem is None and identity is not None and identity != state.root_id:
            state.root_id = identity
            self.store.set_meta(f"share_root:{state.config.name}", identity)
        if problem is None:
            mounted = os.path.ismount(state.config.path)
            if state.was_mount and not mounted:
                return f"{state.config.path} is no longer a mount point"
            state.was_mount = mounted
        return problem

    def check_share(self, state: ShareState) -> None:
        """Notice a share going away, coming back, or losing its watch."""
        problem = self.problem(state)
        with self.lock:
            name = state.config.name
            if problem is not None:
                if state.available is not False:
                    state.available, state.problem, state.mode = False, problem, "unavailable"
                    self.watches.unwatch(state)
                    log.warning("share '%s': %s; its photos stay searchable and nothing there is deleted until "
                                "it is back (is the volume mounted?)", name, problem)
                state.problem = problem
            elif state.available is not True:
                if state.available is False:
                    log.info("share '%s' is back; rescanning", name)
                state.available, state.problem = True, None
                self.watches.watch(state)
                self.request_scan(name)
            elif state.mode == "inotify" and not self.watches.alive(state):
                log.warning("share '%s': its inotify watch stopped; watching again and rescanning", name)
                self.watches.unwatch(state)
                self.watches.watch(state)
                self.request_scan(name)

    def check_observer(self) -> None:
        """A dead observer is replaced, and every inotify share rescanned."""
        with self.lock:
            if self.stopping():
                return
            for name in self.watches.check_observer():
                self.request_scan(name)

    def recheck_watch(self, state: ShareState) -> None:
        """After a full scan: does the inotify watch still fit the limit, or fit again after a fallback?"""
        with self.lock:
            if state.available:
                self.watches.recheck(state)
