"""Scan scheduling: which reconcile scan runs next, on the scan thread, at low priority.

Scans run at start-up, on each share's schedule (its interval), when asked
(a folder created or moved in, a share back, `nasclip scan`), and whenever
events may have been lost. Asked-for scans go first, whole shares before
folders; a queued scan of a share or of a folder above covers one below.
The scan thread also checks the health of polled shares, so a hung network
mount holds up scanning, not the events of local disks.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Callable, Protocol

from ..errors import DiskFull
from ..lifecycle import Worker
from ..store.store import Store
from .changes import DISK_RETRY
from .scanner import ScanReport, scan

if TYPE_CHECKING:
    from .events import EventInterpreter
    from .health import Health, ShareState, ShareTable
    from .settle import Settler

log = logging.getLogger("nasclip.watcher")


class RequestScan(Protocol):
    """How the other parts ask for a scan: of one share (or all), optionally of one folder only."""

    def __call__(self, share: str | None = None, below: str = "") -> None: ...


class Scans:
    """The scan requests and the scan thread that runs them."""

    def __init__(self, table: ShareTable, store: Store, settler: Settler, health: Health,
                 events: EventInterpreter, clock: Callable[[], float], on_change: Callable[[], None]) -> None:
        self.table = table
        self.store = store
        self.settler = settler
        self.health = health
        self.events = events
        self.clock = clock
        self.on_change = on_change
        self._requests: dict[tuple[str, str], None] = {}  # ordered set of (share, folder) to scan
        self._lock = threading.Lock()
        self._niced = False
        self.worker = Worker("nasclip-scanner", self.step, log, "scanner")

    def request(self, share: str | None = None, below: str = "") -> None:
        """Ask for a reconcile scan of one share (or all), optionally of one folder only."""
        below = below.strip("/")
        with self._lock:
            for name in ([share] if share else list(self.table.states)):
                parts = below.split("/") if below else []
                # A queued scan of the share or of a folder above covers this one.
                if any((name, "/".join(parts[:i])) in self._requests for i in range(len(parts) + 1)):
                    continue
                self._requests[(name, below)] = None
        self.worker.wake()

    def step(self) -> float:
        """One step of the scan thread: a scan, or a second's wait when none is due."""
        if not self._niced:
            self._niced = True
            try:  # scans are background work: let queries and encoding go first
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
            except (OSError, AttributeError):
                pass
        return 0.0 if self.scan_once() else 1.0

    def _next_request(self) -> tuple[str, str] | None:
        shares = self.table.states
        with self._lock:
            for key in [k for k in self._requests if k[0] not in shares]:
                del self._requests[key]  # a share removed by a reload
            ready = [k for k in self._requests if shares[k[0]].available is not None]
            if not ready:
                return None
            key = next((k for k in ready if not k[1]), ready[0])  # whole shares first
            del self._requests[key]
            for other in [k for k in self._requests if k[0] == key[0] and
                          (not key[1] or k[1].startswith(key[1] + "/"))]:
                del self._requests[other]  # this scan covers it
            return key

    def scan_once(self) -> bool:
        """Run one requested or scheduled scan; False when none was due."""
        now = self.clock()
        self.health.check_due(owned_by_scanner=True, now=now)
        request = self._next_request()
        scheduled = request is None
        if request is None:
            due = [s for s in self.table.states.values() if s.available and now >= s.next_scan]
            if not due:
                return False
            request = (due[0].config.name, "")
        name, below = request
        state = self.table.states.get(name)
        if state is None or not state.available:
            return True  # its return is noticed by the health check, which asks for a scan
        try:
            report = scan(state.config, self.store, self.settler.settle_seconds, below,
                          pathfilter=self.table.filters.get(name), check=lambda: self.health.problem(state))
        except DiskFull:
            # store.space reports it; the scan is simply done again once there is room.
            self.request(name, below)
            self.worker.pause(DISK_RETRY * 5)
            return True
        if not report.available:
            self.health.check_share(state)
            return True
        self._log_unreadable(state, report)
        self.events.found_recent(state, report.recent)  # being written right now, maybe
        if not below:
            state.last_scan = report
            state.next_scan = self.clock() + state.interval
            if scheduled and state.config.watch == "inotify":
                self.health.recheck_watch(state)
        if report.changes:
            log.info("scan of '%s'%s: %d photos in %d folders, %.2f s; %s", name, f"/{below}" if below else "",
                     report.files, report.folders, report.seconds,
                     ", ".join(f"{n} {k}" for k, n in sorted(report.changes.items())))
            self.on_change()
        return True

    def _log_unreadable(self, state: ShareState, report: ScanReport) -> None:
        """Each unreadable folder is logged once (again only after it was readable in between)."""
        for folder, reason in report.unreadable.items():
            if folder not in state.denied:
                state.denied.add(folder)
                log.warning("share '%s': cannot read folder %s (%s); skipping it and keeping what was indexed "
                            "there. Give the nasclip user read access to index it", state.config.name,
                            state.config.path / folder if folder != "." else state.config.path, reason)
        below = report.below
        for folder in list(state.denied):
            if (not below or folder == below or folder.startswith(below + "/")) and folder not in report.unreadable:
                state.denied.discard(folder)
