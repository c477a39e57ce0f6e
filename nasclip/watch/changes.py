"""Changes the watcher sends to the catalog, in order, held while the disk is full.

While the disk is full, changes wait in memory (in order) and are retried
every DISK_RETRY seconds; beyond MAX_UNAPPLIED they are dropped for a rescan
of every share once writes work again (scans are the source of truth).
store.space reports the full disk; nothing here logs it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

from ..errors import DiskFull
from ..store.store import Change, Deleted, Store

if TYPE_CHECKING:
    from .health import ShareTable
    from .schedule import RequestScan

log = logging.getLogger("nasclip.watcher")

DISK_RETRY = 2.0
MAX_UNAPPLIED = 100_000


class CatalogWrites:
    """Applies the watcher's changes to the store, keeping them through a full disk."""

    def __init__(self, table: ShareTable, store: Store, clock: Callable[[], float], on_change: Callable[[], None],
                 request_scan: RequestScan) -> None:
        self.table = table
        self.store = store
        self.clock = clock
        self.on_change = on_change
        self.request_scan = request_scan
        self._unapplied: list[Change] = []  # changes the catalog could not take (a full disk)
        self._unapplied_lost = False        # some were dropped: rescan once writes work
        self._retry_at = 0.0

    def apply(self, changes: list[Change]) -> int:
        """Write the changes of shares still configured and available; returns how many were applied."""
        shares = self.table.states
        changes = [c for c in changes if c.share in shares and shares[c.share].available]
        return self.write(changes)

    def write(self, changes: list[Change]) -> int:
        """Apply changes after any kept from a full disk; on DiskFull keep them all, in order, for later."""
        if self._unapplied:
            changes = self._unapplied + changes
            if self.clock() < self._retry_at:
                self._keep(changes)
                return 0
        if not changes:
            return 0
        try:
            self.store.apply(changes)
        except DiskFull:  # store.space reports it; nothing is dropped
            self._keep(changes)
            self._retry_at = self.clock() + DISK_RETRY
            return 0
        self._unapplied = []
        if self._unapplied_lost:
            self._unapplied_lost = False
            self.request_scan()
        self.on_change()
        return len(changes)

    def remove_share(self, name: str) -> int:
        """A share left the config: its rows are marked gone (later, if the disk is full); returns how many."""
        try:
            return self.store.apply([Deleted(name, "", folder=True)]).get("deleted", 0)
        except DiskFull:
            self._keep(self._unapplied + [Deleted(name, "", folder=True)])
            return 0

    def _keep(self, changes: list[Change]) -> None:
        if len(changes) > MAX_UNAPPLIED:
            # Too many to hold: a scan of every share finds them again (scans are the source of truth).
            self._unapplied_lost, changes = True, []
        self._unapplied = changes
