"""The one shape of every long-running part: start, loop, stop.

Each part (indexer, query server, watcher) does its work in ``step()``: one
unit of work, returning how long it may idle before the next. ``Worker`` runs
steps on a thread until ``stop()``; unit tests call ``step()`` (or the part's
own ``loop()``) directly, one at a time, with no thread and no sleeps. The
daemon holds every part as a ``Component`` and starts, reconfigures and stops
them alike.

Errors never end a worker: a ``NasclipError`` is logged as its message, any
other exception with its traceback, and the worker pauses ``error_pause``
seconds (cut short by ``stop()``) before trying again. A part that dies
silently is the one failure a NAS owner cannot see.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Callable, Protocol

from .config import Config
from .errors import NasclipError


class Component(Protocol):
    """What the daemon needs of each long-running part."""

    def start(self) -> None: ...

    def stop(self) -> None:
        """Ask the part to end soon; returns at once."""

    def close(self) -> None:
        """Stop, wait for the thread, release resources; idempotent."""

    def is_alive(self) -> bool: ...

    def status(self) -> Any:
        """This part's piece of the status reply (service/status.py)."""

    def reconfigure(self, config: Config) -> None:
        """Take on the settings of a reloaded config that may change live."""


def lower_thread_priority(nice: int) -> None:
    """Give the calling thread (only it: Linux nice values are per thread) at least this nice value.

    And the batch scheduling policy.
    Threads it starts inherit the value, which is how ONNX Runtime's pool
    threads get it (they start when a session is made). Raising one's own
    nice value needs no privilege; lowering it again would, so it only rises.
    """
    if nice <= 0:
        return
    tid = threading.get_native_id()
    try:
        if os.getpriority(os.PRIO_PROCESS, tid) < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        # SCHED_BATCH: CPU-bound work that need not preempt anything on wake-up.
        if os.sched_getscheduler(tid) == os.SCHED_OTHER:
            os.sched_setscheduler(tid, os.SCHED_BATCH, os.sched_param(0))
    except OSError as exc:  # a sandbox refusing setpriority: work goes on at the daemon's priority
        logging.getLogger("nasclip").warning("cannot lower the priority of thread %s: %s", tid, exc)


class Worker:
    """Runs ``step()`` on a thread until stopped.

    ``step`` returns the seconds to wait before the next step (0 for at once);
    ``wake()`` ends a wait early, ``stop()`` ends it and the loop.
    """

    def __init__(self, name: str, step: Callable[[], float], log: logging.Logger, what: str,
                 error_pause: float = 5.0, nice: int = 0) -> None:
        self.name = name
        self.nice = nice  # of the worker's thread (lower_thread_priority)
        self._step = step
        self._log = log
        self._what = what
        self.error_pause = error_pause
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def pause(self, seconds: float) -> None:
        """Wait, ended early only by ``stop()`` (not by ``wake()``)."""
        self._stop.wait(seconds)

    def _run(self) -> None:
        lower_thread_priority(self.nice)
        while not self._stop.is_set():
            try:
                idle = self._step()
            except NasclipError as exc:
                self._log.error("%s: %s", self._what, exc)
                self.pause(self.error_pause)
                continue
            except Exception:  # never let the worker die silently
                self._log.exception("%s: unexpected error; continuing in %g s", self._what, self.error_pause)
                self.pause(self.error_pause)
                continue
            if idle > 0 and not self._stop.is_set():
                self._wake.wait(idle)
                self._wake.clear()


class WorkerPart:
    """start, stop, join and is_alive of a part whose steps its ``Worker`` (``self._worker``) runs."""

    _worker: Worker

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        self._worker.stop()

    def join(self, timeout: float | None = None) -> None:
        self._worker.join(timeout)

    def is_alive(self) -> bool:
        return self._worker.is_alive()
