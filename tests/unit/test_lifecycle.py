"""The one start/loop/stop shape: a Worker runs steps until stopped and survives every error."""

from __future__ import annotations

import logging
import os
import threading
import time

import numpy as np
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


def wait_for(predicate, timeout: float = PATIENCE) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def thread_priorities() -> dict[int, tuple[int, int]]:
    """{tid: (nice, policy)} of this process's threads, from /proc."""
    found = {}
    for task in os.listdir("/proc/self/task"):
        try:
            fields = open(f"/proc/self/task/{task}/stat").read().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # a thread (another test's) that ended since the listing
            continue
        found[int(task)] = (int(fields[16]), int(fields[38]))  # nice, policy (stat fields 19 and 41)
    return found


def test_a_worker_with_nice_runs_its_steps_at_that_priority_and_batch_policy() -> None:
    seen: list[tuple[int, int]] = []

    def step() -> float:
        tid = threading.get_native_id()
        seen.append((os.getpriority(os.PRIO_PROCESS, tid), os.sched_getscheduler(tid)))
        return 3600.0

    worker = Worker("t-nice", step, log, "tester", nice=7)
    worker.start()
    try:
        assert wait_for(lambda: seen)
    finally:
        worker.stop()
        worker.join(PATIENCE)
    assert seen[0] == (7, os.SCHED_BATCH)
    me = threading.get_native_id()
    assert (os.getpriority(os.PRIO_PROCESS, me), os.sched_getscheduler(me)) == (0, os.SCHED_OTHER), \
        "only the worker's thread changes"


def test_the_image_encoders_threads_inherit_its_nice_and_the_text_encoders_do_not() -> None:
    from conftest import DEMO_MODEL

    from nasclip.indexing.encoder import Encoder
    from nasclip.model.spec import load_model_spec

    spec = load_model_spec(DEMO_MODEL)
    before = set(thread_priorities())
    text_only = Encoder.open(spec, backend="onnx", threads=2, image=False, text_threads=2)
    text_threads = set(thread_priorities()) - before
    encoder = Encoder.open(spec, backend="onnx", threads=2, image_nice=12, text=False)
    try:
        new = {tid: p for tid, p in thread_priorities().items() if tid not in before | text_threads}
        assert new and all(p == (12, os.SCHED_BATCH) for p in new.values()), new
        assert text_threads and all(thread_priorities()[t][0] == 0 for t in text_threads)
        encoder.encode_images(np.zeros((1, 3, 224, 224), np.float32))  # the session works
    finally:
        encoder.close()
        text_only.close()
