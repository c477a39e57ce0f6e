"""The one writer of on-disk state: the catalog and the vector index, kept in step.

Every change to the catalog or the index goes through a ``Store`` method,
which runs under one lock and commits one SQLite transaction before touching
the in-memory index. Encoded vectors are committed to the catalog's vector
log in the same transaction that marks their photos indexed, so a crash at
any moment loses nothing encoded: at start-up the last checkpoint is loaded,
the log replayed and the two sides reconciled (ids only in the index are
removed; rows whose vector is nowhere go back to pending). Readers (the query
server) use their own read-only connections and the index's read lock.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from ..config import CATALOG_FILE, INDEX_FOLDER
from ..errors import DiskFull, StoreError
from ..meta.exif import PhotoMeta, PlaceRef, Position
from . import catalog as cat
from . import checkpoint, ocrtext, recording
from .catalog import Catalog, FileRow
from .changes import (  # noqa: F401  (also imported from here)
    Change,
    Deleted,
    Encoded,
    Failed,
    LiveClip,
    Moved,
    Result,
    Seen,
    TextResult,
)
from .reader import CatalogReader
from .recovery import recover
from .space import SpaceMonitor
from .vectors import IndexType, VectorIndex

log = logging.getLogger("nasclip.store")

DISK_RETRY = 5.0  # seconds between checkpoint attempts after one failed


class Store:
    """Catalog plus one vector index per model, behind one lock.

    ``model_id`` is the target model: new vectors are made with it. While
    vectors of an older model cover more photos (a model switch in
    progress), that model keeps answering searches (``serving_model``);
    once every photo has a target vector, the old index is retired.
    """

    def __init__(self, state_dir: Path, model_id: str, dim: int, index_type: IndexType = "flat",
                 search_threads: int = 1, model_folder: Path | None = None) -> None:
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            (state_dir / INDEX_FOLDER).mkdir(exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create state_dir {state_dir}: {exc.strerror}") from None
        self.state_dir = state_dir
        self.model_id = model_id
        self.dim = dim
        self.index_type = index_type
        self.search_threads = search_threads
        self.space = SpaceMonitor(state_dir)
        self.catalog = Catalog(state_dir / CATALOG_FILE, self.space)
        self._lock = threading.RLock()
        self._local = threading.local()
        self._counts: tuple[int, dict[str, int]] | None = None
        self._text_counts: tuple[int, dict[str, int]] | None = None
        self.changes: dict[str, int] = {}
        self.last_checkpoint = time.monotonic()
        self._checkpoint_retry = 0.0  # after a failed checkpoint, not before this (monotonic)
        # Per model: the vector-log seq up to which the next checkpoint may trim the log,
        # i.e. what the generation that will then be the older one covers (None: nothing).
        self._trim_to: dict[str, int | None] = {}
        self.notices: list[str] = []  # what start-up had to repair, for status
        self.indexes: dict[str, VectorIndex] = {}
        try:
            self.catalog.check()
            if self.catalog.fill_stems():
                log.info("catalog: file name stems recorded for the rows of an older schema (RAW+JPEG pairs, "
                         "Live Photos)")
            with self.catalog.transaction():
                self.catalog.set_meta(f"model_dim:{model_id}", str(dim))
                if model_folder is not None:
                    self.catalog.set_meta(f"model_folder:{model_id}", str(model_folder))
            for model in sorted(self.catalog.models() | {model_id}):
                self.indexes[model] = self._recover(model)
            self._requeue_missing()
            self._serving = self._choose_serving()
        except sqlite3.DatabaseError as exc:
            self.catalog.close()
            error = cat.translate(self.catalog.path, exc)
            raise (error if isinstance(error, StoreError) else
                   StoreError(f"{self.catalog.path}: cannot read the catalog: {exc}")) from None

    # ------------------------------------------------------------------ start-up

    def index_path(self, model_id: str | None = None) -> Path:
        """Where the checkpoint of a model's index lives (the older generation beside it, ``.prev``)."""
        model = model_id or self.model_id
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)
        return self.state_dir / INDEX_FOLDER / f"{safe}.faiss"

    @property
    def index(self) -> VectorIndex:
        """The index of the target model."""
        return self.indexes[self.model_id]

    def _recover(self, model: str) -> VectorIndex:
        """Load a model's checkpoint, replay its vector log, check every vector and reconcile (recovery.py)."""
        dim = int(self.catalog.get_meta(f"model_dim:{model}") or self.dim)
        done = recover(self.catalog, self.index_path(model), model, dim, self.index_type, self.search_threads)
        self._trim_to[model] = done.trim_to
        self.changes[model] = done.changes
        self.notices += done.notices
        return done.index

    def _requeue_missing(self) -> None:
        """Indexed rows without a target vector (lost, or a new model) must be encoded."""
        with self.catalog.transaction() as tx:
            queued = tx.execute("UPDATE files SET state='pending', retry_at=NULL WHERE state='indexed' AND id NOT IN "
                                "(SELECT file_id FROM vectors WHERE model_id=?)", (self.model_id,)).rowcount
        if queued:
            log.info("%d photos queued for encoding with model %s", queued, self.model_id)

    # ------------------------------------------------------------------ models

    def _coverage(self) -> dict[str, int]:
        """Live photos with a vector, per model."""
        covered = self.reader().coverage()
        return {model: covered.get(model, 0) for model in self.indexes}

    def _choose_serving(self) -> str:
        if len(self.indexes) == 1:
            return self.model_id
        coverage = self._coverage()
        best = max(coverage, key=lambda m: (coverage[m], m == self.model_id))
        return best

    def serving_model(self) -> str:
        """The model whose vectors answer searches now."""
        return self._serving

    def model_folder(self, model_id: str) -> Path | None:
        """The folder a model was loaded from when it was the target."""
        value = self.reader().meta(f"model_folder:{model_id}")
        return Path(value) if value else None

    def migration(self) -> dict | None:
        """Progress of a model switch: {'from', 'to', 'done', 'total'}, or None."""
        if len(self.indexes) == 1:
            return None
        coverage = self._coverage()
        live = self.reader().searchable_count()
        old = [m for m in self.indexes if m != self.model_id]
        return {"from": old, "to": self.model_id, "done": coverage[self.model_id], "total": live}

    def update_models(self) -> str:
        """Re-choose the serving model; retire old indexes once the target covers every photo."""
        if len(self.indexes) == 1:
            return self._serving
        if not self.reader().any_without_vector(self.model_id):
            with self._lock:
                old = [m for m in self.indexes if m != self.model_id]
                with self.catalog.transaction() as tx:
                    for model in old:
                        tx.execute("DELETE FROM vectors WHERE model_id=?", (model,))
                        tx.execute("DELETE FROM moments WHERE model_id=?", (model,))
                        tx.execute("DELETE FROM vector_log WHERE model_id=?", (model,))
                # Readers see either the switch under way or the switch done, never a mix.
                self.indexes = {self.model_id: self.index}
                self._serving = self.model_id
                for model in old:
                    self.changes.pop(model, None)
                    self.index_path(model).unlink(missing_ok=True)
                    checkpoint.previous(self.index_path(model)).unlink(missing_ok=True)
                    self._trim_to.pop(model, None)
                    log.info("every photo now has a vector of model %s; retired model %s", self.model_id, model)
        else:
            self._serving = self._choose_serving()
        return self._serving

    # ------------------------------------------------------------------ reading

    def reader(self) -> CatalogReader:
        """This thread's read-only view of the catalog (its own connection)."""
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = CatalogReader(cat.connect(self.catalog.path, readonly=True))
            self._local.reader = reader
        return reader

    def counts(self) -> dict[str, int]:
        """Photos by state. Cached until the next write: the status line asks every few
        seconds, and counting a million rows on a NAS CPU is not free."""
        commits = self.catalog.commits
        cached = self._counts
        if cached is not None and cached[0] == commits:
            return dict(cached[1])
        counts = self.reader().counts_by_state()
        self._counts = (commits, counts)
        return dict(counts)

    def get_meta(self, key: str) -> str | None:
        """A small piece of state kept in the catalog (read without the write lock)."""
        return self.reader().meta(key)

    def set_meta(self, key: str, value: str) -> None:
        with self._lock, self.catalog.transaction():
            self.catalog.set_meta(key, value)

    def counter(self, key: str) -> int:
        value = self.reader().meta(key)
        return int(value) if value else 0

    # ------------------------------------------------------------------ writing: watcher side

    def apply(self, changes: Iterable[Change]) -> dict[str, int]:
        """Apply file-system changes in one transaction; returns counts of what happened."""
        summary: dict[str, int] = {}
        displaced: list[int] = []
        now = cat.now()
        with self._lock:
            with self.catalog.transaction():
                for change in changes:
                    if isinstance(change, Seen):
                        what = self.catalog.see(change.share, change.relpath, change.size, change.mtime_ns, now)
                    elif isinstance(change, Deleted):
                        gone = (self.catalog.mark_gone_below(change.share, change.relpath, now) if change.folder
                                else self.catalog.mark_gone(change.share, change.relpath, now))
                        summary["deleted"] = summary.get("deleted", 0) + gone
                        continue
                    else:
                        if change.folder:
                            displaced += self.catalog.move_below(change.share, change.old, change.new_share,
                                                                 change.new, now)
                        else:
                            displaced += self.catalog.move(change.share, change.old, change.new_share,
                                                           change.new, now)
                        what = "moved"
                    summary[what] = summary.get(what, 0) + 1
            self._remove_vectors(displaced)
        return summary

    def _remove_vectors(self, ids: list[int]) -> None:
        """Drop the vectors (index ids: catalog.delete's) of rows already deleted from the catalog (call under
        the lock)."""
        if ids:
            for model, index in self.indexes.items():
                self.changes[model] += index.remove(np.array(ids, dtype=np.int64))

    def retry_unreadable(self, share: str | None = None) -> int:
        """Failed photos that could not be read (permissions, I/O) go back to pending.

        A chmod or chown changes neither size nor mtime, so scans cannot see
        that such a photo became readable; `nasclip scan` asks for this.
        """
        sql = ("UPDATE files SET state='pending', attempts=0, retry_at=NULL WHERE state='failed' AND "
               "(error LIKE 'permission denied%' OR error LIKE 'cannot read%' OR error LIKE 'cannot open%' "
               "OR error LIKE 'read error%')")
        args: tuple = ()
        if share is not None:
            sql += " AND share=?"
            args = (share,)
        with self._lock, self.catalog.transaction() as tx:
            return tx.execute(sql, args).rowcount

    def purge_gone(self, older_than: float) -> int:
        """Forget gone rows (and their vectors) whose deletion is older than older_than."""
        with self._lock:
            with self.catalog.transaction() as tx:
                ids = [r[0] for r in tx.execute("SELECT id FROM files WHERE state='gone' AND gone_at<?",
                                                (older_than,))]
                held = self.catalog.delete(ids)
            self._remove_vectors(held)
        return len(ids)

    # ------------------------------------------------------------------ writing: indexer side

    def pending(self, limit: int, skip: set[int]) -> list[FileRow]:
        """Rows due for indexing, newest new photos first, then retries that are due; without the write lock.

        Each half reads one partial index (files_new, files_retry), so rows
        waiting for a later retry cost nothing however many there are.
        """
        return self.reader().due(limit, skip, cat.now())

    def donor_for(self, row: FileRow, fingerprint: str) -> int | None:
        """A row whose vector this photo can reuse: itself, unchanged, or a moved or copied twin."""
        return self.reader().donor(self.model_id, row.id, fingerprint)

    def record(self, results: list[Result]) -> dict[str, int]:
        """Store the indexer's results in one transaction (recording.py); stale results are dropped.

        A result is stale when its row changed (or vanished) since it was
        claimed; the row is pending again and will be claimed afresh.
        """
        with self._lock:
            with self.catalog.transaction() as tx:
                summary, changes = recording.record(tx, results, self.model_id, self.index, cat.now())
            if changes.removals:
                self.changes[self.model_id] += self.index.remove(np.array(changes.removals, dtype=np.int64))
            if changes.ids:
                self.index.add(np.array(changes.ids, dtype=np.int64), np.stack(changes.vectors))
                self.changes[self.model_id] += len(changes.ids)
        return summary

    def unread_meta(self, limit: int) -> list[FileRow]:
        """Indexed photos whose metadata nasclip has not read yet (indexed before it could)."""
        return self.reader().unread_meta(limit)

    def record_meta(self, found: list[tuple[FileRow, PhotoMeta]]) -> int:
        """What the backfill read of indexed photos; a row changed since it was claimed is left alone."""
        written = 0
        with self._lock, self.catalog.transaction() as tx:
            for row, meta in found:
                current = tx.execute("SELECT size, mtime_ns, state, taken_source FROM files WHERE id=?",
                                     (row.id,)).fetchone()
                if current is None or current != (row.size, row.mtime_ns, cat.INDEXED, None):
                    continue
                recording.write_meta(tx, row.id, meta)
                written += 1
        return written

    def unplaced(self, limit: int) -> list[tuple[int, Position]]:
        """Photos with a GPS position whose place was never looked up (indexed before schema 4)."""
        return self.reader().unplaced(limit)

    def record_places(self, found: list[tuple[int, Position, PlaceRef]]) -> int:
        """Places looked up for positions; a row whose position changed meanwhile is left for the next look."""
        written = 0
        with self._lock, self.catalog.transaction() as tx:
            for row_id, position, place in found:
                written += tx.execute(
                    "UPDATE files SET place_city=?, place_region=?, place_country=? WHERE id=? AND lat=? AND lon=? "
                    "AND place_country IS NULL", (place.city, place.region, place.country, row_id, position.lat,
                                                  position.lon)).rowcount
        return written

    # ------------------------------------------------------------------ writing: the text pass (nasclip/ocr)

    def text_pending(self, limit: int) -> list[FileRow]:
        """Indexed photos whose text has not been read, newest rows first; without the write lock."""
        return self.reader().text_due(limit)

    def text_donor(self, row: FileRow) -> int | None:
        """A moved, copied or duplicate photo with the same content whose text was read already."""
        return self.reader().text_donor(row.id, row.fingerprint) if row.fingerprint else None

    def record_text(self, results: list[TextResult]) -> dict[str, int]:
        """Store the text pass's results in one transaction (ocrtext.py); stale ones are dropped."""
        with self._lock, self.catalog.transaction() as tx:
            return ocrtext.record(tx, results, cat.now())

    def text_counts(self) -> dict[str, int]:
        """Photos by text state (pending, done, failed), cached until the next write like counts()."""
        commits = self.catalog.commits
        cached = self._text_counts
        if cached is None or cached[0] != commits:
            cached = self._text_counts = (commits, self.reader().text_counts())
        return dict(cached[1])

    # ------------------------------------------------------------------ checkpoints

    @property
    def changes_since_checkpoint(self) -> int:
        return sum(self.changes.values())

    def checkpoint(self) -> int:
        """Write every changed index (verified, two generations kept) and trim the vector log; returns bytes written.

        The log is trimmed only up to what the *older* generation covers, so a
        damaged newest file can always be rebuilt from the older one and the
        log. DiskFull leaves the files and the log as they were; the attempt is
        repeated after DISK_RETRY seconds (``checkpoint_due`` waits for it).
        """
        written = 0
        with self._lock:
            try:
                for model, index in self.indexes.items():
                    path = self.index_path(model)
                    if not self.changes.get(model) and path.exists():
                        continue
                    covered = self.catalog.log_high()  # every vector logged so far is in the index
                    written += index.save(path, covered)
                    trim, self._trim_to[model] = self._trim_to.get(model), covered
                    self.changes[model] = 0
                    if trim is not None:
                        with self.catalog.transaction():
                            self.catalog.trim_log(model, trim)
                    log.debug("checkpoint of %s: %d vectors", model, len(index))
            except StoreError as exc:
                self._checkpoint_retry = time.monotonic() + DISK_RETRY
                if isinstance(exc, DiskFull):
                    self.space.full("index", exc)
                raise
            self.space.clear("index")
            self.last_checkpoint = time.monotonic()
        return written

    def checkpoint_due(self, max_seconds: float, max_changes: int) -> bool:
        """True when unsaved changes are old enough or many enough."""
        pending = self.changes_since_checkpoint
        if not pending or time.monotonic() < self._checkpoint_retry:
            return False
        return pending >= max_changes or time.monotonic() - self.last_checkpoint >= max_seconds

    def close(self) -> None:
        """Checkpoint if needed and close the catalog; idempotent."""
        with self._lock:
            if self.catalog is None:
                return
            if self.changes_since_checkpoint:
                try:
                    self.checkpoint()
                except StoreError as exc:
                    log.warning("the index could not be saved at shutdown (%s); nothing is lost: its vectors are "
                                "in the catalog's vector log and are replayed at the next start", exc)
            self.catalog.close()
            self.catalog = None  # type: ignore[assignment]
