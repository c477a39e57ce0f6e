"""Start-up recovery of one model's index: checkpoint generations, vector log, checks, reconcile.

The newest checkpoint that passes its checksum is loaded, else the older
generation (the vector log still holds everything after it, see
Store.checkpoint), else whatever FAISS can still parse of a damaged file.
The vector log is replayed on top; then every vector is checked (finite,
unit length) because a bad one would top every search; and the index is
reconciled with the catalog: ids only in the index are removed, rows whose
vector is nowhere lose their ``vectors`` row and so are encoded again. A
video's ids are its moments (moments.py): one moment missing, and the whole
video is sampled again, its other moments removed with it, so a video is
never searched with part of its frames. Each repair is logged and kept as a
notice for ``status``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import StoreError
from . import checkpoint, moments
from .catalog import Catalog
from .vectors import IndexType, VectorIndex

log = logging.getLogger("nasclip.store")


@dataclass
class Recovered:
    """A model's index after recovery, and what the Store needs to know about it."""

    index: VectorIndex
    trim_to: int | None = None  # vector-log seq the next checkpoint may trim up to
    changes: int = 0            # changes not yet in a checkpoint
    notices: list[str] = field(default_factory=list)

    def notice(self, message: str, *args: object) -> None:
        text = message % args
        self.notices.append(text)
        log.warning("%s", text)


def _load(path: Path, model: str, dim: int, kind: IndexType, threads: int) -> Recovered:
    """The newest generation that passes its checks, else what can be salvaged, else an empty index."""
    damaged: list[Path] = []
    for candidate in (path, checkpoint.previous(path)):
        if not candidate.exists():
            continue
        try:
            index, seq = VectorIndex.load(candidate, dim, kind, threads)
        except StoreError as exc:
            damaged.append(candidate)
            log.error("%s", exc)
            continue
        done = Recovered(index, trim_to=seq)  # trimmed up to it once it is the older generation
        if damaged:
            done.notice("index %s: %s failed its checksum or checks; loaded the older %s instead and replayed the "
                        "vector log, so nothing is re-encoded (damaged file set aside as %s)", model, path.name,
                        candidate.name, checkpoint.set_aside(path).name)
        return done
    # Moved aside before parsing: should FAISS choke on one, the next start does without it.
    asides = [checkpoint.set_aside(p) for p in damaged]
    for aside in asides:
        try:
            index, _ = VectorIndex.load(aside, dim, kind, threads, salvage=True)
        except StoreError:
            continue
        done = Recovered(index)
        done.notice("index %s: no checkpoint passed its checksum; rebuilt from the vector log, the catalog and the "
                    "%d vectors still readable in %s; photos whose vectors are damaged or missing are re-encoded",
                    model, len(index), aside.name)
        return done
    done = Recovered(VectorIndex(dim, kind, threads))
    if damaged:
        done.notice("index %s: no checkpoint is readable (set aside as %s); rebuilt from the vector log and the "
                    "catalog; photos whose vectors are missing are re-encoded", model,
                    ", ".join(a.name for a in asides))
    return done


def recover(catalog: Catalog, path: Path, model: str, dim: int, kind: IndexType, threads: int) -> Recovered:
    """Load, replay, check and reconcile one model's index (writes only the catalog's ``vectors`` rows)."""
    done = _load(path, model, dim, kind, threads)
    index = done.index
    # A checkpoint covers the log up to its seq: only what came later is replayed (a clean
    # restart replays nothing, and does not count covered vectors as unsaved changes).
    logged = {i: blob for i, blob in catalog.logged_vectors(model, after=done.trim_to or 0).items()
              if len(blob) == 4 * dim}
    if logged:
        index.add(np.fromiter(logged, dtype=np.int64, count=len(logged)),
                  np.frombuffer(b"".join(logged.values()), dtype=np.float32))
    damaged = index.damaged_ids()
    if len(damaged):
        index.remove(damaged)
        done.notice("index %s: dropped %d damaged vectors (not unit length); their photos are re-encoded",
                    model, len(damaged))
    known = moments.known_ids(catalog.conn, model)
    present = index.ids()
    strays = np.setdiff1d(present, known)
    lost = np.setdiff1d(known, present)
    if len(lost):
        with catalog.transaction() as tx:
            files = moments.forget(tx, model, lost.tolist())
        # A video with a moment missing is sampled again: its other moments go too.
        strays = np.union1d(strays, present[np.isin(moments.file_ids_of(present), list(files))])
    index.remove(strays)
    if len(logged) or len(strays) or len(lost):
        log.info("recovered index %s: %d vectors replayed from the log, %d stray ids removed, "
                 "%d vectors missing", model, len(logged), len(strays), len(lost))
    done.changes = len(logged) + len(strays) + len(damaged)
    return done
