"""The indexer: pending photos in, vectors out, with decoding running ahead of the encoder.

Each ``loop()`` keeps a fixed window of claimed batches being prepared by a
bounded thread pool (fingerprint, then decode and preprocess unless a twin's
vector can be reused), takes the oldest finished batch, encodes it and
records the results in one transaction. A bad photo becomes a ``Failed``
result naming the reason; it never stops the worker.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .catalog import FileRow
from .config import IndexerConfig
from .encoder import Encoder
from .errors import DecodeError, DiskFull, NasclipError
from .imaging import load_tensor
from .store import Encoded, Failed, Result, Store

log = logging.getLogger("nasclip.indexer")

FINGERPRINT_CHUNK = 64 * 1024
# A file still arriving (truncated, empty) is retried while its mtime is this recent.
ARRIVAL_WINDOW = 600.0
MAX_RETRIES = 6


def fingerprint(path: Path, size: int) -> str:
    """Size plus a hash of the head and tail: cheap, and equal for a moved or copied file."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        digest.update(handle.read(FINGERPRINT_CHUNK))
        if size > FINGERPRINT_CHUNK:
            handle.seek(max(FINGERPRINT_CHUNK, size - FINGERPRINT_CHUNK))
            digest.update(handle.read(FINGERPRINT_CHUNK))
    return f"{size}:{digest.hexdigest()}"


@dataclass
class _Prepared:
    """A claimed row after the decode pool: a result already, or a tensor to encode."""

    row: FileRow
    fingerprint: str | None = None
    tensor: np.ndarray | None = None
    result: Result | None = None


class IndexerStats:
    """Counters for status lines; updated by the indexer thread, read by anyone."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.encoded = 0
        self.reused = 0
        self.failed = 0
        self.started = clock()
        self.last_progress = clock()
        self.busy = False
        self._recent: deque[tuple[float, int]] = deque(maxlen=64)

    def add(self, summary: dict[str, int]) -> None:
        done = summary.get("encoded", 0) + summary.get("reused", 0)
        self.encoded += summary.get("encoded", 0)
        self.reused += summary.get("reused", 0)
        self.failed += summary.get("failed", 0)
        now = self.clock()
        self.last_progress = now
        self._recent.append((now, done + summary.get("failed", 0)))

    def rate(self) -> float:
        """Photos per second over the recent batches."""
        if len(self._recent) < 2:
            return 0.0
        span = self._recent[-1][0] - self._recent[0][0]
        return sum(n for _, n in list(self._recent)[1:]) / span if span > 0 else 0.0


class Indexer:
    """Turns pending catalog rows into vectors. start/loop/stop like every long-running part."""

    def __init__(self, store: Store, encoder: Encoder, config: IndexerConfig,
                 share_roots: dict[str, Path], clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.encoder = encoder
        self.config = config
        self.share_roots = dict(share_roots)
        self.clock = clock
        self.stats = IndexerStats()
        self.depth = 2  # batches being prepared ahead of the encoder
        self._pool = ThreadPoolExecutor(config.decode_threads, thread_name_prefix="nasclip-decode")
        self._window: deque[list[Future[_Prepared]]] = deque()
        self._inflight: set[int] = set()
        # A batch encoded while the catalog could not take it (a full disk): recorded
        # later, never encoded twice. While it waits, no new work is claimed.
        self._unrecorded: tuple[list[_Prepared], list[Result]] | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.paused = threading.Event()  # tests and `nasclip` can hold the indexer

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="nasclip-indexer", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """New work may be pending: do not wait for the idle poll."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.paused.is_set():
                    self._stop.wait(0.2)
                    continue
                if self.loop() == 0:
                    self._wake.wait(1.0)
                    self._wake.clear()
            except NasclipError as exc:
                log.error("indexer: %s", exc)
                self._stop.wait(5.0)
            except Exception:  # never let the worker die silently
                log.exception("indexer: unexpected error; continuing in 5 s")
                self._stop.wait(5.0)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        """Stop, finish nothing more, drop the look-ahead; idempotent."""
        self.stop()
        self.join()
        for batch in self._window:
            for future in batch:
                future.cancel()
        self._window.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------ one step

    @property
    def held(self) -> int:
        """Results encoded but waiting for disk space to be recorded."""
        unrecorded = self._unrecorded
        return len(unrecorded[1]) if unrecorded else 0

    def loop(self) -> int:
        """Encode and record one batch; returns the number of photos handled (0 = idle or waiting for space)."""
        if self._unrecorded is not None:
            return self._record(*self._unrecorded)
        self._fill_window()
        if not self._window:
            self.stats.busy = False
            return 0
        self.stats.busy = True
        prepared = [future.result() for future in self._window.popleft()]
        try:
            results = self._encode(prepared)
        except BaseException:
            self._inflight.difference_update(p.row.id for p in prepared)
            raise
        return self._record(prepared, results)

    def _record(self, prepared: list[_Prepared], results: list[Result]) -> int:
        try:
            summary = self.store.record(results)
        except DiskFull:
            self._unrecorded = (prepared, results)  # store.space reports it; retried at the next loop
            return 0
        except BaseException:
            self._unrecorded = None
            self._inflight.difference_update(p.row.id for p in prepared)
            raise
        self._unrecorded = None
        self._inflight.difference_update(p.row.id for p in prepared)
        self.stats.add(summary)
        self._fill_window()  # keep the pool busy while the caller does anything else
        return len(prepared)

    def _fill_window(self) -> None:
        while len(self._window) < self.depth and not self._stop.is_set():
            rows = self.store.pending(self.config.batch_size, self._inflight)
            if not rows:
                return
            self._inflight.update(r.id for r in rows)
            self._window.append([self._pool.submit(self._prepare, row) for row in rows])

    def _encode(self, prepared: list[_Prepared]) -> list[Result]:
        todo = [p for p in prepared if p.result is None]
        if todo:
            try:
                vectors = self.encoder.encode_images(np.stack([p.tensor for p in todo]))
            except NasclipError as exc:
                # A model that cannot run is not the photos' fault: leave them pending.
                raise NasclipError(f"encoding a batch failed: {exc}") from exc
            # Logged before the results are committed: a crash test counts real encoder work.
            log.debug("encoded a batch of %d photos", len(todo))
            for p, vector in zip(todo, vectors):
                p.result = Encoded(p.row, p.fingerprint or "", vector=vector)
        return [p.result for p in prepared if p.result is not None]

    # ------------------------------------------------------------------ decode pool

    def _prepare(self, row: FileRow) -> _Prepared:
        """Fingerprint, look for a reusable vector, else decode. Runs in the pool; never raises."""
        try:
            return self._prepare_row(row)
        except Exception as exc:  # a decoder bug or a busy catalog must cost one photo, not the batch
            log.exception("unexpected error preparing %s/%s", row.share, row.relpath)
            reason = f"unexpected error: {type(exc).__name__}: {exc}"
            retry_at = self.clock() + 60.0 * 2 ** row.attempts if row.attempts < MAX_RETRIES else None
            return _Prepared(row, result=Failed(row, None, reason, retry_at=retry_at))

    def _prepare_row(self, row: FileRow) -> _Prepared:
        root = self.share_roots.get(row.share)
        if root is None:
            return _Prepared(row, result=Failed(row, None, f"share '{row.share}' is no longer configured",
                                                retry_at=self.clock() + 3600))
        path = root / row.relpath
        try:
            stat = os.stat(path)
            fp = fingerprint(path, stat.st_size)
        except FileNotFoundError:
            # The watcher will mark it gone; do not spin on it meanwhile.
            return _Prepared(row, result=Failed(row, None, "file disappeared", retry_at=self.clock() + 60))
        except PermissionError:
            return self._failed(row, None, path, "permission denied (give the nasclip user read access, then run `nasclip scan`)")
        except OSError as exc:
            return self._failed(row, None, path, f"cannot read: {exc.strerror or exc}")
        donor = self.store.donor_for(row, fp)
        if donor is not None:
            return _Prepared(row, fp, result=Encoded(row, fp, donor=donor))
        try:
            tensor = load_tensor(path, self.encoder.spec.image, self.config.max_pixels)
        except DecodeError as exc:
            if exc.retry and self.clock() - stat.st_mtime < ARRIVAL_WINDOW and row.attempts < MAX_RETRIES:
                delay = min(300.0, 5.0 * 2 ** row.attempts)
                return _Prepared(row, fp, result=Failed(row, fp, str(exc), retry_at=self.clock() + delay))
            return self._failed(row, fp, path, str(exc))
        return _Prepared(row, fp, tensor=tensor)

    def _failed(self, row: FileRow, fp: str | None, path: Path, reason: str) -> _Prepared:
        log.warning("cannot index %s: %s", path, reason, extra={"PHOTO_PATH": str(path)})
        return _Prepared(row, fp, result=Failed(row, fp, reason))
