"""The watcher: file-system events and reconcile scans become catalog changes.

Two threads with the usual start/loop/stop shape. The event thread drains
watchdog events from a bounded queue, holds new files back until they are
complete (nasclip.settle), turns renames into in-place moves and deletes into
``gone`` rows, and checks the health of inotify shares. The scan thread runs
reconcile scans at low priority: at start-up, on each share's schedule, when
asked, and whenever events may have been lost; it also checks polled shares,
so a hung network mount holds up scanning, not the events of local disks.

watchdog 7.x facts this relies on (see DESIGN.md): a handler that raises
kills the observer silently, so ours only enqueues and the health check
restarts a dead observer; inotify queue overflow is only logged, so a log
filter turns it into a rescan; running out of watches below the root fails
silently, so folders are counted against ``fs.inotify.max_user_watches``
first; close-write exists only with inotify. The observer runs with
``generate_full_events`` so that a file moved in from outside arrives as a
move (complete) rather than a create (maybe still being written), and a folder
moved out as one move with no destination: both purge or scan by folder.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from watchdog import events as ev
from watchdog.observers.inotify import InotifyObserver

from ..config import ShareConfig
from ..errors import DiskFull
from ..store.store import Change, Deleted, Moved, Seen, Store
from .scanner import PathFilter, ScanReport, count_folders, scan, unavailable
from .settle import Activity, Settler

log = logging.getLogger("nasclip.watcher")

EVENT_QUEUE = 100_000   # events waiting for the event thread; beyond that they count as lost
DELETE_DELAY = 1.0      # deletes wait this long so a volume going away is not taken for a wipe
CLOSE_GRACE = 0.5       # after close-write (or a rename into place) the file must be quiet this long
OPEN_LIMIT = 10.0       # a file written to but never closed is taken as it is after this long unchanged
HEALTH_EVERY = 1.0     # seconds between checks that roots are there and watches alive
POLL_DEFAULT = 300.0    # scan interval of a polled share that does not set one
INOTIFY_DEFAULT = 3600.0
INOTIFY_SYSCTL = Path("/proc/sys/fs/inotify")
WATCHED_EVENTS: list[type[ev.FileSystemEvent]] = [
    ev.FileCreatedEvent, ev.FileModifiedEvent, ev.FileClosedEvent, ev.FileAttribEvent, ev.FileDeletedEvent,
    ev.FileMovedEvent, ev.DirCreatedEvent, ev.DirDeletedEvent, ev.DirMovedEvent]
# watchdog's loggers that report "Inotify queue overflowed".
# While the disk is full, changes wait in memory (in order) and are retried this often;
# beyond MAX_UNAPPLIED they are dropped for a rescan of every share once writes work again.
DISK_RETRY = 2.0
MAX_UNAPPLIED = 100_000
OVERFLOW_LOGGERS = ("watchdog.observers.inotify_c", "watchdog.observers.inotify")
# A folder moved out and back in keeps its inotify watch; watchdog warns when it
# registers that watch again. Harmless, and not something a NAS owner can act on.
warnings.filterwarnings("ignore", message="Callback with id .* already exists", category=RuntimeWarning)


class FoundRecent(ev.FileSystemEvent):
    """Not a watchdog event: a scan found a file modified within the settle time."""

    event_type = "nasclip-found-recent"


@dataclass
class ShareState:
    """A share as the watcher sees it."""

    config: ShareConfig
    mode: str = "starting"           # inotify | poll | poll (inotify limit) | poll (inotify failed) | unavailable
    available: bool | None = None    # None until first checked
    problem: str | None = None       # why it is unavailable
    was_mount: bool | None = None    # the root was a mount point when last seen available
    watch: object | None = None
    deleted_at: float = float("-inf")  # when events last said something was deleted here
    root_id: str | None = None       # "st_dev:st_ino" of the root when last seen available
    folders: int = 0                 # folders an inotify watch of it needs
    degraded_logged: bool = False
    next_scan: float = 0.0
    last_scan: ScanReport | None = None
    denied: set[str] = field(default_factory=set)

    @property
    def owned_by_scanner(self) -> bool:
        """Polled shares (maybe network mounts) are checked by the scan thread only."""
        return self.config.watch == "poll"

    @property
    def interval(self) -> float:
        configured = self.config.scan_interval
        if self.config.watch == "poll":
            return configured or POLL_DEFAULT
        if self.mode == "inotify":
            return configured or INOTIFY_DEFAULT
        return min(configured or POLL_DEFAULT, POLL_DEFAULT)  # lost inotify: polling must be prompt


def _root_identity(path: Path) -> str | None:
    """Device and inode of a share root: a mount point shows another one when unmounted."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_dev}:{st.st_ino}"


class _Handler(ev.FileSystemEventHandler):
    """Only enqueues: anything raised here would kill the observer thread silently."""

    def __init__(self, share: str, sink: "queue.Queue[tuple[str, ev.FileSystemEvent]]",
                 lost: threading.Event) -> None:
        self.share = share
        self.sink = sink
        self.lost = lost

    def dispatch(self, event: ev.FileSystemEvent) -> None:
        try:
            self.sink.put_nowait((self.share, event))
        except Exception:  # queue.Full above all: the rescan will find what this event said
            self.lost.set()


class _OverflowFilter(logging.Filter):
    """watchdog only logs inotify queue overflows; the log record becomes a rescan.

    watchdog's own lines (two per overflow, and a storm of them during a big
    copy) are dropped: the watcher logs one line that says what to do.
    """

    def __init__(self, flag: threading.Event) -> None:
        super().__init__()
        self.flag = flag
        self.seen = 0  # overflows the kernel reported

    def filter(self, record: logging.LogRecord) -> bool:
        if "overflow" not in str(record.msg).lower():
            return True
        if "events were lost" in str(record.msg):
            self.seen += 1
        self.flag.set()
        return False


def inotify_limit(name: str) -> int | None:
    """A value from /proc/sys/fs/inotify (max_user_watches, max_user_instances, max_queued_events)."""
    try:
        return int((INOTIFY_SYSCTL / name).read_text())
    except (OSError, ValueError):
        return None


def max_user_watches() -> int | None:
    """fs.inotify.max_user_watches, or None where it cannot be read."""
    return inotify_limit("max_user_watches")


def _suggest(needed: int) -> int:
    value = 524288
    while value < 2 * needed:
        value *= 2
    return value


class Watcher:
    """Keeps the catalog in step with the shares."""

    def __init__(self, store: Store, shares: tuple[ShareConfig, ...], settle_seconds: float,
                 on_change: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.monotonic,
                 queue_size: int = EVENT_QUEUE) -> None:
        self.store = store
        self.on_change = on_change
        self.clock = clock
        self.shares = {s.name: ShareState(s) for s in shares}
        self.filters = {s.name: PathFilter(s) for s in shares}
        self.events: queue.Queue[tuple[str, ev.FileSystemEvent]] = queue.Queue(queue_size)
        self.settler = Settler(settle_seconds, CLOSE_GRACE, OPEN_LIMIT, clock)
        self.settle_seconds = settle_seconds
        self.deletes: deque[tuple[float, Change]] = deque()
        self.lost = threading.Event()   # events were dropped (kernel or our queue): rescan
        self.overflows = 0              # times that was noticed (a burst of overflows may count once)
        self._overflow_report = (float("-inf"), 0)  # when the last warning was logged, overflows then
        self._lock = threading.RLock()  # share state and watches; both threads check health
        self._requests: dict[tuple[str, str], None] = {}  # ordered set of (share, folder) to scan
        self._scan_lock = threading.Lock()
        self._scan_wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._observer: InotifyObserver | None = None
        self._next_health = 0.0
        self._next_poll_health = 0.0
        # Files a scan found still arriving, queued for the settler: counted so
        # that status never shows "nothing settling" while some are on their way.
        self._arriving: dict[str, int] = {}
        self._count_lock = threading.Lock()
        self._log_filter = _OverflowFilter(self.lost)
        self._share_update: tuple[ShareConfig, ...] | None = None  # from a config reload
        self._unapplied: list[Change] = []  # changes the catalog could not take (a full disk)
        self._unapplied_lost = False        # some were dropped: rescan once writes work
        self._retry_at = 0.0
        # The call that adds a watch; a test may replace it to inject ENOSPC.
        self.add_watch: Callable[[Path, ev.FileSystemEventHandler], object] = self._schedule

    @property
    def settle_seconds(self) -> float:
        return self.settler.settle_seconds

    @settle_seconds.setter
    def settle_seconds(self, seconds: float) -> None:
        """Also set by a config reload."""
        self.settler.settle_seconds = seconds
        self.settler.close_grace = min(CLOSE_GRACE, seconds)
        self.settler.open_limit = max(OPEN_LIMIT, 5 * seconds)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the observer and both threads; returns at once (shares are checked by the threads)."""
        for name in OVERFLOW_LOGGERS:
            logger = logging.getLogger(name)
            logger.addFilter(self._log_filter)
            if not logger.isEnabledFor(logging.WARNING):
                logger.setLevel(logging.WARNING)  # the filter only sees records that are created
        self._observer = self._new_observer()
        self.request_scan()
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
        with self._lock:
            if self._observer is not None:
                self._observer.stop()
                self._observer.join()
                self._observer = None
        for name in OVERFLOW_LOGGERS:
            logging.getLogger(name).removeFilter(self._log_filter)

    def is_alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    @property
    def kernel_overflows(self) -> int:
        """Inotify queue overflows the kernel reported (watchdog's log lines seen)."""
        return self._log_filter.seen

    def request_scan(self, share: str | None = None, below: str = "") -> None:
        """Ask for a reconcile scan of one share (or all), optionally of one folder only."""
        below = below.strip("/")
        with self._scan_lock:
            for name in ([share] if share else list(self.shares)):
                parts = below.split("/") if below else []
                # A queued scan of the share or of a folder above covers this one.
                if any((name, "/".join(parts[:i])) in self._requests for i in range(len(parts) + 1)):
                    continue
                self._requests[(name, below)] = None
        self._scan_wake.set()

    # ------------------------------------------------------------------ watches

    def _new_observer(self) -> InotifyObserver | None:
        try:
            observer = InotifyObserver(generate_full_events=True)
            observer.start()
        except OSError as exc:
            log.warning("cannot use inotify (%s; fs.inotify.max_user_instances = %s); every share is polled",
                        exc.strerror or exc, inotify_limit("max_user_instances"))
            return None
        return observer

    def _schedule(self, path: Path, handler: ev.FileSystemEventHandler) -> object:
        if self._observer is None:
            raise OSError(errno.ENODEV, "inotify is not available")
        return self._observer.schedule(handler, str(path), recursive=True, event_filter=WATCHED_EVENTS)

    def _watch(self, state: ShareState) -> None:
        """Watch an available share with inotify, or poll it and say why (call under the lock)."""
        share = state.config
        state.watch = None
        if share.watch == "poll":
            state.mode = "poll"
            return
        state.folders = count_folders(share.path)
        limit = inotify_limit("max_user_watches")
        needed = state.folders + sum(s.folders for s in self.shares.values() if s is not state and s.watch)
        if limit is not None and needed > limit:
            self._degrade(state, needed, limit)
            return
        try:
            state.watch = self.add_watch(share.path, _Handler(share.name, self.events, self.lost))
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                self._degrade(state, needed, limit)
            else:
                state.mode = "poll (inotify failed)"
                log.warning("share '%s': cannot watch %s (%s); polling every %.0f s instead",
                            share.name, share.path, exc.strerror or exc, state.interval)
            return
        if state.mode != "inotify" and state.degraded_logged:
            log.info("share '%s': watching with inotify again", share.name)
        state.mode = "inotify"
        state.degraded_logged = False

    def _degrade(self, state: ShareState, needed: int, limit: int | None) -> None:
        state.mode = "poll (inotify limit)"
        state.watch = None
        if state.degraded_logged:
            return
        state.degraded_logged = True
        log.warning("share '%s': out of inotify watches (%d folders to watch, fs.inotify.max_user_watches = %s); "
                    "polling every %.0f s instead. For prompt updates raise it: "
                    "sysctl -w fs.inotify.max_user_watches=%d (and put it in /etc/sysctl.d/)",
                    state.config.name, needed, limit if limit is not None else "unknown", state.interval,
                    _suggest(needed))

    def _unwatch(self, state: ShareState) -> None:
        if state.watch is not None and self._observer is not None:
            try:
                self._observer.unschedule(state.watch)  # type: ignore[arg-type]
            except (KeyError, OSError):
                pass
        state.watch = None

    def _watch_alive(self, state: ShareState) -> bool:
        """The emitter of an inotify share still runs (watchdog stops it when the root is deleted)."""
        if state.watch is None or self._observer is None:
            return False
        return any(e.watch == state.watch and e.is_alive() for e in list(self._observer.emitters))

    # ------------------------------------------------------------------ health

    def _problem(self, state: ShareState) -> str | None:
        """Why the share cannot be trusted now (missing, empty, unmounted), or None.

        An empty root is fine right after delete events emptied it: an
        unmounted volume sends none (inotify says IN_UNMOUNT, a rename away
        says nothing).
        """
        emptied = self.clock() - state.deleted_at < DELETE_DELAY + 2 * HEALTH_EVERY
        # The very folder we saw before, now empty, was emptied (photos moved or deleted
        # while we were not told); an unmounted volume leaves a different folder behind.
        identity = _root_identity(state.config.path)
        if state.root_id is None:
            state.root_id = self.store.get_meta(f"share_root:{state.config.name}")
        same_root = identity is not None and identity == state.root_id
        problem = unavailable(state.config, self.store, empty_ok=emptied or same_root)
        if problem is None and identity is not None and identity != state.root_id:
            state.root_id = identity
            self.store.set_meta(f"share_root:{state.config.name}", identity)
        if problem is None:
            mounted = os.path.ismount(state.config.path)
            if state.was_mount and not mounted:
                return f"{state.config.path} is no longer a mount point"
            state.was_mount = mounted
        return problem

    def _check_share(self, state: ShareState) -> None:
        """Notice a share going away, coming back, or losing its watch."""
        problem = self._problem(state)
        with self._lock:
            name = state.config.name
            if problem is not None:
                if state.available is not False:
                    state.available, state.problem, state.mode = False, problem, "unavailable"
                    self._unwatch(state)
                    log.warning("share '%s': %s; its photos stay searchable and nothing there is deleted until "
                                "it is back (is the volume mounted?)", name, problem)
                state.problem = problem
            elif state.available is not True:
                if state.available is False:
                    log.info("share '%s' is back; rescanning", name)
                state.available, state.problem = True, None
                self._watch(state)
                self.request_scan(name)
            elif state.mode == "inotify" and not self._watch_alive(state):
                log.warning("share '%s': its inotify watch stopped; watching again and rescanning", name)
                self._unwatch(state)
                self._watch(state)
                self.request_scan(name)

    def _check_observer(self) -> None:
        """A dead observer (an exception in watchdog) is replaced, and every inotify share rescanned."""
        with self._lock:
            if self._observer is None or self._stop.is_set():
                return
            reader = getattr(self._observer, "_inotify_fd", None)  # watchdog's thread reading the inotify fd
            if self._observer.is_alive() and (reader is None or reader.is_alive()):
                return
            log.warning("the inotify observer stopped; starting a new one and rescanning")
            try:
                self._observer.stop()
            except Exception:  # it is dead already; only its resources matter
                pass
            self._observer = self._new_observer()
            for state in self.shares.values():
                if state.available and state.config.watch == "inotify":
                    state.watch = None
                    self._watch(state)
                    self.request_scan(state.config.name)

    def _check_health(self, owned_by_scanner: bool) -> None:
        if not owned_by_scanner:
            self._check_observer()
        for state in list(self.shares.values()):
            if state.owned_by_scanner == owned_by_scanner:
                self._check_share(state)

    # ------------------------------------------------------------------ event thread

    def _run_events(self) -> None:
        while not self._stop.is_set():
            try:
                self.loop(timeout=0.2)
            except Exception:  # the watcher must outlive any one bad event
                log.exception("watcher: unexpected error; continuing")
                self._stop.wait(1.0)

    def loop(self, timeout: float = 0.0) -> int:
        """Drain events, settle files, apply due deletes, check health; returns changes applied."""
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
        if self.lost.is_set():
            self.lost.clear()
            self.overflows += 1
            self.request_scan()
            logged_at, logged_count = self._overflow_report
            if now - logged_at >= 60.0:  # one line a minute at most, however big the copy
                self._overflow_report = (now, self.overflows)
                log.warning("file events were lost (inotify queue overflow%s); rescanning every share. If this "
                            "happens often, raise fs.inotify.max_queued_events (now %s)",
                            f", {self.overflows - logged_count} times in the last minute" if logged_count else "",
                            inotify_limit("max_queued_events"))
        changes += self._due_deletes(now)
        if now >= self._next_health:
            self._next_health = now + HEALTH_EVERY
            self._check_health(owned_by_scanner=False)
        with self._count_lock:  # status() sees a settled file either settling or in the catalog
            for (share, relpath), size, mtime_ns in self.settler.ready():
                changes.append(Seen(share, relpath, size, mtime_ns))
            return self._apply(changes)

    def _apply(self, changes: list[Change]) -> int:
        shares = self.shares
        changes = [c for c in changes if c.share in shares and shares[c.share].available]
        return self._write(changes)

    def _write(self, changes: list[Change]) -> int:
        """Apply changes after any kept from a full disk; on DiskFull keep them all, in order, for later."""
        if self._unapplied:
            changes = self._unapplied + changes
            if self.clock() < self._retry_at:
                self._keep(changes)
                return 0
        if not changes:
            return 0
        try:
            self.store.apply(changes)
        except DiskFull:  # store.space reports it; nothing is dropped
            self._keep(changes)
            self._retry_at = self.clock() + DISK_RETRY
            return 0
        self._unapplied = []
        if self._unapplied_lost:
            self._unapplied_lost = False
            self.request_scan()
        self.on_change()
        return len(changes)

    def _keep(self, changes: list[Change]) -> None:
        if len(changes) > MAX_UNAPPLIED:
            # Too many to hold: a scan of every share finds them again (scans are the source of truth).
            self._unapplied_lost, changes = True, []
        self._unapplied = changes

    def _due_deletes(self, now: float) -> list[Change]:
        due: list[Change] = []
        while self.deletes and now - self.deletes[0][0] >= DELETE_DELAY:
            due.append(self.deletes.popleft()[1])
        ready: list[Change] = []
        for name in {c.share for c in due}:
            state = self.shares.get(name)
            if state is None:
                continue
            if not state.available or self._problem(state) is not None:
                # Files vanishing because the volume is going away are not deletions.
                self._next_health = 0.0
                continue
            root = state.config.path
            for change in (c for c in due if c.share == name):
                assert isinstance(change, Deleted)
                if not os.path.lexists(root / change.relpath):
                    ready.append(change)
                elif change.folder:  # replaced by a new folder of that name
                    self.request_scan(name, change.relpath)
                else:  # replaced (e.g. saved as delete + create): settle the new file
                    self.settler.saw((name, change.relpath), str(root / change.relpath), Activity.CHANGED)
        return ready

    def _relative(self, root: str, path: str | bytes) -> str | None:
        """Path below the share root, or None if outside it (or the root itself)."""
        path = os.fsdecode(path)
        if not path.startswith(root + os.sep):
            return None
        return path[len(root) + 1:].replace(os.sep, "/")

    def _delete(self, state: ShareState, change: Deleted) -> None:
        state.deleted_at = now = self.clock()
        self.deletes.append((now, change))

    def _saw(self, share: str, relpath: str, what: Activity) -> None:
        path = str(self.shares[share].config.path / relpath)
        if not self.settler.saw((share, relpath), path, what):
            self.lost.set()  # too many files settling at once: a scan catches up later

    def _on_event(self, share: str, event: ev.FileSystemEvent, changes: list[Change]) -> None:
        if event is None:  # update_shares() waking us up
            return
        if isinstance(event, FoundRecent):
            with self._count_lock:
                self._on_file_event(share, event, changes)
                if share in self._arriving:
                    self._arriving[share] -= 1
        else:
            self._on_file_event(share, event, changes)

    def _locate(self, path: str | bytes) -> tuple[ShareState, str] | None:
        """The available share holding path, and the path below its root."""
        for state in self.shares.values():
            rel = self._relative(str(state.config.path), path)
            if rel is not None:
                return (state, rel) if state.available else None
        return None

    def _on_move(self, event: ev.FileSystemEvent, changes: list[Change]) -> None:
        """A rename, resolved against every share: one inotify instance watches them all, so a
        move from one share to another arrives as one paired event, not as a delete and a create."""
        src = self._locate(event.src_path)
        dest = self._locate(event.dest_path) if event.dest_path else None
        folder = event.is_directory
        wanted = (lambda loc: self.filters[loc[0].config.name].folder_wanted(loc[1])) if folder else \
            (lambda loc: self.filters[loc[0].config.name].wanted(loc[1]))
        src_ok = src is not None and wanted(src)
        dest_ok = dest is not None and wanted(dest)
        if src is not None:
            name = src[0].config.name
            if folder:
                self.settler.forget_below(name, src[1])
            else:
                self.settler.forget((name, src[1]))
        if src_ok and dest_ok:
            changes.append(Moved(src[0].config.name, src[1], dest[0].config.name, dest[1], folder=folder))
            if folder:
                # Applied now, so the scan of the destination below finds the
                # photos already there instead of taking them for new ones.
                self._apply(changes)
                changes.clear()
        elif src_ok:  # moved out of the shares, or into an excluded folder
            self._delete(src[0], Deleted(src[0].config.name, src[1], folder=folder))
        if dest_ok:
            if folder:  # moved in from outside, or files not known yet
                self.request_scan(dest[0].config.name, dest[1])
            else:
                self._saw(dest[0].config.name, dest[1], Activity.RENAMED)

    def _on_file_event(self, share: str, event: ev.FileSystemEvent, changes: list[Change]) -> None:
        state = self.shares.get(share)
        if state is None or not state.available:
            return  # the rescan when it is back covers whatever happened meanwhile
        if isinstance(event, (ev.DirMovedEvent, ev.FileMovedEvent)):
            if not event.is_synthetic:  # synthetic ones come with a folder move, which carries them
                self._on_move(event, changes)
            return
        root = str(state.config.path)
        src = self._relative(root, event.src_path)
        pathfilter = self.filters[share]
        if event.is_directory:
            src_ok = src is not None and pathfilter.folder_wanted(src)
            if isinstance(event, ev.DirDeletedEvent):
                if src is None:  # the root itself
                    self._next_health = 0.0
                elif src_ok:
                    self.settler.forget_below(share, src)
                    self._delete(state, Deleted(share, src, folder=True))
            elif isinstance(event, ev.DirCreatedEvent) and not event.is_synthetic and src_ok:
                self.request_scan(share, src)
            return
        if src is None or not pathfilter.wanted(src):
            return
        if isinstance(event, ev.FileDeletedEvent):
            self.settler.forget((share, src))
            self._delete(state, Deleted(share, src))
        elif isinstance(event, ev.FileCreatedEvent):
            if not event.is_synthetic:  # synthetic ones come with a folder, which is scanned
                self._saw(share, src, Activity.CREATED)
        elif isinstance(event, ev.FileModifiedEvent):
            self._saw(share, src, Activity.WRITTEN)
        elif isinstance(event, ev.FileClosedEvent):
            self._saw(share, src, Activity.CLOSED)
        elif isinstance(event, (ev.FileAttribEvent, FoundRecent)):
            self._saw(share, src, Activity.CHANGED)

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
        and status() read them concurrently.
        """
        wanted, self._share_update = {s.name: s for s in self._share_update or ()}, None
        with self._lock:
            shares, filters = dict(self.shares), dict(self.filters)
            for name, state in self.shares.items():
                if wanted.get(name) == state.config:
                    continue
                self._unwatch(state)
                del shares[name], filters[name]
                self.settler.forget_share(name)
                self.deletes = deque(d for d in self.deletes if d[1].share != name)
                with self._count_lock:
                    self._arriving.pop(name, None)
                if name not in wanted:
                    try:
                        gone = self.store.apply([Deleted(name, "", folder=True)]).get("deleted", 0)
                    except DiskFull:
                        self._keep(self._unapplied + [Deleted(name, "", folder=True)])
                        gone = 0
                    log.info("share '%s' was removed from the config: %d photos leave the search results",
                             name, gone)
            added = [wanted[n] for n in wanted if n not in shares]
            for share in added:
                shares[share.name] = ShareState(share)
                filters[share.name] = PathFilter(share)
            self.shares, self.filters = shares, filters
        for share in added:
            log.info("share '%s' (%s, watch: %s): checking and scanning", share.name, share.path, share.watch)
            self.request_scan(share.name)
        self._next_health = self._next_poll_health = 0.0  # new shares are checked (and watched) at once

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

    def _next_request(self) -> tuple[str, str] | None:
        shares = self.shares
        with self._scan_lock:
            for key in [k for k in self._requests if k[0] not in shares]:
                del self._requests[key]  # a share removed by a reload
            ready = [k for k in self._requests if shares[k[0]].available is not None]
            if not ready:
                return None
            key = next((k for k in ready if not k[1]), ready[0])  # whole shares first
            del self._requests[key]
            for other in [k for k in self._requests if k[0] == key[0] and
                          (not key[1] or k[1].startswith(key[1] + "/"))]:
                del self._requests[other]  # this scan covers it
            return key

    def scan_once(self) -> bool:
        """Run one requested or scheduled scan; False when none was due."""
        now = self.clock()
        if now >= self._next_poll_health:
            self._next_poll_health = now + HEALTH_EVERY
            self._check_health(owned_by_scanner=True)
        request = self._next_request()
        scheduled = request is None
        if request is None:
            due = [s for s in self.shares.values() if s.available and now >= s.next_scan]
            if not due:
                return False
            request = (due[0].config.name, "")
        name, below = request
        state = self.shares.get(name)
        if state is None or not state.available:
            return True  # its return is noticed by the health check, which asks for a scan
        try:
            report = scan(state.config, self.store, self.settle_seconds, below, pathfilter=self.filters.get(name),
                          check=lambda: self._problem(state))
        except DiskFull:
            # store.space reports it; the scan is simply done again once there is room.
            self.request_scan(name, below)
            self._stop.wait(DISK_RETRY * 5)
            return True
        if not report.available:
            self._check_share(state)
            return True
        self._log_unreadable(state, report)
        for relpath in report.recent:  # being written right now, maybe: the event thread settles them
            with self._count_lock:
                try:
                    self.events.put_nowait((name, FoundRecent(str(state.config.path / relpath))))
                except queue.Full:
                    self.lost.set()
                    break
                self._arriving[name] = self._arriving.get(name, 0) + 1
        if not below:
            state.last_scan = report
            state.next_scan = self.clock() + state.interval
            if scheduled and state.config.watch == "inotify":
                self._recheck_watch(state)
        if report.changes:
            log.info("scan of '%s'%s: %d photos in %d folders, %.2f s; %s", name, f"/{below}" if below else "",
                     report.files, report.folders, report.seconds,
                     ", ".join(f"{n} {k}" for k, n in sorted(report.changes.items())))
            self.on_change()
        return True

    def _log_unreadable(self, state: ShareState, report: ScanReport) -> None:
        """Each unreadable folder is logged once (again only after it was readable in between)."""
        for folder, reason in report.unreadable.items():
            if folder not in state.denied:
                state.denied.add(folder)
                log.warning("share '%s': cannot read folder %s (%s); skipping it and keeping what was indexed "
                            "there. Give the nasclip user read access to index it", state.config.name,
                            state.config.path / folder if folder != "." else state.config.path, reason)
        below = report.below
        for folder in list(state.denied):
            if (not below or folder == below or folder.startswith(below + "/")) and folder not in report.unreadable:
                state.denied.discard(folder)

    def _recheck_watch(self, state: ShareState) -> None:
        """After a full scan: does the inotify watch still fit the limit, or fit again after a fallback?"""
        with self._lock:
            if not state.available:
                return
            if state.mode == "inotify":
                folders = count_folders(state.config.path)
                limit = inotify_limit("max_user_watches")
                needed = folders + sum(s.folders for s in self.shares.values() if s is not state and s.watch)
                state.folders = folders
                if limit is not None and needed > limit:
                    self._unwatch(state)
                    self._degrade(state, needed, limit)
            elif state.mode.startswith("poll (inotify"):
                self._watch(state)

    # ------------------------------------------------------------------ status

    def status(self) -> list[dict]:
        """Per-share status for `nasclip status`."""
        out = []
        now = self.clock()
        with self._count_lock:
            settling = {name: self.settler.counts.get(name, 0) + self._arriving.get(name, 0) for name in self.shares}
        for state in self.shares.values():
            scan_info = None
            if state.last_scan is not None:
                scan_info = {"files": state.last_scan.files, "folders": state.last_scan.folders,
                             "seconds": round(state.last_scan.seconds, 3),
                             "cpu_seconds": round(state.last_scan.cpu_seconds, 3)}
            out.append({"name": state.config.name, "path": str(state.config.path), "watch": state.mode,
                        "available": state.available is not False, "problem": state.problem,
                        "last_scan": scan_info,
                        "next_scan_in": round(max(0.0, state.next_scan - now), 1) if state.available else None,
                        "settling": settling[state.config.name],
                        "unreadable_folders": sorted(state.denied)})
        return out
