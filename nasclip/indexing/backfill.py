"""Metadata the catalog still owes: read in the background, never by re-encoding a photo.

Photos indexed before nasclip read metadata (schema 3) have no capture time,
camera or position yet; photos with a position from before places were
stored (schema 4) have no place. When nothing waits to be indexed, the
indexer calls ``MetadataBackfill.step()``: it reads ``BATCH`` photos' headers
in the decode pool (no pixels decoded), then looks up ``PLACE_BATCH`` stored
positions in the gazetteer (no file read at all), and hands both to the
store. Every row gets an answer — the file's time where a photo says nothing
or cannot be read, NOWHERE where no city is in reach — so nothing is read twice.

``complete(meta, mtime)`` is what every photo's metadata goes through before
it is stored, at index time and here: the mtime where the photo gives no
capture time (marked as such), and the place of its position.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from typing import Callable

from ..meta.exif import PhotoMeta, mtime_taken
from ..meta.places import Places
from ..store.catalog import FileRow
from ..store.store import Store

log = logging.getLogger("nasclip.indexer")

BATCH = 64  # photo headers read per step
PLACE_BATCH = 2000  # stored positions named per step (~30 µs each)


def complete(meta: PhotoMeta, mtime: float, places: Places) -> PhotoMeta:
    """meta with the file's own time where the photo gives none, and the place of its position.

    Without a gazetteer the place stays unknown, and is looked up in the background once there is one.
    """
    if meta.taken is None:
        meta = replace(meta, taken=mtime_taken(mtime))
    if meta.position is not None and meta.place is None:
        meta = replace(meta, place=places.locate(meta.position))
    return meta


class MetadataBackfill:
    """The catalog's missing metadata, a bounded step at a time (see the module's docstring)."""

    def __init__(self, store: Store, pool: Callable[[], Executor], read_header: Callable[[FileRow], PhotoMeta],
                 patience: Callable[[], float], places: Places) -> None:
        self.store = store
        self.places = places
        self._pool = pool  # the indexer's decode pool, which it may replace
        self._read_header = read_header
        self._patience = patience

    def step(self, read_metadata: bool = True) -> int:
        """Read one batch of headers, or name one batch of places; the number of rows answered (0: done).

        With ``indexer.read_metadata`` off, rows owed a header read get the file's time, read from nothing.
        """
        return self._headers(read_metadata) or self._places()

    def _headers(self, read: bool) -> int:
        rows = self.store.unread_meta(BATCH if read else PLACE_BATCH)
        if not rows:
            return 0
        if not read:
            self.store.record_meta([(row, complete(PhotoMeta(), row.mtime_ns / 1e9, self.places)) for row in rows])
            return len(rows)
        futures = [self._pool().submit(self._read_header, row) for row in rows]
        patience = self._patience()
        found = []
        for row, future in zip(rows, futures):
            try:
                meta = future.result(timeout=patience)
            except FutureTimeout:  # a hung mount: the file's time, as for any unreadable photo
                meta = PhotoMeta()
            found.append((row, complete(meta, row.mtime_ns / 1e9, self.places)))
        self.store.record_meta(found)
        return len(rows)

    def _places(self) -> int:
        rows = self.store.unplaced(PLACE_BATCH)
        places = self.places.get() if rows else None
        if places is None:  # nothing owed, or no gazetteer to name them with (the log said why)
            return 0
        self.store.record_places([(row_id, position, places.locate(position)) for row_id, position in rows])
        log.debug("named the places of %d photos", len(rows))
        return len(rows)
