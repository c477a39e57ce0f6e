"""The watcher: file-system events and reconcile scans become catalog changes.

Two threads with the usual start/loop/stop shape. The event thread drains
watchdog events from a bounded queue, lets new files settle (closed after
writing, or size and mtime unchanged for ``indexer.settle_seconds``), turns
renames into in-place moves and deletes into ``gone`` rows, and checks the
health of every share. The scan thread runs reconcile scans at low priority:
at start-up, on each share's schedule, when asked, and whenever events may
have been lost (queue overflow, a dead observer).

watchdog facts this relies on (see DESIGN.md): a handler that raises kills the
observer silently, so ours only enqueues; inotify overflow is only logged, so
a log filter turns it into a scan; a folder moved out arrives as one
DirDeletedEvent; exhausting ``max_user_watches`` must become polling.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from watchdog import events as ev
from watchdog.observers import Observer

from .config import ShareConfig
from .scanner import PathFilter, ScanReport, count_folders, root_available, scan
from .store import Change, Deleted, Moved, Seen, Store

log = logging.getLogger("nasclip.watcher")

EVENT_QUEUE = 100_000
DELETE_DELAY = 1.0      # deletes wait this long so an unmount in progress is not taken for a wipe
CLOSE_GRACE = 0.2       # after close-write, the file must be quiet this long
HEALTH_EVERY = 2.0
POLL_DEFAULT = 300.0    # scan interval of a poll share that does not set one
INOTIFY_DEFAULT = 3600.0
WATCHED_EVENTS = [ev.FileCreatedEvent, ev.FileModifiedEvent, ev.FileClosedEvent, ev.FileDeletedEvent,
                  ev.FileMovedEvent, ev.DirCreatedEvent, ev.DirDeletedEvent, ev.DirMovedEvent]
MAX_WATCHES_FILE = Path("/proc/sys/fs/inotify/max_user_watches")


@dataclass
class _Settling:
    """A file seen by events that is not yet known to be complete."""

    last_change: float
    closed: bool = False
    stat: tuple[int, int] | None = None


@dataclass
class ShareState:
    """A share as the watcher sees it."""

    config: ShareConfig
    mode: str = "starting"           # inotify | poll | poll (inotify limit) | unavailable
    available: bool = True
    watch: object | None = None
    next_scan: float = 0.0
    last_scan: ScanReport | None = None
    denied_logged: set[str] = field(default_factory=set)

    @property
    def interval(self) -> float:
        if self.config.scan_interval is not None:
            return self.config.scan_interval
        return INOTIFY_DEFAULT if self.mode == "inotify" else POLL_DEFAULT


class _Handler(ev.FileSystemEventHandler):
    """Only enqueues: anything raised here would kill the observer thread silently."""

    def __init__(self, share: str, sink: "queue.Queue[tuple[str, ev.FileSystemEvent]]",
                 overflow: threading.Event) -> None:
        self.share = share
        self.sink = sink
        self.overflow = overflow

    def on_any_event(self, event: ev.FileSystemEvent) -> None:
        try:
            self.sink.put_nowait((self.share, event))
        except queue.Full:
            self.overflow.set()
        except Exception:  # pragma: no cover - belt and braces
            self.overflow.set()


class _OverflowFilter(logging.Filter):
    """watchdog only logs inotify queue overflows; we turn the log line into a rescan."""

    def __init__(self, flag: threading.Event) -> None:
        super().__init__()
        self.flag = flag

    def filter(self, record: logging.LogRecord) -> bool:
        if "overflow" in record.getMessage().lower():
            self.flag.set()
        return True


def max_user_watches() -> int | None:
    try:
        return int(MAX_WATCHES_FILE.read_text())
    except (OSError, ValueError):
        return None


class Watcher:
    """Keeps the catalog in step with the shares."""

    def __init__(self, store: Store, shares: tuple[ShareConfig, ...], settle_seconds: float,
                 on_change: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.settle_seconds = settle_seconds
        self.on_change = on_change
        self.clock = clock
        self.shares = {s.name: ShareState(s) for s in shares}
        self.filters = {s.name: PathFilter(s) for s in shares}
        self.events: queue.Queue[tuple[str, ev.FileSystemEvent]] = queue.Queue(EVENT_QUEUE)
        self.overflow = threading.Event()
        self.settling: dict[tuple[str, str], _Settling] = {}
        self.deletes: list[tuple[float, Change]] = []
        self._scan_requests: set[tuple[str, str]] = set()
        self._scan_lock = threading.Lock()
        self._scan_wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._observer: Observer | None = None
        self._next_health = 0.0
        self._log_filter = _OverflowFilter(self.overflow)
        self.scans_done = 0
        self._share_update: tuple[ShareConfig, ...] | None = None  # from a config reload
        # The call that adds a watch; a test may replace it to inject ENOSPC.
        self.add_watch = self._schedule

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Watch every share and queue a reconcile scan of each; returns at once."""
        logging.getLogger("watchdog").addFilter(self._log_filter)
        logging.getLogger("watchdog.observers.inotify_c").addFilter(self._log_filter)
        logging.getLogger("watchdog.observers.inotify").addFilter(self._log_filter)
        self._observer = Observer()
        self._observer.start()
        for state in self.shares.values():
            self._begin_watch(state)
            self.request_scan(state.config.name)
        for target, name in ((self._run_events, "nasclip-watcher"), (self._run_scans, "nasclip-scanner")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self._scan_wake.set()

    def close(self) -> None:
        """Stop both threads and the observer; idempotent."""
        self.stop()
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join()
            self._observer = None
        for name in ("watchdog", "watchdog.observers.inotify_c", "watchdog.observers.inotify"):
            logging.getLogger(name).removeFilter(self._log_filter)

    def is_alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def request_scan(self, share: str | None = None, below: str = "") -> None:
        """Ask for a reconcile scan of one share (or all), optionally of one folder only."""
        with self._scan_lock:
            for name in ([share] if share else list(self.shares)):
                self._scan_requests.add((name, below))
        self._scan_wake.set()

    # ------------------------------------------------------------------ watches

    def _schedule(self, path: Path, handler: ev.FileSystemEventHandler) -> object:
        assert self._observer is not None
        return self._observer.schedule(handler, str(path), recursive=True, event_filter=WATCHED_EVENTS)

    def _begin_watch(self, state: ShareState) -> None:
        share = state.config
        state.available = root_available(share, self.store)
        if not state.available:
            state.mode = "unavailable"
            log.warning("share '%s': %s is missing or empty; its photos stay searchable until it is back "
                        "(is the volume mounted?)", share.name, share.path)
            return
        if share.watch == "poll":
            state.mode = "poll"
            return
        limit = max_user_watches()
        folders = count_folders(share.path, self.filters[share.name])
        if limit is not None and folders > limit:
            self._degrade(state, folders, limit)
            return
        try:
            state.watch = self.add_watch(share.path, _Handler(share.name, self.events, self.overflow))
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                self._degrade(state, folders, limit)
                return
            log.warning("share '%s': cannot watch %s (%s); polling instead", share.name, share.path, exc)
            state.mode = "poll"
            return
        state.mode = "inotify"

    def _degrade(self, state: ShareState, folders: int, limit: int | None) -> None:
        state.mode = "poll (inotify limit)"
        state.watch = None
        log.warning("share '%s': out of inotify watches (%d folders; fs.inotify.max_user_watches = %s); "
                    "polling every %.0f s instead. For prompt updates raise it, e.g. "
                    "`sysctl fs.inotify.max_user_watches=524288`",
                    state.config.name, folders, limit if limit is not None else "unknown", state.interval)

    def _end_watch(self, state: ShareState) -> None:
        if state.watch is not None and self._observer is not None:
            try:
                self._observer.unschedule(state.watch)
            except (KeyError, OSError):
                pass
        state.watch = None

    # ------------------------------------------------------------------ event thread

    def _run_events(self) -> None:
        while not self._stop.is_set():
            try:
                self.loop(timeout=0.2)
            except Exception:  # the watcher must outlive any one bad event
                log.exception("watcher: unexpected error; continuing")
                self._stop.wait(1.0)

    def loop(self, timeout: float = 0.0) -> int:
        """Drain events, settle files, apply changes, check health; returns changes applied."""
        if self._share_update is not None:
            self._apply_share_update()
        changes: list[Change] = []
        try:
            share, event = self.events.get(timeout=timeout) if timeout else self.events.get_nowait()
            self._on_event(share, event, changes)
            for _ in range(10_000):
                share, event = self.events.get_nowait()
                self._on_event(share, event, changes)
        except queue.Empty:
            pass
        now = self.clock()
        changes += self._settled(now)
        due: list[Change] = []
        while self.deletes and now - self.deletes[0][0] >= DELETE_DELAY:
            due.append(self.deletes.pop(0)[1])
        for name in {c.share for c in due}:
            # Files vanishing because the volume is going away are not deletions.
            if root_available(self.shares[name].config, self.store):
                changes += [c for c in due if c.share == name]
            else:
                self._next_health = 0.0
        if self.overflow.is_set():
            self.overflow.clear()
            log.warning("file events were lost (inotify queue overflow); rescanning all shares")
            self.request_scan()
        if now >= self._next_health:
            self._next_health = now + HEALTH_EVERY
            self._check_health(changes)
        if changes:
            changes = [c for c in changes if self.shares[c.share].available]
            self.store.apply(changes)
            self.on_change()
        return len(changes)

    def _relative(self, share: str, path: str | bytes) -> str | None:
        """Path below the share root, or None if outside it (or the root itself)."""
        path = os.fsdecode(path)
        root = str(self.shares[share].config.path)
        if not path.startswith(root + os.sep):
            return None
        return path[len(root) + 1:].replace(os.sep, "/")

    def _folder_wanted(self, share: str, rel: str) -> bool:
        return not any(self.filters[share].excluded(p) for p in rel.split("/"))

    def _on_event(self, share: str, event: ev.FileSystemEvent, changes: list[Change]) -> None:
        if share not in self.shares:  # a share removed by a reload (or the wake-up of one)
            return
        src = self._relative(share, event.src_path)
        wanted = self.filters[share].wanted
        now = self.clock()
        if isinstance(event, ev.DirDeletedEvent):
            if src is None:  # the root itself: unmounted or removed
                self._next_health = 0.0
            else:
                self.deletes.append((now, Deleted(share, src, folder=True)))
        elif isinstance(event, ev.DirMovedEvent):
            if event.is_synthetic:
                return  # the folder move itself carries every file below it
            dest = self._relative(share, event.dest_path)
            src_ok = src is not None and self._folder_wanted(share, src)
            dest_ok = dest is not None and self._folder_wanted(share, dest)
            if src_ok and dest_ok:
                # Applied now, before the scan of the destination below can
                # mistake the moved photos for new ones.
                self.store.apply(changes + [Moved(share, src, share, dest, folder=True)])
                changes.clear()
            elif src_ok:
                self.deletes.append((now, Deleted(share, src, folder=True)))
            if dest_ok:
                self.request_scan(share, dest)  # files not known yet, or moved in from outside
        elif isinstance(event, ev.DirCreatedEvent):
            if src is not None and self._folder_wanted(share, src):
                self.request_scan(share, src)
        elif isinstance(event, ev.FileMovedEvent):
            if event.is_synthetic:
                return
            dest = self._relative(share, event.dest_path)
            src_ok = src is not None and wanted(src)
            dest_ok = dest is not None and wanted(dest)
            if src is not None:
                self.settling.pop((share, src), None)
            if src_ok and dest_ok:
                changes.append(Moved(share, src, share, dest))
            elif src_ok:
                self.deletes.append((now, Deleted(share, src)))
            if dest_ok:
                self._touch(share, dest, now)
        elif isinstance(event, ev.FileDeletedEvent):
            if src is not None and wanted(src):
                self.settling.pop((share, src), None)
                self.deletes.append((now, Deleted(share, src)))
        elif isinstance(event, (ev.FileCreatedEvent, ev.FileModifiedEvent)):
            if src is not None and wanted(src):
                self._touch(share, src, now)
        elif isinstance(event, ev.FileClosedEvent):
            if src is not None and wanted(src):
                self._touch(share, src, now).closed = True

    def _touch(self, share: str, rel: str, now: float) -> _Settling:
        entry = self.settling.get((share, rel))
        if entry is None:
            entry = self.settling[(share, rel)] = _Settling(now)
        entry.last_change = now
        entry.closed = False
        return entry

    def _settled(self, now: float) -> list[Change]:
        """Seen changes for files that stopped changing; the rest keep settling."""
        ready: list[Change] = []
        for key, entry in list(self.settling.items()):
            share, rel = key
            try:
                stat = os.stat(self.shares[share].config.path / rel)
            except OSError:
                del self.settling[key]  # gone again; a delete event follows
                continue
            current = (stat.st_size, stat.st_mtime_ns)
            if entry.stat != current:
                if entry.stat is not None:  # still growing or being rewritten
                    entry.last_change = now
                    entry.closed = False
                entry.stat = current
            quiet = now - entry.last_change
            if quiet >= (CLOSE_GRACE if entry.closed else self.settle_seconds):
                del self.settling[key]
                ready.append(Seen(share, rel, *current))
        return ready

    def _check_health(self, changes: list[Change]) -> None:
        observer_ok = self._observer is not None and self._observer.is_alive()
        for state in self.shares.values():
            available = root_available(state.config, self.store)
            if state.available and not available:
                state.available = False
                self._end_watch(state)
                state.mode = "unavailable"
                dropped = [c for c in changes if c.share == state.config.name]
                self.deletes = [d for d in self.deletes if d[1].share != state.config.name]
                log.warning("share '%s': %s is missing or empty; keeping its photos searchable until it is "
                            "back (is the volume mounted?)%s", state.config.name, state.config.path,
                            f"; ignored {len(dropped)} changes" if dropped else "")
            elif not state.available and available:
                state.available = True
                log.info("share '%s' is back; rescanning", state.config.name)
                self._begin_watch(state)
                self.request_scan(state.config.name)
            elif state.mode == "inotify" and not observer_ok:
                log.warning("share '%s': the file watcher stopped; polling every %.0f s and rescanning",
                            state.config.name, POLL_DEFAULT)
                state.mode = "poll"
                self.request_scan(state.config.name)

    # ------------------------------------------------------------------ config reload

    def update_shares(self, shares: tuple[ShareConfig, ...]) -> None:
        """Take a reloaded share list; the event thread applies it at its next loop()."""
        self._share_update = shares
        try:
            self.events.put_nowait((None, None))  # type: ignore[arg-type]  # wake the event thread
        except queue.Full:
            pass  # it is busy anyway and loops within a moment

    def _apply_share_update(self) -> None:
        """Watch and scan new shares, forget removed ones, restart changed ones (event thread only).

        The share dicts are replaced, never mutated, because the scan thread
        reads them concurrently.
        """
        wanted, self._share_update = {s.name: s for s in self._share_update or ()}, None
        shares, filters = dict(self.shares), dict(self.filters)
        for name, state in self.shares.items():
            if wanted.get(name) == state.config:
                continue
            self._end_watch(state)
            del shares[name], filters[name]
            self.settling = {k: v for k, v in self.settling.items() if k[0] != name}
            self.deletes = [d for d in self.deletes if d[1].share != name]
            if name not in wanted:
                gone = self.store.apply([Deleted(name, "", folder=True)]).get("deleted", 0)
                log.info("share '%s' was removed from the config: %d photos leave the search results",
                         name, gone)
        added = [wanted[n] for n in wanted if n not in shares]
        for share in added:
            shares[share.name] = ShareState(share)
            filters[share.name] = PathFilter(share)
        self.shares, self.filters = shares, filters
        for share in added:
            self._begin_watch(self.shares[share.name])
            self.request_scan(share.name)
            log.info("share '%s' (%s, %s): watching and scanning", share.name, share.path,
                     self.shares[share.name].mode)

    # ------------------------------------------------------------------ scan thread

    def _run_scans(self) -> None:
        try:  # scans are background work: let queries and encoding go first
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (OSError, AttributeError):
            pass
        while not self._stop.is_set():
            try:
                if not self.scan_once():
                    self._scan_wake.wait(1.0)
                    self._scan_wake.clear()
            except Exception:
                log.exception("scanner: unexpected error; continuing")
                self._stop.wait(5.0)

    def scan_once(self) -> bool:
        """Run one requested or scheduled scan; False when none was due."""
        now = self.clock()
        with self._scan_lock:
            request = min(self._scan_requests, key=lambda r: len(r[1]), default=None)
            if request is not None:
                self._scan_requests.discard(request)
                if request[1] and (request[0], "") in self._scan_requests:
                    return True  # a full scan of that share is queued anyway
        if request is None:
            due = [s for s in self.shares.values() if s.available and now >= s.next_scan]
            if not due:
                return False
            request = (due[0].config.name, "")
        state = self.shares.get(request[0])
        if state is None or not state.available:
            return True
        report = scan(state.config, self.store, self.settle_seconds, below=request[1])
        self.scans_done += 1
        if not request[1]:
            state.last_scan = report
            state.next_scan = self.clock() + state.interval
        for folder in report.unreadable:
            if folder not in state.denied_logged:
                state.denied_logged.add(folder)
                log.warning("share '%s': cannot read folder %s (permission denied); skipping it",
                            state.config.name, state.config.path / folder)
        for rel in report.recent:  # being written right now: the event thread settles them
            try:
                self.events.put_nowait((state.config.name, ev.FileModifiedEvent(str(state.config.path / rel))))
            except queue.Full:
                self.overflow.set()
        if not report.available and state.available:
            self._next_health = 0.0
        if report.changes:
            log.info("scan of '%s'%s: %d files in %d folders, %.2f s; %s", state.config.name,
                     f"/{request[1]}" if request[1] else "", report.files, report.folders, report.seconds,
                     ", ".join(f"{n} {k}" for k, n in sorted(report.changes.items())))
            self.on_change()
        return True

    def status(self) -> list[dict]:
        """Per-share status for `nasclip status`."""
        out = []
        for state in self.shares.values():
            scan_info = None
            if state.last_scan is not None:
                scan_info = {"files": state.last_scan.files, "folders": state.last_scan.folders,
                             "seconds": round(state.last_scan.seconds, 3)}
            out.append({"name": state.config.name, "path": str(state.config.path), "watch": state.mode,
                        "available": state.available, "last_scan": scan_info})
        return out
