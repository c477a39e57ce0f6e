"""The vector index: FAISS ``IndexIDMap2`` keyed by catalog row id, one per model.

FAISS crashes when ``add_with_ids`` or ``remove_ids`` run during a
``search``, so every call goes through a readers–writer lock: searches run
side by side, changes run alone. The index lives in memory; ``save`` writes
an atomic checkpoint (temp file written and verified, see checkpoint.py; the
current file becomes the previous generation; rename, directory fsync), so the
files on disk are always whole indexes, old or new. What a checkpoint lacks
after a crash is replayed from the catalog's vector log (see store.py).
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any, Iterator, Literal

import faiss
import numpy as np

from ..errors import StoreError
from . import checkpoint

IndexType = Literal["flat", "fp16", "sq8"]
BLAS_FROM_QUERIES = 4  # where one matrix product beats a pass per query (measured at 512 and 768 dims)


class ReadWriteLock:
    """Many readers or one writer; a waiting writer blocks new readers so it cannot starve."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting_writers += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


# sq8 learns each dimension's range from real vectors; until this many exist
# they are kept exactly (flat), then quantised in one go.
SQ8_TRAIN_AT = 4096
# Stored vectors are unit length; one further off than this (bit rot, a bad
# write) would rank above every real match, so it is dropped and re-encoded.
# sq8's per-dimension rounding moves a norm by well under 1 %.
NORM_TOLERANCE = 0.02


def _new_index(dim: int, kind: IndexType, training: np.ndarray | None = None) -> Any:
    """An empty IndexIDMap2 of the kind; sq8 without training data starts flat."""
    # Any, here and for the index kept: faiss's bundled stubs know neither IndexIDMap2's
    # members (index, id_map) nor SearchParameters(sel=...).
    inner: Any
    if kind == "flat" or (kind == "sq8" and training is None):
        inner = faiss.IndexFlatIP(dim)
    elif kind == "fp16":
        inner = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    else:
        inner = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        inner.train(training)
    return faiss.IndexIDMap2(inner)


def _kind_of(index: Any) -> str:
    """'flat', 'fp16' or 'sq8' for an IndexIDMap2 we built."""
    inner = faiss.downcast_index(index.index)
    if isinstance(inner, faiss.IndexScalarQuantizer):
        return "fp16" if inner.sq.qtype == faiss.ScalarQuantizer.QT_fp16 else "sq8"
    return "flat"


def fsync_dir(folder: Path) -> None:
    """Make a rename in folder durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class VectorIndex:
    """Unit vectors by id, searchable by inner product; thread-safe."""

    def __init__(self, dim: int, kind: IndexType = "flat", search_threads: int = 1,
                 index: faiss.Index | None = None) -> None:
        self.dim = dim
        self.kind = kind
        self._index: Any = index if index is not None else _new_index(dim, kind)
        self._lock = ReadWriteLock()
        if _kind_of(self._index) != kind and not (kind == "sq8" and len(self) < SQ8_TRAIN_AT):
            self._rebuild()
        # OpenMP threads spin: with the encoder busy, more threads make a query slower.
        # omp_set_num_threads sets only the calling thread's count (a thread OpenMP did not
        # start begins with one per core): so every search sets it again, on its own thread.
        self.search_threads = search_threads
        faiss.omp_set_num_threads(search_threads)
        # A flat scan for several queries at once (the query batcher sends them together)
        # is one matrix product from four queries on: FAISS switches to it below nx * dim
        # of this, and its default (128000) kept 32 queries in 32 passes over the vectors
        # (257 ms at 100k x 512 on one core, against 57 ms as a product; the same ids).
        faiss.cvar.distance_compute_blas_threshold = BLAS_FROM_QUERIES * dim

    @classmethod
    def load(cls, path: Path, dim: int, kind: IndexType, search_threads: int = 1,
             salvage: bool = False) -> tuple["VectorIndex", int | None]:
        """Read a checkpoint: (index, vector-log seq it covers, None if unknown).

        StoreError if it fails its checksum, is unreadable or of another shape;
        with salvage, a damaged file is parsed anyway (check its vectors!).
        """
        if salvage:
            index, seq = checkpoint.salvage(path), None
            if index is None:
                raise StoreError(f"{path}: nothing can be read from the damaged checkpoint")
        else:
            index, seq = checkpoint.read(path)
        if index.d != dim or not isinstance(index, faiss.IndexIDMap2):
            raise StoreError(f"{path}: checkpoint holds {index.d}-d vectors, the model has {dim}")
        return cls(dim, kind, search_threads, index=index), seq

    def _rebuild(self) -> None:
        """Re-encode the stored vectors into the configured kind (index.type changed, or sq8 trains)."""
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        vectors = self._index.index.reconstruct_n(0, self._index.ntotal) if len(ids) else \
            np.zeros((0, self.dim), np.float32)
        training = None
        if self.kind == "sq8":
            sample = np.random.default_rng(0).permutation(len(vectors))[:50_000]
            training = np.ascontiguousarray(vectors[sample])
        rebuilt = _new_index(self.dim, self.kind, training)
        if len(ids):
            rebuilt.add_with_ids(vectors, ids)
        self._index = rebuilt

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> np.ndarray:
        """Every id in the index (int64)."""
        with self._lock.read():
            return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add or replace vectors under ids."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        with self._lock.write():
            # IndexIDMap2 would keep both copies of a repeated id: replace explicitly.
            # remove_ids rebuilds the whole reverse map (~7 ms at 100k vectors, with
            # every search waiting), so it runs only when an id is really present.
            present = ids if len(ids) > 256 else np.array([i for i in ids.tolist() if self._has(i)], np.int64)
            if len(present):
                self._index.remove_ids(faiss.IDSelectorBatch(present))
            self._index.add_with_ids(vectors, ids)
            if self.kind == "sq8" and _kind_of(self._index) == "flat" and len(self) >= SQ8_TRAIN_AT:
                self._rebuild()

    def _has(self, id_: int) -> bool:
        """True if id is in the index (call under the lock); a reverse-map lookup."""
        try:
            self._index.reconstruct(id_)
        except RuntimeError:
            return False
        return True

    def remove(self, ids: np.ndarray | list[int]) -> int:
        """Remove ids (missing ones are ignored); returns how many were removed."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids):
            return 0
        with self._lock.write():
            return int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))

    def get(self, id_: int) -> np.ndarray | None:
        """The stored vector for id, or None."""
        with self._lock.read():
            try:
                return self._index.reconstruct(int(id_))
            except RuntimeError:
                return None

    def search(self, queries: np.ndarray, k: int, among: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the k best matches per query, only among these ids if given; missing slots have id -1."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        params = selector = None
        if among is not None:
            # A filter that leaves few photos is applied inside the scan, not after it.
            # (selector stays referenced here until the search is done: params only points at it.)
            selector = faiss.IDSelectorBatch(np.ascontiguousarray(among, dtype=np.int64))
            params = faiss.SearchParameters(sel=selector)  # type: ignore[call-arg]
        faiss.omp_set_num_threads(self.search_threads)  # this thread's scan (and its BLAS product) on that many
        with self._lock.read():
            k = max(1, min(k, max(1, self._index.ntotal)))
            return self._index.search(queries, k, params=params)

    def damaged_ids(self, tolerance: float = NORM_TOLERANCE) -> np.ndarray:
        """Ids whose stored vector is not finite or not of unit length (int64)."""
        bad = []
        with self._lock.read():
            ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
            for start in range(0, len(ids), 16384):  # bounded memory at a million vectors
                chunk = self._index.index.reconstruct_n(start, min(16384, len(ids) - start))
                with np.errstate(all="ignore"):
                    norms = np.linalg.norm(chunk.astype(np.float64), axis=1)
                bad.append(ids[start:start + len(chunk)][~(np.abs(norms - 1.0) <= tolerance)])
        return np.concatenate(bad) if bad else np.zeros(0, np.int64)

    def save(self, path: Path, log_seq: int, keep_previous: bool = True) -> int:
        """Write a verified checkpoint; the current one becomes ``<path>.prev``. Returns bytes written.

        DiskFull (nothing replaced) when the file system is full.
        """
        tmp = path.with_name(f".{path.name}.tmp")
        with self._lock.read():
            size = checkpoint.write(self._index, tmp, log_seq)
        try:
            if keep_previous and path.exists():
                os.replace(path, checkpoint.previous(path))
            os.replace(tmp, path)
            fsync_dir(path.parent)
        except OSError as exc:
            raise StoreError(f"cannot put the index checkpoint {path} in place: {exc.strerror}") from None
        return size
