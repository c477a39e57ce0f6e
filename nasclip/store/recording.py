"""What ``Store.record`` commits for the indexer's results, and the index changes that follow the commit.

Runs inside the Store's transaction and under its lock. A result whose row
is no longer the one claimed (size or mtime changed, row gone, no longer
pending) is stale and dropped: the row is claimed afresh. Otherwise:

* ``Failed``: the reason, and when to try again (``retry_at``) or never.
* ``Encoded``: the file's vectors — a photo's (or RAW's) one, a video's one
  per moment with its time, or a twin's (a byte copy; a video's every moment,
  under the new row's ids) — go to the vector log, with the ``vectors`` and
  ``moments`` rows saying what the index holds, in the transaction that marks
  the row indexed. Ids the file held and holds no more (a changed video with
  fewer moments now) are removed from the index after the commit.
* ``LiveClip``: a Live Photo's motion clip is marked indexed as a ``clip``
  with a ``vectors`` row and no vector at all: never searched, never queued
  again for the same model.

A still (JPEG, HEIC) that becomes indexed sends a MOV of its stem in its
folder that was indexed as a video back to the indexer: it is the still's
Live Photo clip, which arrived first.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field

import numpy as np

from ..media.formats import STILL_EXTENSIONS, extension, kind_of
from ..media.pairs import LIVE_CLIP_EXTENSIONS
from ..meta.exif import PhotoMeta
from . import catalog as cat
from . import moments
from .catalog import META_COLUMNS
from .changes import Encoded, Failed, LiveClip, Result
from .vectors import VectorIndex

ENCODED_COUNTER = "encoded_total"


@dataclass
class IndexChanges:
    """What the index must do once the transaction has committed."""

    ids: list[int] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    removals: list[int] = field(default_factory=list)

    def add(self, ids: list[int], vectors: np.ndarray) -> None:
        self.ids += ids
        self.vectors += list(vectors)


def record(tx: sqlite3.Connection, results: list[Result], model_id: str, index: VectorIndex,
           now: float) -> tuple[dict[str, int], IndexChanges]:
    """Write the results (module doc); returns counts of what happened and the index changes to make."""
    summary = {"encoded": 0, "reused": 0, "failed": 0, "retry": 0, "stale": 0, "clips": 0}
    changes = IndexChanges()
    for result in results:
        row = result.row
        current = tx.execute("SELECT size, mtime_ns, state FROM files WHERE id=?", (row.id,)).fetchone()
        if current is None or current[:2] != (row.size, row.mtime_ns) or current[2] != cat.PENDING:
            summary["stale"] += 1
        elif isinstance(result, Failed):
            summary[_failed(tx, result, now)] += 1
        elif isinstance(result, LiveClip):
            changes.removals += moments.held_ids(tx, model_id, row.id)
            moments.write_moments(tx, model_id, row.id, ())
            tx.execute("INSERT OR IGNORE INTO vectors(file_id, model_id) VALUES (?, ?)", (row.id, model_id))
            tx.execute("UPDATE files SET fingerprint=?, state='indexed', kind=?, duration=?, error=NULL, attempts=0, "
                       "retry_at=NULL, updated=? WHERE id=?", (result.fingerprint, moments.CLIP, result.duration,
                                                               now, row.id))
            summary["clips"] += 1
        else:
            summary[_encoded(tx, result, model_id, index, now, changes)] += 1
    if summary["encoded"]:
        tx.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) "
                   "DO UPDATE SET value=CAST(value AS INTEGER) + ?",
                   (ENCODED_COUNTER, str(summary["encoded"]), summary["encoded"]))
    return summary, changes


def _failed(tx: sqlite3.Connection, result: Failed, now: float) -> str:
    row = result.row
    if result.retry_at is not None:
        tx.execute("UPDATE files SET fingerprint=?, error=?, attempts=attempts+1, retry_at=?, updated=? WHERE id=?",
                   (result.fingerprint, result.error, result.retry_at, now, row.id))
        return "retry"
    tx.execute("UPDATE files SET fingerprint=?, state='failed', error=?, attempts=attempts+1, retry_at=NULL, "
               "updated=? WHERE id=?", (result.fingerprint, result.error, now, row.id))
    return "failed"


def _encoded(tx: sqlite3.Connection, result: Encoded, model_id: str, index: VectorIndex, now: float,
             changes: IndexChanges) -> str:
    """Write one file's vectors (its own, or a twin's); 'encoded', 'reused' or 'stale' (the twin went meanwhile)."""
    row = result.row
    outcome = "encoded"
    vectors, times = result.vector, result.times
    if vectors is None and result.donor != row.id:
        twin = _donor_vectors(tx, index, model_id, result.donor)
        if twin is None:  # the twin was purged meanwhile: encode after all
            tx.execute("UPDATE files SET fingerprint=NULL WHERE id=?", (row.id,))
            return "stale"
        vectors, times = twin
        outcome = "reused"
    elif vectors is None:
        outcome = "reused"  # its own vectors, unchanged (a file back where it was)
    if vectors is not None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(times) if times else 1, -1)
        held = moments.held_ids(tx, model_id, row.id)
        ids = moments.write_moments(tx, model_id, row.id, times or ())
        if times is None:
            ids = [row.id]
        tx.executemany("INSERT INTO vector_log(file_id, model_id, vector) VALUES (?, ?, ?)",
                       [(i, model_id, v.tobytes()) for i, v in zip(ids, vectors)])
        tx.execute("INSERT OR IGNORE INTO vectors(file_id, model_id) VALUES (?, ?)", (row.id, model_id))
        changes.removals += [i for i in held if i not in set(ids)]
        changes.add(ids, vectors)
    tx.execute("UPDATE files SET fingerprint=?, state='indexed', kind=?, error=NULL, attempts=0, retry_at=NULL, "
               "updated=? WHERE id=?", (result.fingerprint, kind_of(row.relpath) or "photo", now, row.id))
    _record_meta(tx, row.id, result)
    if extension(row.relpath) in STILL_EXTENSIONS:
        _requeue_clips(tx, row.id, row.share, row.relpath)
    return outcome


def _donor_vectors(tx: sqlite3.Connection, index: VectorIndex, model_id: str,
                   donor: int | None) -> tuple[np.ndarray, tuple[float, ...] | None] | None:
    """A twin's vectors in the model's index and, for a video, its moments' times; None if it has none now."""
    if donor is None:
        return None
    held = moments.held_ids(tx, model_id, donor)
    found = [index.get(i) for i in held]
    if not found or any(v is None for v in found):
        return None
    times = tuple(moments.moment_times(tx, model_id, donor)) if held[0] >= moments.MOMENT_BASE else None
    return np.stack(found), times  # type: ignore[arg-type]  # None ruled out above


def _requeue_clips(tx: sqlite3.Connection, still_id: int, share: str, relpath: str) -> None:
    """A MOV beside this still with its stem, indexed as a video, goes back to the indexer (module doc)."""
    folder = os.path.dirname(relpath)
    for clip_id, raw in tx.execute("SELECT id, relpath FROM files WHERE share=? AND stem=? AND kind='video' "
                                   "AND state='indexed' AND id!=?", (share, cat.stem_of(relpath), still_id)).fetchall():
        name = cat.decode_path(raw)
        if os.path.dirname(name) == folder and extension(name) in LIVE_CLIP_EXTENSIONS:
            tx.execute("UPDATE files SET state='pending', retry_at=NULL WHERE id=?", (clip_id,))


def write_meta(tx: sqlite3.Connection, row_id: int, meta: PhotoMeta) -> None:
    """What a file says of itself (capture time, camera, position) and its place, in the catalog's columns."""
    taken, position, place = meta.taken, meta.position, meta.place
    if position is None:
        place = None
    tx.execute(f"UPDATE files SET ({META_COLUMNS}) = (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) WHERE id=?",
               (taken.local if taken else None, taken.offset if taken else None,
                taken.source if taken else None, meta.make, meta.model,
                position.lat if position else None, position.lon if position else None,
                place.city if place else None, place.region if place else None,
                place.country if place else None, row_id))


def _record_meta(tx: sqlite3.Connection, row_id: int, result: Encoded) -> None:
    """The file's capture time, camera, position and length; a copy (donor) takes its twin's."""
    if result.duration is not None:
        tx.execute("UPDATE files SET duration=? WHERE id=?", (result.duration, row_id))
    meta = result.meta
    if meta is None:
        if result.donor is not None and result.donor != row_id:
            tx.execute(f"UPDATE files SET ({META_COLUMNS}, duration) = (SELECT {META_COLUMNS}, duration FROM files "
                       "WHERE id=?) WHERE id=?", (result.donor, row_id))
        return
    write_meta(tx, row_id, meta)
