"""nasclipd: wires the parts, owns start-up and shutdown, talks to systemd.

Start-up order matters to systemd: the model and the store load first, then
the query server; READY=1 is sent once queries can be answered, and the
watcher and indexer carry on in the background. The main thread runs the
health loop: checkpoints, purging deleted photos, STATUS lines and WATCHDOG
pings (only while the indexer and server are healthy). SIGTERM and SIGINT
stop gracefully: STOPPING=1, the current batch drains, a checkpoint is
written.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from . import __version__
from .access import AccessCheck, Peer
from .catalog import decode_path
from .config import Config, load_config
from .encoder import Encoder
from .errors import NasclipError, ProtocolError
from .indexer import Indexer
from .logs import setup_logging
from .modelspec import load_model_spec
from .notify import Notifier
from .protocol import FORBIDDEN, NOT_FOUND, Request, ok_reply
from .search import Searcher
from .server import QueryServer
from .store import Store
from .watcher import Watcher

log = logging.getLogger("nasclip.daemon")

STALL_SECONDS = 300.0  # a busy indexer without progress this long is stuck


def _group(n: float) -> str:
    return f"{int(n):,}".replace(",", " ")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Daemon:
    """The running service."""

    def __init__(self, config: Config, notifier: Notifier | None = None) -> None:
        self.config = config
        self.notifier = notifier or Notifier()
        self.started = time.time()
        self._stop = threading.Event()
        self.store: Store | None = None
        self.encoder: Encoder | None = None
        self.indexer: Indexer | None = None
        self.watcher: Watcher | None = None
        self.server: QueryServer | None = None
        self.searcher: Searcher | None = None
        self._next_status = 0.0
        self._next_ping = 0.0
        self._last_status = ""

    @property
    def share_roots(self) -> dict[str, Path]:
        return {s.name: s.path for s in self.config.shares}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        config = self.config
        spec = load_model_spec(config.model)
        self.encoder = Encoder.open(spec, backend=config.indexer.backend, threads=config.indexer.threads)
        self.store = Store(config.state_dir, spec.id, spec.embedding_dim, config.index.type,
                           config.index.search_threads, model_folder=spec.folder)
        self.searcher = Searcher(self.store, self.encoder, self.share_roots, config.indexer.max_pixels)
        self.indexer = Indexer(self.store, self.encoder, config.indexer, self.share_roots)
        self.watcher = Watcher(self.store, config.shares, config.indexer.settle_seconds,
                               on_change=self.indexer.wake)
        self.server = QueryServer(config.socket, config.query, self.handle)
        self.server.start()
        counts = self.store.counts()
        log.info("nasclipd %s: model %s, %s indexed photos, %s pending", __version__, spec.id,
                 _group(counts["indexed"]), _group(counts["pending"]))
        self.notifier.ready(self.status_line())
        self.watcher.start()
        self.indexer.start()

    def request_stop(self) -> None:
        """Ask the main loop to end (signal handlers call this and nothing else)."""
        self._stop.set()

    def run(self) -> None:
        """start(), the health loop until stopped, then shutdown()."""
        try:
            self.start()
            while not self._stop.is_set():
                self.loop()
                self._stop.wait(0.5)
        finally:
            self.shutdown()

    def loop(self) -> None:
        """One health-loop iteration: checkpoint, purge, status, watchdog."""
        assert self.store and self.indexer and self.watcher
        now = time.monotonic()
        index_cfg = self.config.index
        if self.store.checkpoint_due(index_cfg.checkpoint_seconds, index_cfg.checkpoint_changes):
            size = self.store.checkpoint()
            log.debug("index checkpoint written (%d bytes)", size)
        if not self.indexer.stats.busy:
            purged = self.store.purge_gone(time.time() - index_cfg.keep_deleted)
            if purged:
                log.info("forgot %d deleted photos", purged)
        if now >= self._next_status:
            self._next_status = now + 5.0
            line = self.status_line()
            if line != self._last_status:
                self._last_status = line
                self.notifier.status(line)
        interval = self.notifier.watchdog_interval
        if interval and now >= self._next_ping:
            if self.healthy():
                self._next_ping = now + interval
                self.notifier.watchdog()

    def healthy(self) -> bool:
        """True while every part runs and a busy indexer makes progress."""
        assert self.indexer and self.server and self.watcher
        stats = self.indexer.stats
        stalled = stats.busy and stats.clock() - stats.last_progress > STALL_SECONDS
        return self.indexer.is_alive() and self.server.is_alive() and self.watcher.is_alive() and not stalled

    def shutdown(self) -> None:
        """Stop accepting, drain the current batch, checkpoint, close; idempotent."""
        self.notifier.stopping("stopping: finishing the current batch and saving the index")
        for part in (self.server, self.watcher, self.indexer):
            if part is not None:
                part.close()
        if self.searcher is not None:
            self.searcher.close()
        if self.store is not None:
            self.store.close()
        if self.encoder is not None:
            self.encoder.close()
        if self.indexer is not None:
            stats = self.indexer.stats
            log.info("stopped: encoded %d photos this run, reused %d vectors, %d failed",
                     stats.encoded, stats.reused, stats.failed)
        self.server = self.watcher = self.indexer = self.store = self.encoder = self.searcher = None
        self.notifier.close()

    # ------------------------------------------------------------------ status

    def status(self) -> dict:
        assert self.store and self.indexer and self.watcher and self.encoder and self.server and self.searcher
        counts = self.store.counts()
        stats = self.indexer.stats
        rate = stats.rate()
        eta = counts["pending"] / rate if rate > 0 else None
        index_path = self.store.index_path()
        return {
            "version": __version__,
            "uptime": round(time.time() - self.started, 1),
            "model": {"id": self.encoder.model_id, "name": self.encoder.spec.name,
                      "folder": str(self.encoder.spec.folder), "backend": self.encoder.backend},
            "photos": counts,
            "encoded": {"run": stats.encoded, "total": self.store.counter("encoded_total")},
            "reused": stats.reused,
            "rate": round(rate, 2),
            "eta_seconds": round(eta) if eta is not None else None,
            "index": {"type": self.config.index.type, "vectors": len(self.store.index),
                      "bytes_on_disk": index_path.stat().st_size if index_path.exists() else 0},
            "shares": self.watcher.status(),
            "recent_failures": [{"share": s, "path": p, "error": e}
                                for s, p, e in self._failures(10)],
            "queries": {"served": self.server.served, "errors": self.server.errors, "busy": self.server.refused,
                        "text_cache": {"hits": self.searcher.texts.hits, "misses": self.searcher.texts.misses}},
            "healthy": self.healthy(),
        }

    def _failures(self, limit: int) -> list[tuple[str, str, str]]:
        assert self.store
        rows = self.store.reader().execute(
            "SELECT share, relpath, error FROM files WHERE state='failed' ORDER BY updated DESC LIMIT ?", (limit,))
        return [(s, str(self.share_roots.get(s, Path("?")) / decode_path(p)), e) for s, p, e in rows]

    def status_line(self) -> str:
        """One line for systemd's STATUS=, e.g. 'indexed 12 034 / 48 210, 18.2 photos/s, about 33 min left'."""
        assert self.store and self.indexer
        counts = self.store.counts()
        live = counts["indexed"] + counts["pending"] + counts["failed"]
        parts = [f"indexed {_group(counts['indexed'])} / {_group(live)}"]
        rate = self.indexer.stats.rate()
        if counts["pending"] and rate > 0:
            parts.append(f"{rate:.1f} photos/s, about {_duration(counts['pending'] / rate)} left")
        elif not counts["pending"]:
            parts.append("up to date")
        if counts["failed"]:
            parts.append(f"{_group(counts['failed'])} failed")
        return ", ".join(parts)

    # ------------------------------------------------------------------ requests

    def handle(self, request: Request, peer: Peer) -> dict:
        """Answer one validated request (called from server threads)."""
        assert self.searcher and self.watcher
        if request.op == "ping":
            return ok_reply(request.id, version=__version__)
        if request.op == "status":
            status = self.status()
            if not peer.is_root:  # failure reports name photos; show only those the asker may read
                access = AccessCheck(peer)
                status["recent_failures"] = [f for f in status["recent_failures"] if access.may_read(Path(f["path"]))]
            return ok_reply(request.id, status=status)
        if request.op == "scan":
            if request.share and request.share not in self.share_roots:
                raise ProtocolError(NOT_FOUND, f"no share named '{request.share}'")
            self.watcher.request_scan(request.share)
            return ok_reply(request.id, scanning=[request.share] if request.share else list(self.share_roots))
        if request.op == "failed":
            if not peer.is_root and peer.uid != os.getuid():
                raise ProtocolError(FORBIDDEN, "only root or the nasclip user may list failed photos")
            return ok_reply(request.id, failed=[{"share": s, "path": p, "error": e}
                                                for s, p, e in self._failures(1000)])
        if request.share and request.share not in self.share_roots:
            raise ProtocolError(NOT_FOUND, f"no share named '{request.share}'")
        hits, timing = self.searcher.search(request, peer)
        return ok_reply(request.id, results=[h.as_dict() for h in hits], **timing)  # timing names the model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nasclipd", description="nasclip daemon: index photo shares and "
                                     "answer searches on a Unix socket.")
    parser.add_argument("--config", "-c", default="/etc/nasclip/nasclip.yaml", help="config file (YAML)")
    parser.add_argument("--version", action="version", version=f"nasclipd {__version__}")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except NasclipError as exc:
        print(f"nasclipd: {exc}", file=sys.stderr)
        return exc.exit_code
    setup_logging(config.log_level)
    daemon = Daemon(config)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: daemon.request_stop())
    try:
        daemon.run()
    except NasclipError as exc:
        log.error("%s", exc)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
