"""inotify plumbing: the watchdog observer, one recursive watch per share, and the kernel's limits.

watchdog 7.x facts this relies on (see DESIGN.md): a handler that raises
kills the observer silently, so ours only enqueues and the health check
restarts a dead observer; inotify queue overflow is only logged, so a log
filter turns it into a rescan; running out of watches below the root fails
silently, so folders are counted against ``fs.inotify.max_user_watches``
first; close-write exists only with inotify. The observer runs with
``generate_full_events`` so that a file moved in from outside arrives as a
move (complete) rather than a create (maybe still being written), and a folder
moved out as one move with no destination: both purge or scan by folder.

A share that cannot be watched (the limit, or inotify failing) is polled
instead, with one log line that says why and what to do.
"""

from __future__ import annotations

import errno
import logging
import queue
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from watchdog import events as ev
from watchdog.observers.inotify import InotifyObserver

from .scanner import count_folders

if TYPE_CHECKING:
    from .health import ShareState, ShareTable

log = logging.getLogger("nasclip.watcher")

INOTIFY_SYSCTL = Path("/proc/sys/fs/inotify")
WATCHED_EVENTS: list[type[ev.FileSystemEvent]] = [
    ev.FileCreatedEvent, ev.FileModifiedEvent, ev.FileClosedEvent, ev.FileAttribEvent, ev.FileDeletedEvent,
    ev.FileMovedEvent, ev.DirCreatedEvent, ev.DirDeletedEvent, ev.DirMovedEvent]
# watchdog's loggers that report "Inotify queue overflowed".
OVERFLOW_LOGGERS = ("watchdog.observers.inotify_c", "watchdog.observers.inotify")
# A folder moved out and back in keeps its inotify watch; watchdog warns when it
# registers that watch again. Harmless, and not something a NAS owner can act on.
warnings.filterwarnings("ignore", message="Callback with id .* already exists", category=RuntimeWarning)


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


class Watches:
    """The observer and one watch per inotify share; callers hold the watcher's lock."""

    def __init__(self, table: ShareTable, sink: "queue.Queue[tuple[str, ev.FileSystemEvent]]",
                 lost: threading.Event) -> None:
        self.table = table
        self.sink = sink
        self.lost = lost
        self.observer: InotifyObserver | None = None
        self.log_filter = _OverflowFilter(lost)
        # The call that adds a watch; a test may replace it to inject ENOSPC.
        self.add_watch: Callable[[Path, ev.FileSystemEventHandler], object] = self._schedule

    @property
    def kernel_overflows(self) -> int:
        """Inotify queue overflows the kernel reported (watchdog's log lines seen)."""
        return self.log_filter.seen

    def start(self) -> None:
        """Hear watchdog's overflow lines and start the observer (None when inotify cannot be used)."""
        for name in OVERFLOW_LOGGERS:
            logger = logging.getLogger(name)
            logger.addFilter(self.log_filter)
            if not logger.isEnabledFor(logging.WARNING):
                logger.setLevel(logging.WARNING)  # the filter only sees records that are created
        self.observer = self._new_observer()

    def close(self) -> None:
        """Stop the observer (call under the lock)."""
        if self.observer is not None:
            self.observer.stop()
            self.observer.join()
            self.observer = None

    def uninstall(self) -> None:
        """Stop hearing watchdog's log lines."""
        for name in OVERFLOW_LOGGERS:
            logging.getLogger(name).removeFilter(self.log_filter)

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
        if self.observer is None:
            raise OSError(errno.ENODEV, "inotify is not available")
        return self.observer.schedule(handler, str(path), recursive=True, event_filter=WATCHED_EVENTS)

    def watch(self, state: ShareState) -> None:
        """Watch an available share with inotify, or poll it and say why."""
        share = state.config
        state.watch = None
        if share.watch == "poll":
            state.mode = "poll"
            return
        state.folders = count_folders(share.path)
        limit = inotify_limit("max_user_watches")
        needed = state.folders + sum(s.folders for s in self.table.states.values() if s is not state and s.watch)
        if limit is not None and needed > limit:
            self.degrade(state, needed, limit)
            return
        try:
            state.watch = self.add_watch(share.path, _Handler(share.name, self.sink, self.lost))
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                self.degrade(state, needed, limit)
            else:
                state.mode = "poll (inotify failed)"
                log.warning("share '%s': cannot watch %s (%s); polling every %.0f s instead",
                            share.name, share.path, exc.strerror or exc, state.interval)
            return
        if state.mode != "inotify" and state.degraded_logged:
            log.info("share '%s': watching with inotify again", share.name)
        state.mode = "inotify"
        state.degraded_logged = False

    def degrade(self, state: ShareState, needed: int, limit: int | None) -> None:
        state.watch = None
        if not state.degraded_logged:
            state.degraded_logged = True
            self._say_degraded(state, needed, limit)
        # Set last: whoever sees the new mode (status, a test) finds its reason logged already.
        state.mode = "poll (inotify limit)"

    def _say_degraded(self, state: ShareState, needed: int, limit: int | None) -> None:
        log.warning("share '%s': out of inotify watches (%d folders to watch, fs.inotify.max_user_watches = %s); "
                    "polling every %.0f s instead. For prompt updates raise it: "
                    "sysctl -w fs.inotify.max_user_watches=%d (and put it in /etc/sysctl.d/)",
                    state.config.name, needed, limit if limit is not None else "unknown", state.interval,
                    _suggest(needed))

    def unwatch(self, state: ShareState) -> None:
        if state.watch is not None and self.observer is not None:
            try:
                self.observer.unschedule(state.watch)
            except (KeyError, OSError):
                pass
        state.watch = None

    def alive(self, state: ShareState) -> bool:
        """The emitter of an inotify share still runs (watchdog stops it when the root is deleted)."""
        if state.watch is None or self.observer is None:
            return False
        return any(e.watch == state.watch and e.is_alive() for e in list(self.observer.emitters))

    def recheck(self, state: ShareState) -> None:
        """Does the watch of an available share still fit the limit, or fit again after a fallback?"""
        if state.mode == "inotify":
            folders = count_folders(state.config.path)
            limit = inotify_limit("max_user_watches")
            needed = folders + sum(s.folders for s in self.table.states.values() if s is not state and s.watch)
            state.folders = folders
            if limit is not None and needed > limit:
                self.unwatch(state)
                self.degrade(state, needed, limit)
        elif state.mode.startswith("poll (inotify"):
            self.watch(state)

    def check_observer(self) -> list[str]:
        """Replace a dead observer (an exception in watchdog); returns the shares watched anew, to rescan."""
        if self.observer is None:
            return []
        reader = getattr(self.observer, "_inotify_fd", None)  # watchdog's thread reading the inotify fd
        if self.observer.is_alive() and (reader is None or reader.is_alive()):
            return []
        log.warning("the inotify observer stopped; starting a new one and rescanning")
        try:
            self.observer.stop()
        except Exception:  # it is dead already; only its resources matter
            pass
        self.observer = self._new_observer()
        rewatched = []
        for state in self.table.states.values():
            if state.available and state.config.watch == "inotify":
                state.watch = None
                self.watch(state)
                rewatched.append(state.config.name)
        return rewatched
