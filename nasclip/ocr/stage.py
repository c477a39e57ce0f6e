"""The text pass: indexed photos in, their text out, only while the CLIP pass has nothing due.

A photo becomes searchable by description first: ``step()`` does nothing
while ``clip_busy()`` says the indexer has work, or people are searching
(the daemon's answer: a search wants the cores and the memory bandwidth
now, the text can wait; it looks again every ``YIELD_POLL`` seconds), and the pass runs on one thread at ``ocr.nice``
(19 by default, against the indexer's 10), with ``ocr.threads`` ONNX Runtime
threads (1), so that a photo being read when new photos arrive costs the
indexer little. ``loop()`` handles one photo: a copy, move or duplicate of
a photo whose text was read takes that text (by fingerprint); any other is
opened as the indexer opens photos (from the share root, no symbolic link
followed, checked against its catalog row), decoded with the long side at
least ``ocr.max_side`` (JPEGs at reduced scale in the DCT), read, and its
text, state and text index entry are committed together (Store.record_text):
after a kill, no photo whose text was recorded is read again.

Photos and camera RAWs are read (a RAW through its preview or a half-size
demosaic, nasclip/media/raw.py); videos and Live Photo clips are never
queued (catalog schema 6), and one that reaches the pass anyway (a file
renamed to a video's name) is marked done with no text, without being opened.
A photo that cannot be decoded (or that trips an unexpected error) is marked
failed with the reason; one that changed or vanished while it was read is
left for the watcher to report and looked at again later; a model that
cannot run leaves the photo pending and the worker retries after a pause.
Without the OCR models (the rapidocr-onnxruntime package), the pass logs
once how to install them and does nothing more.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import Callable, TypedDict

from PIL import Image

from ..config import Config, IndexerConfig, OcrConfig
from ..errors import DecodeError, ModelError
from ..indexing.bounded import decode_limits, open_bounded
from ..indexing.imaging import PHOTO_FORMATS, TRIM_PIXELS, open_photo
from ..indexing.indexer import open_row
from ..indexing.memory import release_memory
from ..lifecycle import Worker, WorkerPart
from ..media.formats import kind_of
from ..media.raw import open_raw
from ..shares import Shares
from ..store.catalog import FileRow
from ..store.changes import TextFailed, TextRead, TextResult, TextReused
from ..store.store import Store
from .engine import OcrEngine
from .textform import searchable

log = logging.getLogger("nasclip.ocr")

IDLE_POLL = 5.0  # seconds between looks for photos to read when there were none
YIELD_POLL = 1.0  # seconds between looks at the indexer while it has work
PAUSED_POLL = 0.2
UNAVAILABLE_POLL = 3600.0
LATER = 60.0  # a photo that changed or vanished while it was read is looked at again after this
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK


class OcrStatus(TypedDict):
    enabled: bool
    available: bool
    reason: str | None  # why text cannot be read (no models), or None
    read: int  # photos read this run
    reused: int  # photos that took a twin's text this run
    failed: int
    rate: float  # photos per second over the recent ones
    waiting: bool  # holding back while photos wait to be indexed


class OcrStage(WorkerPart):
    """Reads the text in indexed photos, one photo a step. start/loop/stop like every long-running part."""

    def __init__(self, store: Store, config: OcrConfig, indexer: IndexerConfig, shares: Shares,
                 clip_busy: Callable[[], bool], engine: OcrEngine | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.config = config
        self.limits = decode_limits(indexer)
        self.shares = Shares.of(shares)
        self.clip_busy = clip_busy
        self.clock = clock
        self._engine = engine  # opened on first use, on the thread (and at the priority) that uses it
        self.unavailable: str | None = None
        self._later: dict[int, float] = {}  # row id -> when to look at it again
        self.counts = {"read": 0, "reused": 0, "failed": 0}
        self._recent: deque[float] = deque(maxlen=32)
        self.waiting = False
        self.paused = threading.Event()
        self._worker = Worker("nasclip-ocr", self.step, log, "text recognition", error_pause=5.0, nice=config.nice)

    # ------------------------------------------------------------------ lifecycle (start, stop: WorkerPart)

    def close(self) -> None:
        """Stop and wait for the photo being read; idempotent."""
        self.stop()
        self.join()

    def reconfigure(self, config: Config) -> None:
        """What a reload may change: the size limits, the languages and the shares (the rest at restart)."""
        self.config = config.ocr
        self.limits = decode_limits(config.indexer)
        self.shares = Shares.of(config.shares)
        engine = self._engine
        if engine is not None:
            engine.languages, engine.min_text_height = config.ocr.languages, config.ocr.min_text_height
            engine.max_side = config.ocr.max_side

    def status(self) -> OcrStatus:
        return {"enabled": True, "available": self.unavailable is None, "reason": self.unavailable,
                "read": self.counts["read"], "reused": self.counts["reused"], "failed": self.counts["failed"],
                "rate": round(self.rate(), 3), "waiting": self.waiting}

    def rate(self) -> float:
        """Photos per second over the recent ones."""
        recent = list(self._recent)
        if len(recent) < 2 or recent[-1] <= recent[0]:
            return 0.0
        return (len(recent) - 1) / (recent[-1] - recent[0])

    def step(self) -> float:
        """One photo, or the seconds to wait: what the worker thread runs."""
        if self.paused.is_set():
            return PAUSED_POLL
        if self.unavailable is not None:
            return UNAVAILABLE_POLL
        self.waiting = self.clip_busy()
        if self.waiting:
            return YIELD_POLL
        if self.engine() is None:  # the models are loaded once indexing leaves the CPU free
            return UNAVAILABLE_POLL
        return IDLE_POLL if self.loop() == 0 else 0.0

    # ------------------------------------------------------------------ one photo

    def engine(self) -> OcrEngine | None:
        """The engine, opened on first use; None (and logged once) when the models are missing."""
        if self._engine is None and self.unavailable is None:
            try:
                self._engine = OcrEngine.open(self.config)
            except ModelError as exc:
                self.unavailable = str(exc)
                log.warning("text in photos will not be read: %s", exc)
        return self._engine

    def loop(self) -> int:
        """Read (or reuse) the text of one photo; returns the photos handled, 0 when none waits."""
        engine = self.engine()
        if engine is None:
            return 0
        now = self.clock()
        self._later = {i: t for i, t in self._later.items() if t > now}
        row = next((r for r in self.store.text_pending(len(self._later) + 1) if r.id not in self._later), None)
        if row is None:
            return 0
        donor = self.store.text_donor(row)
        if donor is not None:
            self._record(TextReused(row, donor))
            return 1
        log.debug("reading the text in %s/%s", row.share, row.relpath)
        try:
            result = self._read(engine, row)
        except ModelError:
            raise  # the models cannot run: not this photo's fault; it stays pending (the worker logs it)
        except Exception as exc:  # a bug or a photo no step expected must cost that photo, not the pass
            log.exception("unexpected error reading the text in %s/%s", row.share, row.relpath)
            result = TextFailed(row, f"unexpected error: {type(exc).__name__}: {exc}"[:300])
        if result is None:
            self._later[row.id] = now + LATER
            return 1
        self._record(result)
        return 1

    def _record(self, result: TextResult) -> None:
        summary = self.store.record_text([result])
        row = result.row
        for key in ("read", "reused", "failed"):
            self.counts[key] += summary[key]
        if summary["stale"]:
            return
        self._recent.append(self.clock())
        if isinstance(result, TextRead):
            # After the commit: a crash test counts recorded readings.
            log.debug("read %d lines of text in %s/%s", len(result.lines), row.share, row.relpath)
        elif isinstance(result, TextReused):
            log.debug("took the text of a copy (row %d) for %s/%s", result.donor, row.share, row.relpath)

    def _read(self, engine: OcrEngine, row: FileRow) -> TextResult | None:
        """The photo's text, a failure, or None when it is not the file its row describes (look later)."""
        if kind_of(row.relpath) == "video":
            return TextRead(row, (), "")  # no text is read in videos (module doc)
        with open_row(self.shares, row, _OPEN_FLAGS) as opened:
            if opened is None:
                return None  # gone, or replaced by something else: the watcher will tell the catalog
            fd, st = opened
            if (st.st_size, st.st_mtime_ns) != (row.size, row.mtime_ns):
                return None
            try:
                image, scale = self._decode(fd, st.st_size, kind_of(row.relpath) == "raw")
            except DecodeError as exc:
                path = f"{self.shares.root(row.share)}/{row.relpath}"
                log.warning("cannot read the text in %s: %s", path, exc, extra={"PHOTO_PATH": path})
                return TextFailed(row, str(exc))
        big = image.width * image.height >= TRIM_PIXELS
        reading = engine.read(image, scale)
        del image
        if big:  # a big PNG or HEIC, decoded in full: its pixels go back to the system at once
            release_memory()
        return TextRead(row, tuple(reading.texts), searchable(reading.texts))

    def _decode(self, fd: int, size: int, raw: bool = False) -> tuple[Image.Image, float]:
        """The photo with its long side at least ocr.max_side where its format allows, and its scale."""
        handle = open_bounded(fd, size, self.limits)
        if raw:  # the preview where its short side is at least half of max_side, else the half-size demosaic
            picture = open_raw(handle, self.config.max_side // 4, self.limits)
            image = picture.image
            if max(image.size) > self.config.max_side:
                image.thumbnail((self.config.max_side, self.config.max_side), Image.Resampling.LANCZOS)
            return image, max(image.size) / max(picture.raw_size)
        try:
            with Image.open(handle, formats=PHOTO_FORMATS) as header:
                full = max(header.size)
        except Exception:  # the decoder below says why
            full = 0
        image = open_photo(handle, 1, self.limits.max_pixels, long_side=self.config.max_side)
        return image, (max(image.size) / full if full else 1.0)
