"""The one start/loop/stop shape: a Worker runs steps until stopped and survives every error."""

from __future__ import annotations

import logging
import threading

import pytest

from nasclip.errors import NasclipError
from nasclip.lifecycle import Worker

log = logging.getLogger("nasclip.test-lifecycle")
PATIENCE = 10.0  # seconds: generous bounds for events that normally take microseconds


class Steps:
    """A step function that plays a script of outcomes and signals each call."""

    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.called = threading.Event()
        self.done = threading.Event()

    def __call__(self) -> float:
        self.calls += 1
        self.called.set()
        outcome = self.outcomes.pop(0) if self.outcomes else 3600.0
        if not self.outcomes:
            self.done.set()
        if isinstance(outcome, BaseException):
            raise outcome
        assert isinstance(outcome, float)
        return outcome


def test_steps_run_back_to_back_until_one_asks_to_idle() -> None:
    steps = Steps(0.0, 0.0, 0.0, 3600.0)
    worker = Worker("t-worker", steps, log, "tester")
    worker.start()
    try:
        assert steps.done.wait(PATIENCE)
        assert worker.is_alive()
        assert steps.calls == 4  # idling for an hour now: no fifth call
    finally:
        worker.stop()
        worker.join(PATIENCE)
    assert not worker.is_alive()


def test_wake_ends_an_idle_wait_and_stop_ends_the_loop() -> None:
    steps = Steps(3600.0, 3600.0)
    worker = Worker("t-worker", steps, log, "tester")
    worker.start()
    assert steps.called.wait(PATIENCE)
    steps.called.clear()
    worker.wake()
    assert steps.called.wait(PATIENCE), "wake() did not end the hour-long idle"
    assert steps.calls == 2
    worker.stop()
    worker.join(PATIENCE)
    assert not worker.is_alive() and steps.calls == 2


@pytest.mark.parametrize("error, logged", [
    (NasclipError("the share went away"), "tester: the share went away"),
    (ZeroDivisionError("boom"), "tester: unexpected error; continuing in 0.001 s"),
])
def test_an_error_is_logged_and_the_worker_carries_on(error: Exception, logged: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    steps = Steps(error, 0.0, 3600.0)
    worker = Worker("t-worker", steps, log, "tester", error_pause=0.001)
    with caplog.at_level(logging.ERROR, logger=log.name):
        worker.start()
        try:
            assert steps.done.wait(PATIENCE), "the worker died on the error"
            assert worker.is_alive()
        finally:
            worker.stop()
            worker.join(PATIENCE)
    records = [r for r in caplog.records if r.name == log.name]
    assert [r.getMessage() for r in records] == [logged]
    assert (records[0].exc_info is not None) == (not isinstance(error, NasclipError))  # a traceback for surprises


def test_stop_cuts_the_pause_after_an_error_short() -> None:
    steps = Steps(NasclipError("failing"))
    worker = Worker("t-worker", steps, log, "tester", error_pause=3600.0)
    worker.start()
    assert steps.called.wait(PATIENCE)
    worker.stop()
    worker.join(PATIENCE)
    assert not worker.is_alive() and steps.calls == 1
