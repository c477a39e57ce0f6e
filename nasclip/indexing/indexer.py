"""The indexer: pending files in, vectors out, with decoding running ahead of the encoder.

Each ``loop()`` keeps a fixed window of claimed batches being prepared by a
bounded thread pool (fingerprint, then decode and preprocess unless a twin's
vectors can be reused), takes the oldest finished batch, encodes it and
records the results in one transaction. A photo or a RAW is one picture to
encode; a video is sampled into its moments, one picture each (decode.py),
and a Live Photo's clip is recorded as such without any; the pictures of a
batch go to the encoder in batches of ``indexer.batch_size``. A bad file
becomes a ``Failed`` result naming the reason; it never stops the worker.

A share is written by its users, so nothing about a path is trusted: each
file is opened once, from the share root with no symbolic link in any
component (fsopen), checked with fstat against its catalog row, and then
fingerprinted and decoded from that one descriptor within the decode limits
(a video's are the ``video`` settings). Just before recording, the path must
still lead to the same inode, or the result is dropped and the row tried
again. A decode that never returns (a hung mount, a decoder stuck in C) is
given up after twice its timeout (``indexer.decode_timeout``, a video's
``video.decode_timeout``), and the pool it blocks is replaced.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat as stat_
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Mapping, TypedDict

import numpy as np

from ..config import Config, IndexerConfig, VideoConfig
from ..errors import DecodeError, DiskFull, NasclipError, PathRefused
from ..fsopen import open_nofollow
from ..lifecycle import Worker, WorkerPart, lower_thread_priority
from ..media.formats import kind_of
from ..media.video import limits_of, video_limits
from ..meta.exif import PhotoMeta
from ..meta.places import Places
from ..shares import Shares
from ..store.catalog import FileRow
from ..store.changes import Encoded, Failed, LiveClip, Result
from ..store.store import Store
from . import decode
from .backfill import MetadataBackfill, complete
from .bounded import decode_limits, open_bounded
from .encoder import Encoder
from .fingerprints import FINGERPRINT_CHUNK, WHOLE_FILE, fingerprint, head_and_tail, read_at
from .imaging import read_header_meta

log = logging.getLogger("nasclip.indexer")

# A file still arriving (truncated, empty) is retried while its mtime is this recent.
ARRIVAL_WINDOW = 600.0
MAX_RETRIES = 6
# Retries of a file that does not change back off exponentially up to this.
RETRY_CAP = 6 * 3600.0
IDLE_POLL = 1.0  # seconds between looks for pending rows when nothing woke the indexer
PAUSED_POLL = 0.2
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK  # a FIFO in a share must not hold a worker


@contextlib.contextmanager
def open_row(shares: Shares, row: FileRow, flags: int) -> Iterator[tuple[int, os.stat_result] | None]:
    """(descriptor, fstat) of row's file, opened with flags and closed after; None unless it is still
    a regular file in its share (the reasons why not are the indexer's, _prepare_row's, to give).

    Opened from the share root with no symbolic link in any component, like every read of a photo.
    """
    root = shares.root(row.share)
    if root is None:
        yield None
        return
    try:
        fd = open_nofollow(row.relpath, base=str(root), flags=flags)
    except (OSError, NasclipError):
        yield None
        return
    try:
        st = os.fstat(fd)
        yield (fd, st) if stat_.S_ISREG(st.st_mode) else None
    finally:
        os.close(fd)


def retry_delay(row: FileRow, base: float) -> float:
    """Seconds until a file that did not change is tried again: doubling per attempt, capped."""
    return min(RETRY_CAP, base * 2 ** min(row.attempts, 32))


@dataclass
class _Prepared:
    """A claimed row after the decode pool: a result already, or pictures to encode (decode.py)."""

    row: FileRow
    fingerprint: str | None = None
    decoded: decode.Decoded | None = None
    result: Result | None = None
    identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file that was read
    meta: PhotoMeta | None = None  # what the file says of itself, read with its pixels


_Batch = list[tuple[FileRow, "Future[_Prepared]"]]


class IndexerStatus(TypedDict):
    encoded: int
    reused: int
    rate: float  # photos per second over the recent batches
    held: int


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


class Indexer(WorkerPart):
    """Turns pending catalog rows into vectors. start/loop/stop like every long-running part."""

    def __init__(self, store: Store, encoder: Encoder, config: IndexerConfig,
                 shares: Shares | Mapping[str, Path], clock: Callable[[], float] = time.time,
                 places: Places | None = None, video: VideoConfig | None = None) -> None:
        self.store = store
        self.encoder = encoder
        self.config = config
        self.video = limits_of(video or VideoConfig(), config.max_pixels)
        self.shares = Shares.of(shares)
        self.clock = clock
        self.stats = IndexerStats()
        self.depth = 2  # batches being prepared ahead of the encoder
        self._pool = self._decode_pool()
        self._window: deque[_Batch] = deque()
        self.stuck_workers = 0  # decode threads given up on (still blocked somewhere)
        self._inflight: set[int] = set()
        # A batch encoded while the catalog could not take it (a full disk): recorded
        # later, never encoded twice. While it waits, no new work is claimed.
        self._unrecorded: tuple[list[_Prepared], list[Result]] | None = None
        self._worker = Worker("nasclip-indexer", self.step, log, "indexer", error_pause=5.0, nice=config.nice)
        self.paused = threading.Event()  # tests and `nasclip` can hold the indexer
        self.places = places or Places()  # names the places of photos' positions
        self.backfill = MetadataBackfill(store, lambda: self._pool, self._header_meta,
                                         lambda: 2 * self.config.decode_timeout + 1.0, self.places)

    # ------------------------------------------------------------------ lifecycle (start, stop: WorkerPart)

    def wake(self) -> None:
        """New work may be pending: do not wait for the idle poll."""
        self._worker.wake()

    def step(self) -> float:
        """One batch, or the seconds to idle: what the worker thread runs."""
        if self.paused.is_set():
            return PAUSED_POLL
        return IDLE_POLL if self.loop() == 0 else 0.0

    def status(self) -> IndexerStatus:
        """Photos encoded and vectors reused this run, the recent rate, results waiting for disk space."""
        return {"encoded": self.stats.encoded, "reused": self.stats.reused, "rate": self.stats.rate(),
                "held": self.held}

    def reconfigure(self, config: Config) -> None:
        """Settings a reload may change: limits (photos' and videos'), retry timing, the shares' roots."""
        self.config = config.indexer
        self.video = video_limits(config)
        self.shares = Shares.of(config.shares)

    def close(self) -> None:
        """Stop, finish nothing more, drop the look-ahead; idempotent."""
        self.stop()
        self.join()
        for batch in self._window:
            for _, future in batch:
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
            return self.backfill.step(self.config.read_metadata)
        self.stats.busy = True
        batch = self._window.popleft()
        claimed = [row.id for row, _ in batch]
        try:
            prepared = self._collect(batch)
            for p in prepared:
                self._recheck(p)
            results = self._encode(prepared)
        except BaseException:
            self._inflight.difference_update(claimed)
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

    def _collect(self, batch: _Batch) -> list[_Prepared]:
        """The batch's prepared files; one that takes far longer than its decode timeout is given up."""
        prepared = []
        for i in range(len(batch)):
            row, future = batch[i]  # re-read: replacing the pool may resubmit it
            setting, timeout = (("video.decode_timeout", self.video.read.timeout) if kind_of(row.relpath) == "video"
                                else ("indexer.decode_timeout", self.config.decode_timeout))
            try:
                # The reader's (or sampler's) own deadline, plus resizing.
                prepared.append(future.result(timeout=2 * timeout + 1.0))
                # A file done is progress: a batch of long videos may take longer than service.stall_seconds.
                self.stats.last_progress = self.stats.clock()
            except FutureTimeout:
                reason = (f"reading or decoding took longer than {setting} ({timeout:g} s) and did not stop; "
                          "trying again later")
                log.warning("cannot index %s/%s: %s", row.share, row.relpath, reason,
                            extra={"PHOTO_PATH": f"{row.share}/{row.relpath}"})
                delay = retry_delay(row, 60.0)
                prepared.append(_Prepared(row, result=Failed(row, None, reason, retry_at=self.clock() + delay)))
                self._replace_pool([batch, *self._window])
        return prepared

    def _decode_pool(self) -> ThreadPoolExecutor:
        # Decoding is indexing work: it runs at the indexer's lower priority.
        return ThreadPoolExecutor(self.config.decode_threads, thread_name_prefix="nasclip-decode",
                                  initializer=lower_thread_priority, initargs=(self.config.nice,))

    def _replace_pool(self, batches: list[_Batch]) -> None:
        """A worker is stuck: queued work moves to a new pool; the stuck thread is left to finish alone."""
        stuck, self._pool = self._pool, self._decode_pool()
        self.stuck_workers += 1
        for batch in batches:
            for i, (row, future) in enumerate(batch):
                if future.cancel():
                    batch[i] = (row, self._pool.submit(self._prepare, row))
        stuck.shutdown(wait=False)

    def _recheck(self, p: _Prepared) -> None:
        """Drop a result whose path no longer leads to the file that was read (swapped meanwhile)."""
        if p.identity is None or isinstance(p.result, Failed):
            return
        if self._identity(p.row) != p.identity:
            log.info("%s/%s was replaced while it was being indexed; trying it again", p.row.share, p.row.relpath)
            p.decoded = None
            p.result = Failed(p.row, None, "replaced while being indexed; trying again",
                              retry_at=self.clock() + 1.0)

    def _identity(self, row: FileRow) -> tuple[int, int] | None:
        with self._opened(row, os.O_PATH) as opened:
            return (opened[1].st_dev, opened[1].st_ino) if opened is not None else None

    def _opened(self, row: FileRow, flags: int) -> contextlib.AbstractContextManager[
            tuple[int, os.stat_result] | None]:
        return open_row(self.shares, row, flags)

    def _fill_window(self) -> None:
        while len(self._window) < self.depth and not self._worker.stopping:
            rows = self.store.pending(self.config.batch_size, self._inflight)
            if not rows:
                return
            self._inflight.update(r.id for r in rows)
            self._window.append([(row, self._pool.submit(self._prepare, row)) for row in rows])

    def _encode(self, prepared: list[_Prepared]) -> list[Result]:
        """Encode every picture of the batch (a video's moments with them) in encoder batches of batch_size."""
        todo = [p for p in prepared if p.result is None]
        if todo:
            assert all(p.decoded is not None for p in todo), "a prepared file has neither a result nor pictures"
            pictures = [picture for p in todo for picture in p.decoded.pictures]  # type: ignore[union-attr]
            size, spec = self.config.batch_size, self.encoder.spec.image
            try:
                vectors = np.concatenate([
                    self.encoder.encode_images(np.stack([decode.tensor(p, spec) for p in pictures[at:at + size]]))
                    for at in range(0, len(pictures), size)])
            except NasclipError as exc:
                # A model that cannot run is not the files' fault: leave them pending.
                raise NasclipError(f"encoding a batch failed: {exc}") from exc
            videos = [p for p in todo if p.decoded and p.decoded.times is not None]
            # Logged before the results are committed: a crash test counts real encoder work.
            log.debug("encoded a batch of %d photos, %d frames of %d videos", len(todo) - len(videos),
                      sum(len(p.decoded.pictures) for p in videos if p.decoded), len(videos))
            at = 0
            for p in todo:
                decoded = p.decoded
                assert decoded is not None
                count = len(decoded.pictures)
                vector = vectors[at] if decoded.times is None else vectors[at:at + count]
                p.result = Encoded(p.row, p.fingerprint or "", vector=vector, meta=p.meta, times=decoded.times,
                                   duration=decoded.duration)
                p.decoded = None  # the pictures' memory goes back before the next batch
                at += count
        return [p.result for p in prepared if p.result is not None]

    def _header_meta(self, row: FileRow) -> PhotoMeta:
        try:
            with self._opened(row, _OPEN_FLAGS) as opened:
                if opened is None:
                    return PhotoMeta()
                fd, st = opened
                return read_header_meta(open_bounded(fd, st.st_size, decode_limits(self.config)))
        except (OSError, DecodeError):
            return PhotoMeta()

    # ------------------------------------------------------------------ decode pool

    def _prepare(self, row: FileRow) -> _Prepared:
        """Fingerprint, look for a reusable vector, else decode. Runs in the pool; never raises."""
        try:
            return self._prepare_row(row)
        except Exception as exc:  # a decoder bug or a busy catalog must cost one photo, not the batch
            log.exception("unexpected error preparing %s/%s", row.share, row.relpath)
            reason = f"unexpected error: {type(exc).__name__}: {exc}"
            retry_at = self.clock() + retry_delay(row, 60.0) if row.attempts < MAX_RETRIES else None
            return _Prepared(row, result=Failed(row, None, reason, retry_at=retry_at))

    def _prepare_row(self, row: FileRow) -> _Prepared:
        root = self.shares.root(row.share)
        if root is None:
            return _Prepared(row, result=Failed(row, None, f"share '{row.share}' is no longer configured",
                                                retry_at=self.clock() + retry_delay(row, 3600.0)))
        path = root / row.relpath
        try:
            fd = open_nofollow(row.relpath, base=str(root), flags=_OPEN_FLAGS)
        except PathRefused:
            return self._failed(row, None, path, "a symbolic link, or below one; nasclip does not follow links")
        except FileNotFoundError:
            # The watcher will mark it gone; do not spin on it meanwhile.
            return _Prepared(row, result=Failed(row, None, "file disappeared",
                                                retry_at=self.clock() + retry_delay(row, 60.0)))
        except PermissionError:
            return self._failed(row, None, path,
                                "permission denied (give the nasclip user read access, then run `nasclip scan`)")
        except OSError as exc:
            return self._failed(row, None, path, f"cannot read: {exc.strerror or exc}")
        try:
            return self._prepare_open(row, path, fd)
        finally:
            os.close(fd)

    def _prepare_open(self, row: FileRow, path: Path, fd: int) -> _Prepared:
        """Everything from the one descriptor: what fstat says is what is fingerprinted and decoded."""
        st = os.fstat(fd)
        if not stat_.S_ISREG(st.st_mode):
            return self._failed(row, None, path, "not a regular file")
        identity = (st.st_dev, st.st_ino)
        if (st.st_size, st.st_mtime_ns) != (row.size, row.mtime_ns):
            # Changed since the watcher saw it: it will tell the catalog; nothing is recorded meanwhile.
            return _Prepared(row, result=Failed(row, None, "changed while being indexed; trying again",
                                                retry_at=self.clock() + retry_delay(row, 5.0)))
        config = self.config
        kind = kind_of(row.relpath) or "photo"
        limits = self.video.read if kind == "video" else decode_limits(config)
        fp: str | None = None
        try:
            handle = open_bounded(fd, st.st_size, limits)
            fp = fingerprint(fd, st.st_size)
            clip = self._live_clip(row, fp, handle) if kind == "video" else None
            if clip is not None:
                return _Prepared(row, fp, result=clip, identity=identity)
            donor = self._donor(row, fd, st.st_size, fp)
            if donor is not None:
                return _Prepared(row, fp, result=Encoded(row, fp, donor=donor), identity=identity)
            decoded = decode.decode(kind, handle, self.encoder.spec.image, limits, self.video, config.read_metadata,
                                    f"{row.share}/{row.relpath}")
        except DecodeError as exc:
            if exc.retry and self.clock() - st.st_mtime < ARRIVAL_WINDOW and row.attempts < MAX_RETRIES:
                delay = min(300.0, retry_delay(row, 5.0))
                return _Prepared(row, fp, result=Failed(row, fp, str(exc), retry_at=self.clock() + delay))
            return self._failed(row, fp, path, str(exc))
        except OSError as exc:
            return self._failed(row, None, path, f"read error: {exc.strerror or exc}")
        meta = complete(decoded.meta or PhotoMeta(), st.st_mtime, self.places)
        return _Prepared(row, fp, decoded=decoded, identity=identity, meta=meta)

    def _live_clip(self, row: FileRow, fp: str, handle: BinaryIO) -> LiveClip | None:
        """A Live Photo's clip (decode.py), recorded as such instead of being sampled; None for a video."""
        still = decode.still_of_clip(self.store.reader(), row.share, row.relpath)
        if still is None:
            return None
        length = decode.clip_length(handle, self.video)
        if length is None:
            return None
        log.debug("%s/%s is the Live Photo clip of %s: not indexed on its own", row.share, row.relpath, still)
        return LiveClip(row, fp, still, length)

    def _donor(self, row: FileRow, fd: int, size: int, fp: str) -> int | None:
        """A row whose vector fits; a row still carrying an old-style fingerprint may keep its own."""
        stored = row.fingerprint
        legacy = stored is not None and fp.startswith(WHOLE_FILE) and not stored.startswith(WHOLE_FILE)
        if legacy and head_and_tail(fd, size, read_at(fd, 0, FINGERPRINT_CHUNK)) == stored \
                and self.store.donor_for(row, stored or "") == row.id:
            return row.id  # only itself: a head-and-tail twin of a small file may differ in between
        return self.store.donor_for(row, fp)

    def _failed(self, row: FileRow, fp: str | None, path: Path, reason: str) -> _Prepared:
        log.warning("cannot index %s: %s", path, reason, extra={"PHOTO_PATH": str(path)})
        return _Prepared(row, fp, result=Failed(row, fp, reason))
