"""Concurrent queries' work shares runs (nasclip/query/batching.py): texts with the real demo encoder, scans
with a real FAISS index."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import DEMO_MODEL

from nasclip.errors import ModelError
from nasclip.indexing.encoder import Encoder
from nasclip.model.spec import load_model_spec
from nasclip.query.batching import Batcher
from nasclip.query.textbatch import encode_texts
from nasclip.store.vectors import VectorIndex

PATIENCE = 10.0


class Spy:
    """The real encoder, recording each run's texts; the first run can be held until released."""

    def __init__(self, encoder: Encoder, hold_first: bool = False) -> None:
        self.encoder = encoder
        self.runs: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        self.runs.append(list(texts))
        self.entered.set()
        assert self.release.wait(PATIENCE)
        return self.encoder.encode_texts(texts)


@pytest.fixture(scope="module")
def encoder():
    encoder = Encoder.open(load_model_spec(DEMO_MODEL), backend="onnx", threads=1, image=False)
    yield encoder
    encoder.close()


def in_threads(batcher: Batcher, spy, texts: list[str]) -> tuple[list[threading.Thread], dict]:
    results: dict[str, object] = {}

    def ask(text: str) -> None:
        try:
            results[text] = encode_texts(batcher, spy, [text])[0]
        except Exception as exc:  # recorded for the test to look at
            results[text] = exc

    threads = [threading.Thread(target=ask, args=(t,)) for t in texts]
    for thread in threads:
        thread.start()
    return threads, results


def test_a_lone_text_runs_at_once_and_gets_the_encoders_vector(encoder) -> None:
    batcher = Batcher()
    vector = encode_texts(batcher, encoder, ["a red circle"])[0]
    assert np.array_equal(vector, encoder.encode_texts(["a red circle"])[0])
    assert (batcher.runs, batcher.jobs) == (1, 1)


def test_texts_arriving_during_a_run_share_the_next_one(encoder) -> None:
    spy = Spy(encoder, hold_first=True)
    batcher = Batcher()
    first, results = in_threads(batcher, spy, ["a blue square"])
    assert spy.entered.wait(PATIENCE)  # the first run is under way, and held
    others = [f"a {c} {s}" for c in ("red", "green", "yellow", "purple") for s in ("circle", "star", "triangle")]
    rest, more = in_threads(batcher, spy, others + others[:3])  # three asked twice
    # Every other thread is queued behind the held run before it ends.
    while len(batcher._queue) < len(others) + 3:
        threading.Event().wait(0.001)
    spy.release.set()
    for thread in first + rest:
        thread.join(PATIENCE)
    results.update(more)
    assert spy.runs[0] == ["a blue square"]
    assert sorted(spy.runs[1]) == sorted(others), "one run for the rest, each text once"
    assert len(spy.runs) == 2
    want = dict(zip(others + ["a blue square"], encoder.encode_texts(others + ["a blue square"])))
    for text, vector in results.items():
        np.testing.assert_allclose(vector, want[text], atol=1e-6)


def test_a_batch_is_at_most_max_batch_texts(encoder) -> None:
    spy = Spy(encoder, hold_first=True)
    batcher = Batcher(max_batch=4)
    first, _ = in_threads(batcher, spy, ["x0"])
    assert spy.entered.wait(PATIENCE)
    rest, results = in_threads(batcher, spy, [f"text {i}" for i in range(10)])
    while len(batcher._queue) < 10:
        threading.Event().wait(0.001)
    spy.release.set()
    for thread in first + rest:
        thread.join(PATIENCE)
    assert [len(run) for run in spy.runs] == [1, 4, 4, 2] and len(results) == 10


def test_an_encoder_error_reaches_every_query_of_that_run_and_the_next_ones_still_run(encoder) -> None:
    class Failing(Spy):
        def encode_texts(self, texts: list[str]) -> np.ndarray:
            super().encode_texts(texts)
            if len(self.runs) <= 2:
                raise ModelError("text encoder failed")
            return self.encoder.encode_texts(texts)

    spy = Failing(encoder, hold_first=True)
    batcher = Batcher()
    first, results = in_threads(batcher, spy, ["one"])
    assert spy.entered.wait(PATIENCE)
    rest, more = in_threads(batcher, spy, ["two", "three"])
    while len(batcher._queue) < 2:
        threading.Event().wait(0.001)
    spy.release.set()
    for thread in first + rest:
        thread.join(PATIENCE)
    results.update(more)
    assert all(isinstance(results[t], ModelError) for t in ("one", "two", "three"))
    assert encode_texts(batcher, spy, ["four"])[0].shape == (encoder.dim,)
    assert not batcher._running and not batcher._queue


def test_different_models_never_share_a_run(encoder) -> None:
    a, b = Spy(encoder, hold_first=True), Spy(encoder)
    batcher = Batcher()
    first, _ = in_threads(batcher, a, ["held"])
    assert a.entered.wait(PATIENCE)
    rest, results = in_threads(batcher, a, ["a1", "a2"])
    others, more = in_threads(batcher, b, ["b1", "b2"])
    while len(batcher._queue) < 4:
        threading.Event().wait(0.001)
    a.release.set()
    for thread in first + rest + others:
        thread.join(PATIENCE)
    assert sorted(map(sorted, a.runs[1:])) == [["a1", "a2"]] and sorted(map(sorted, b.runs)) == [["b1", "b2"]]


def test_one_querys_texts_are_queued_together_and_share_a_run(encoder) -> None:
    spy = Spy(encoder, hold_first=True)
    batcher = Batcher()
    first, _ = in_threads(batcher, spy, ["held"])
    assert spy.entered.wait(PATIENCE)
    got: list = []
    terms = threading.Thread(target=lambda: got.extend(encode_texts(batcher, spy, ["dog", "beach", "dog"])))
    terms.start()
    while len(batcher._queue) < 3:
        threading.Event().wait(0.001)
    spy.release.set()
    for thread in [*first, terms]:
        thread.join(PATIENCE)
    assert spy.runs[1:] == [["dog", "beach"]], "one run, each distinct text once"
    want = encoder.encode_texts(["dog", "beach"])
    np.testing.assert_allclose(np.stack(got), want[[0, 1, 0]], atol=1e-6)


class Gate:
    """A batch run that records its batches and how many runs were under way at once, held until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.inside = 0
        self.most_inside = 0
        self.lock = threading.Lock()
        self.release = threading.Event()

    def __call__(self, batch: list[int]) -> list[int]:
        with self.lock:
            self.batches.append(list(batch))
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
        assert self.release.wait(PATIENCE)
        with self.lock:
            self.inside -= 1
        return [item * 10 for item in batch]


def submit_in_threads(batcher: Batcher, gate: Gate, jobs: list[tuple[object, int]]) -> tuple[list, dict]:
    results: dict[int, object] = {}

    def ask(key: object, item: int) -> None:
        results[item] = batcher.submit(key, [item], gate)[0]

    threads = [threading.Thread(target=ask, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    return threads, results


def wait_until(condition) -> None:
    deadline = threading.Event()
    for _ in range(int(PATIENCE / 0.001)):
        if condition():
            return
        deadline.wait(0.001)
    raise AssertionError("timed out")


@pytest.mark.parametrize("slots", [1, 2, 3])
def test_at_most_slots_runs_at_once_and_the_rest_queue(slots: int) -> None:
    gate = Gate()
    batcher = Batcher(slots=slots)
    # Each job its own key: nothing can share a run, so only the slots bound the runs at once.
    threads, results = submit_in_threads(batcher, gate, [(f"key {i}", i) for i in range(8)])
    wait_until(lambda: len(gate.batches) == slots and len(batcher._queue) == 8 - slots)
    assert gate.inside == slots
    gate.release.set()
    for thread in threads:
        thread.join(PATIENCE)
    assert gate.most_inside == slots
    assert results == {i: i * 10 for i in range(8)}
    assert sorted(item for batch in gate.batches for item in batch) == list(range(8))
    assert batcher._running == 0 and not batcher._queue


def test_jobs_without_a_key_never_share_a_run() -> None:
    gate = Gate()
    batcher = Batcher()
    first, _ = submit_in_threads(batcher, gate, [("shared", 0)])
    wait_until(lambda: gate.batches)
    rest, results = submit_in_threads(batcher, gate, [(None, 1), (None, 2), ("shared", 3), ("shared", 4)])
    wait_until(lambda: len(batcher._queue) == 4)
    gate.release.set()
    for thread in first + rest:
        thread.join(PATIENCE)
    assert sorted(gate.batches[1:]) == [[1], [2], [3, 4]]
    assert results == {1: 10, 2: 20, 3: 30, 4: 40}


def test_a_run_that_returns_the_wrong_number_of_results_fails_its_jobs_only() -> None:
    batcher = Batcher()
    with pytest.raises(RuntimeError, match="2 jobs"):
        batcher.submit("k", [1, 2], lambda batch: [0])
    assert batcher.submit("k", [1, 2], lambda batch: [b + 1 for b in batch]) == [2, 3]


def test_concurrent_unfiltered_searches_share_one_scan_and_get_what_each_would_alone() -> None:
    from nasclip.query.search import _scan_together

    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((5000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex(64)
    index.add(np.arange(100, 5100), vectors)
    queries = [vectors[i] + 0.05 * rng.standard_normal(64).astype(np.float32) for i in range(12)]
    fetches = [3, 32, 100, 7, 32, 512, 1, 50, 32, 10, 64, 20]
    batch = list(zip(queries, fetches))
    together = _scan_together(index, batch)
    for (query, fetch), (scores, ids) in zip(batch, together):
        alone_scores, alone_ids = index.search(query, fetch)
        assert ids.shape == (1, fetch)
        assert np.array_equal(ids, alone_ids)
        np.testing.assert_allclose(scores, alone_scores, atol=1e-5)


def test_background_passes_can_tell_that_query_work_is_running_or_just_ran(monkeypatch: pytest.MonkeyPatch) -> None:
    import nasclip.query.batching as batching

    now = [1000.0]
    monkeypatch.setattr(batching.time, "monotonic", lambda: now[0])
    work = Batcher(slots=1, breather=0.0)
    assert not work.active_within(2.0), "no query has run yet"
    seen: list[bool] = []
    work.submit("k", [1], lambda batch: seen.append(work.active_within(2.0)) or batch)
    assert seen == [True], "active while it runs"
    now[0] += 1.5
    assert work.active_within(2.0)
    now[0] += 1.0
    assert not work.active_within(2.0), "quiet again two seconds after the last run"


def test_query_work_beyond_its_cpu_budget_waits_only_while_indexing_has_work(monkeypatch: pytest.MonkeyPatch) -> None:
    import nasclip.query.batching as batching

    now = [100.0]
    monkeypatch.setattr(batching.time, "monotonic", lambda: now[0])
    cores: list[float | None] = [None]
    work = Batcher(budget=lambda: cores[0])
    work.charge(1.0)
    assert work.owed() == 0.0, "no budget while nothing is indexed: queries take what they need"
    cores[0] = 0.5
    work.charge(1.0)  # a storm spent a second of CPU at once: the burst and 0.75 s more
    assert work.owed() == pytest.approx((1.0 - batching.BURST) / 0.5)
    now[0] += 1.0  # half a core's worth came back
    assert work.owed() == pytest.approx((0.5 - batching.BURST) / 0.5)
    now[0] += 10.0
    assert work.owed() == 0.0
    work.charge(batching.BURST * 0.9)
    assert work.owed() == 0.0, "a lone search never waits"
    # A run that is owed waits until the clock has paid the debt back, then runs.
    now[0] += 10.0
    work.charge(batching.BURST + 0.01)  # 0.01 s owed at half a core: 20 ms
    looks: list[float] = []

    def ticking() -> float:  # each look at the clock finds 5 ms more gone
        now[0] += 0.005
        looks.append(now[0])
        return now[0]

    monkeypatch.setattr(batching.time, "monotonic", ticking)
    assert work.submit("k", [1], lambda batch: batch) == [1]
    assert len(looks) >= 4, "it looked again until the debt was paid"
