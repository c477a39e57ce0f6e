"""nasclipd: wires the parts, owns start-up and shutdown, talks to systemd.

Start-up order matters to systemd: the model and the store load first, then
the query server; READY=1 is sent once queries can be answered, and the
watcher and indexer carry on in the background. The main thread runs the
health loop: checkpoints, purging deleted photos, STATUS lines and WATCHDOG
pings (only while the indexer and server are healthy). SIGTERM and SIGINT
stop gracefully: STOPPING=1, the current batch drains (for at most
``service.stop_timeout``), a checkpoint is written. SIGHUP re-reads the
config and applies what can change live (see reload.py); a broken file is
rejected and the running config stays.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING

from .. import __version__
from ..config import CACHE_FOLDER, Config, check_paths, load_config
from ..display import group_digits
from ..errors import ConfigError, DiskFull, ProtocolError, StoreError
from ..indexing.bounded import decode_limits
from ..indexing.encoder import Encoder
from ..indexing.indexer import Indexer
from ..media.video import video_limits
from ..meta.places import Places
from ..model.spec import load_model_spec
from ..ocr.stage import OcrStage
from ..query.access import AccessCheck, Peer
from ..query.protocol import FORBIDDEN, NOT_FOUND, Request, ok_reply
from ..query.search import Searcher
from ..query.server import QueryServer
from ..shares import Shares
from ..store.catalog import decode_path
from ..store.ocrtext import READ_COUNTER
from ..store.statedir import PRIVATE_UMASK, StateLock, make_private
from ..store.store import Store
from ..watch.watcher import Watcher
from . import status as report
from .logs import set_level
from .notify import Notifier
from .reload import RESTART_ONLY, plan_reload
from .status import StatusReply

if TYPE_CHECKING:
    from ..web.component import WebServer

log = logging.getLogger("nasclip.daemon")

STATUS_EVERY = 2.0  # seconds between STATUS= updates (sent only when the line changed)
QUERY_QUIET = 2.0  # the text pass starts no photo until searches have been quiet this long



class Daemon:
    """The running service."""

    def __init__(self, config: Config, notifier: Notifier | None = None) -> None:
        self.config = config
        self.notifier = notifier or Notifier()
        self.started = time.time()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._wake = threading.Event()
        self._busy_since: float | None = None
        self.restart_needed: tuple[str, ...] = ()
        self.reloaded: float | None = None
        self.abandoned = False  # a part did not stop in time; the process must not wait for it
        self.store: Store | None = None
        self.encoder: Encoder | None = None
        self.indexer: Indexer | None = None
        self.watcher: Watcher | None = None
        self.server: QueryServer | None = None
        self.searcher: Searcher | None = None
        self.web: WebServer | None = None  # only with web.listen set
        self.ocr: OcrStage | None = None  # None with ocr.enabled: false
        self.lock: StateLock | None = None
        self._checkpoint_error = ""  # the last checkpoint failure logged, so that a repeat is not
        self._next_status = 0.0
        self._next_ping = 0.0
        self._last_status = ""
        self._next_models = 0.0

    @property
    def shares(self) -> Shares:
        return Shares.of(self.config.shares)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        config = self.config
        # Everything nasclipd creates is the service account's alone, whatever the unit says.
        os.umask(PRIVATE_UMASK)
        self.lock = StateLock.acquire(config.state_dir)  # before anything reads or writes the state
        fixed = make_private(config.state_dir)
        if fixed:
            log.warning("made the state directory private (group or others could read it): %s", ", ".join(fixed))
        spec = load_model_spec(config.model)
        self.encoder = Encoder.open(spec, backend=config.indexer.backend, threads=config.indexer.threads,
                                    providers=config.indexer.onnx_providers, image_nice=config.indexer.nice,
                                    text_threads=config.query.text_threads)
        self.store = Store(config.state_dir, spec.id, spec.embedding_dim, config.index.type,
                           config.index.search_threads, model_folder=spec.folder)
        # Place names, shared by indexing (a photo's position) and searching (the query box, --place),
        # loaded when first needed from the copy kept in state_dir.
        places = Places(config.state_dir / CACHE_FOLDER)
        self.searcher = Searcher(self.store, self.encoder, self.shares, config.indexer.max_pixels,
                                 limits=decode_limits(config.indexer), max_decodes=config.query.max_image_decodes,
                                 slots=config.query.cpu_slots, max_all=config.query.max_all, places=places,
                                 reads_text=config.ocr.enabled, video=video_limits(config))
        self.indexer = Indexer(self.store, self.encoder, config.indexer, self.shares, places=places, video=config.video)
        indexer = self.indexer  # while it has work, query work keeps to its CPU budget (batching.py)
        self.searcher.indexing_busy = lambda: indexer.stats.busy
        self.watcher = Watcher(self.store, config.shares, config.indexer.settle_seconds,
                               on_change=self.indexer.wake)
        if config.ocr.enabled:
            self.ocr = OcrStage(self.store, config.ocr, config.indexer, self.shares, self._clip_busy)
        self.server = QueryServer(config.socket, config.query, self.handle, on_cpu=self.searcher.work.charge)
        self.server.start()
        if config.web.listen:
            # Imported here: Starlette and uvicorn are loaded only by a daemon that serves the web.
            from ..web.app import Backend
            from ..web.component import WebServer

            store = self.store
            self.web = WebServer(config, Backend(lambda: self.config, self._charged, store.reader,
                                                 lambda: self.shares))
            self.web.start()
        counts = self.store.counts()
        log.info("nasclipd %s: model %s, %s indexed photos, %s pending", __version__, spec.id,
                 group_digits(counts["indexed"]), group_digits(counts["pending"]))
        self.notifier.ready(self.status_line())
        self.watcher.start()
        self.indexer.start()
        if self.ocr is not None:
            self.ocr.start()

    def _clip_busy(self) -> bool:
        """Whether the text pass should wait: the CLIP pass has photos to encode, or people are searching.

        A search costs a core for tens of milliseconds and its index scan all the memory bandwidth there
        is; the text pass (a second or more per photo) starts no photo within QUERY_QUIET of one.
        """
        assert self.indexer and self.store and self.searcher
        return (self.indexer.stats.busy or self.searcher.work.active_within(QUERY_QUIET)
                or bool(self.store.pending(1, set())))

    def request_stop(self) -> None:
        """Ask the main loop to end (signal handlers call this and nothing else)."""
        self._stop.set()
        self._wake.set()

    def request_reload(self) -> None:
        """Ask the main loop to re-read the config (the SIGHUP handler)."""
        self._reload.set()
        self._wake.set()

    def run(self) -> None:
        """start(), the health loop until stopped, then shutdown()."""
        try:
            self.start()
            interval = self.notifier.watchdog_interval
            pause = min(0.5, interval / 2) if interval else 0.5
            while not self._stop.is_set():
                if self._reload.is_set():
                    self._reload.clear()
                    self.reload()
                self.loop()
                self._wake.wait(pause)
                self._wake.clear()
        finally:
            self.shutdown()

    def loop(self) -> None:
        """One health-loop iteration: checkpoint, purge, status, watchdog."""
        assert self.store and self.indexer and self.watcher
        now = time.monotonic()
        index_cfg = self.config.index
        if self.store.checkpoint_due(index_cfg.checkpoint_seconds, index_cfg.checkpoint_changes):
            self._checkpoint()
        try:
            if not self.indexer.stats.busy and not self.store.space.is_full:
                purged = self.store.purge_gone(time.time() - index_cfg.keep_deleted)
                if purged:
                    log.info("forgot %d deleted photos", purged)
            if len(self.store.indexes) > 1 and now >= self._next_models:
                # A model switch: searches move to the new model once it covers the most
                # photos, and the old index is dropped once it covers them all.
                self._next_models = now + 2.0
                self.store.update_models()
        except DiskFull:
            pass  # reported by store.space; tried again at a later iteration
        if now >= self._next_status:
            # Under a short watchdog interval, status keeps the same pace as the pings.
            self._next_status = now + min(STATUS_EVERY, self.notifier.watchdog_interval or STATUS_EVERY)
            line = self.status_line()
            if line != self._last_status:
                self._last_status = line
                self.notifier.status(line)
        interval = self.notifier.watchdog_interval
        if interval and now >= self._next_ping:
            if self.healthy():
                self._next_ping = now + interval
                self.notifier.watchdog()

    def _checkpoint(self) -> None:
        """Write a checkpoint; a failure is reported and retried later, never the end of the loop."""
        assert self.store
        try:
            size = self.store.checkpoint()
        except DiskFull:
            return  # store.space logged it once and status shows it
        except StoreError as exc:
            if str(exc) != self._checkpoint_error:
                log.error("index checkpoint failed, tried again in a few seconds (the vectors are safe in the "
                          "catalog's vector log): %s", exc)
                self._checkpoint_error = str(exc)
            return
        if self._checkpoint_error:
            log.info("index checkpoint written again")
            self._checkpoint_error = ""
        log.debug("index checkpoint written (%d bytes)", size)

    def stalled(self) -> bool:
        """True when the indexer has work but finished no batch for service.stall_seconds."""
        assert self.indexer
        stats = self.indexer.stats
        now = stats.clock()
        if not stats.busy or self.indexer.paused.is_set() or self.indexer.held:
            self._busy_since = None  # waiting for disk space is not being stuck
            return False
        if self._busy_since is None:
            self._busy_since = now  # idle until now: the quiet time before is not a stall
        return now - max(stats.last_progress, self._busy_since) > self.config.service.stall_seconds

    def healthy(self) -> bool:
        """True while every part runs and a busy indexer makes progress."""
        assert self.indexer and self.server and self.watcher
        return (self.indexer.is_alive() and self.server.is_alive() and self.watcher.is_alive()
                and (self.web is None or self.web.is_alive()) and (self.ocr is None or self.ocr.is_alive())
                and not self.stalled())

    def shutdown(self) -> None:
        """Stop accepting, drain the current batch, checkpoint, close; idempotent.

        Parts get service.stop_timeout to finish; one that does not (an
        indexer blocked reading a photo from a hung network share) is left
        behind, the index is saved anyway, and ``abandoned`` tells main()
        not to wait for its threads.
        """
        self.notifier.stopping("stopping: finishing the current batch and saving the index")
        # The indexer's batch is the work worth waiting for; a long scan is simply redone.
        parts = [(name, part) for name, part in (("web front end", self.web), ("query server", self.server),
                                                  ("indexer", self.indexer), ("text recognition", self.ocr),
                                                  ("watcher", self.watcher))
                 if part is not None]
        for _, part in parts:
            part.stop()  # all at once, so that they wind down in parallel
        closing: list[str] = []

        def close_parts() -> None:
            for name, part in parts:
                closing.append(name)
                part.close()
            closing.append("")

        closer = threading.Thread(target=close_parts, name="nasclip-shutdown", daemon=True)
        closer.start()
        closer.join(self.config.service.stop_timeout)
        if closer.is_alive():
            self.abandoned = True
            log.error("the %s did not stop within service.stop_timeout (%g s)%s; saving the index without it",
                      closing[-1], self.config.service.stop_timeout,
                      " — a photo read may be hanging (unresponsive network share?)"
                      if closing[-1] == "indexer" else "")
        if self.searcher is not None and not self.abandoned:
            self.searcher.close()  # encoders it opened for an old model
        if self.store is not None:
            self.store.close()  # the final checkpoint
        if self.encoder is not None and not self.abandoned:
            self.encoder.close()
        if self.lock is not None:
            self.lock.release()
        if self.indexer is not None:
            # A decode thread given up on may still be blocked in a read: do not wait for it at exit.
            self.abandoned = self.abandoned or self.indexer.stuck_workers > 0
            stats = self.indexer.stats
            log.info("stopped: encoded %d photos this run, reused %d vectors, %d failed",
                     stats.encoded, stats.reused, stats.failed)
        self.server = self.watcher = self.indexer = self.store = self.encoder = self.searcher = None
        self.web = self.ocr = None
        self.notifier.close()

    # ------------------------------------------------------------------ reload

    def reload(self) -> None:
        """Re-read the config file and apply what can change while running (SIGHUP)."""
        assert self.indexer and self.watcher and self.searcher and self.server
        source = self.config.source
        self.notifier.reloading()
        try:
            new = load_config(source or "")
        except ConfigError as exc:
            log.error("config reload rejected, still running with the previous config:\n%s", exc)
            self.notifier.ready(self.status_line())
            return
        plan = plan_reload(self.config, new)
        config = self.config = plan.config
        set_level(config.log_level)
        for part in (self.indexer, self.searcher, self.watcher, self.server, self.web, self.ocr):
            if part is not None:
                part.reconfigure(config)
        self.reloaded = time.time()
        for problem in check_paths(config):
            log.warning("%s", problem)
        log.info("config reloaded from %s: %s", source, plan.describe())
        for key in plan.restart:
            log.warning("config reload: %s changed, but %s; restart nasclipd to apply it "
                        "(systemctl restart nasclip). Still using the previous value", key, RESTART_ONLY[key])
        # The running config keeps the old values of restart-only settings, so
        # this lists every such change since start-up that the file still holds.
        self.restart_needed = plan.restart
        self.notifier.ready(self.status_line())

    # ------------------------------------------------------------------ status

    def status(self) -> StatusReply:
        assert self.store and self.indexer and self.watcher and self.encoder and self.server and self.searcher
        counts = self.store.counts()
        indexing, queries = self.indexer.status(), self.server.status()
        rate = indexing["rate"]
        eta = counts["pending"] / rate if rate > 0 else None
        index_path = self.store.index_path()
        disk_full = self.store.space.status()
        if disk_full is not None:
            disk_full["held_results"] = indexing["held"]
        return {
            "version": __version__,
            "uptime": round(time.time() - self.started, 1),
            "model": {"id": self.encoder.model_id, "name": self.encoder.spec.name,
                      "folder": str(self.encoder.spec.folder), "backend": self.encoder.backend},
            "photos": counts,
            "model_switch": self._switch(),
            "encoded": {"run": indexing["encoded"], "total": self.store.counter("encoded_total")},
            "reused": indexing["reused"],
            "rate": round(rate, 2),
            "eta_seconds": round(eta) if eta is not None else None,
            "index": {"type": self.config.index.type, "vectors": len(self.store.index),
                      "bytes_on_disk": index_path.stat().st_size if index_path.exists() else 0},
            "shares": self.watcher.status(),
            "recent_failures": [{"share": s, "path": p, "error": e}
                                for s, p, e in self._failures(10)],
            "queries": {"served": queries["served"], "errors": queries["errors"], "busy": queries["busy"],
                        "text_cache": {"hits": self.searcher.texts.hits, "misses": self.searcher.texts.misses}},
            "disk_full": disk_full,
            "notices": list(self.store.notices),
            "metadata_owed": self.store.reader().metadata_owed(),
            "ocr": self._ocr_status(),
            "healthy": self.healthy() and disk_full is None,
            "service": {"config": str(self.config.source) if self.config.source else None,
                        "reloaded": self.reloaded, "restart_needed": list(self.restart_needed),
                        "watchdog_seconds": self.notifier.watchdog_interval,
                        "stalled": self.stalled()},
        }

    def _ocr_status(self) -> report.OcrReport:
        """The text pass's progress: photos by text state, and what the pass did this run."""
        assert self.store
        if self.ocr is None:
            return {"enabled": False}
        return {**self.ocr.status(), "photos": self.store.text_counts(),
                "read_total": self.store.counter(READ_COUNTER)}

    def _switch(self) -> dict | None:
        """Progress of re-encoding for a new model, or None when there is no switch under way."""
        assert self.store
        # Serving first: the health loop may retire the old model in between, and a switch
        # read after that is simply over, never "under way, served by the new model".
        serving = self.store.serving_model()
        migration = self.store.migration()
        if migration is None:
            return None
        return {**migration, "serving": serving}

    def _failures(self, limit: int) -> list[tuple[str, str, str]]:
        assert self.store
        rows = self.store.reader().recent_failures(limit)
        return [(s, self.shares.shown(s, decode_path(p)), e) for s, p, e in rows]

    def status_line(self) -> str:
        """One line for systemd's STATUS= (status.status_line)."""
        assert self.store and self.indexer
        line = report.status_line(self.store.counts(), self.indexer.stats.rate(), self.store.space.line(),
                                  self.store.migration(), self.store.serving_model(),
                                  self.store.reader().metadata_owed())
        if self.ocr is not None:
            line += "; " + report.ocr_line(self.store.text_counts(), self.ocr.rate(), self.ocr.unavailable)
        return line

    # ------------------------------------------------------------------ requests

    def _charged(self, request: Request, peer: Peer) -> dict:
        """handle, its CPU counted against query work's budget (the socket server counts its own requests')."""
        assert self.searcher
        cpu = time.thread_time()
        try:
            return self.handle(request, peer)
        finally:
            self.searcher.work.charge(time.thread_time() - cpu)

    def handle(self, request: Request, peer: Peer) -> dict:
        """Answer one validated request (called from server threads)."""
        assert self.searcher and self.watcher and self.store and self.indexer
        if request.op == "ping":
            return ok_reply(request.id, version=__version__)
        if request.op == "status":
            status = self.status()
            if not peer.is_root:
                report.hide_from(status, AccessCheck(peer))
            return ok_reply(request.id, status=status)
        if request.op == "scan":
            if request.share and request.share not in self.shares:
                raise ProtocolError(NOT_FOUND, f"no share named '{request.share}'")
            self.watcher.request_scan(request.share)
            retried = self.store.retry_unreadable(request.share)
            if retried:
                log.info("retrying %d photos that could not be read before", retried)
                self.indexer.wake()
            scanning = [request.share] if request.share else list(self.shares)
            if not peer.is_root and peer.uid != os.getuid():  # a count of other people's unreadable files
                return ok_reply(request.id, scanning=scanning)
            return ok_reply(request.id, scanning=scanning, retrying=retried)
        if request.op == "failed":
            if not peer.is_root and peer.uid != os.getuid():
                raise ProtocolError(FORBIDDEN, "only root or the nasclip user may list failed photos")
            return ok_reply(request.id, failed=[{"share": s, "path": p, "error": e}
                                                for s, p, e in self._failures(1000)])
        if request.share and request.share not in self.shares:
            raise ProtocolError(NOT_FOUND, f"no share named '{request.share}'")
        hits, timing = self.searcher.search(request, peer)
        # timing names the model; the web front end (with_ids) names photos by catalog id
        return ok_reply(request.id, results=[h.as_dict(request.with_ids) for h in hits], **timing)
