"""Concurrent queries' texts share text-encoder runs (nasclip/query/textbatch.py), with the real demo encoder."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import DEMO_MODEL

from nasclip.errors import ModelError
from nasclip.indexing.encoder import Encoder
from nasclip.model.spec import load_model_spec
from nasclip.query.textbatch import TextBatcher

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


def in_threads(batcher: TextBatcher, spy, texts: list[str]) -> tuple[list[threading.Thread], dict]:
    results: dict[str, object] = {}

    def ask(text: str) -> None:
        try:
            results[text] = batcher.encode(spy, text)
        except Exception as exc:  # recorded for the test to look at
            results[text] = exc

    threads = [threading.Thread(target=ask, args=(t,)) for t in texts]
    for thread in threads:
        thread.start()
    return threads, results


def test_a_lone_text_runs_at_once_and_gets_the_encoders_vector(encoder) -> None:
    batcher = TextBatcher()
    vector = batcher.encode(encoder, "a red circle")
    assert np.array_equal(vector, encoder.encode_texts(["a red circle"])[0])
    assert (batcher.runs, batcher.texts) == (1, 1)


def test_texts_arriving_during_a_run_share_the_next_one(encoder) -> None:
    spy = Spy(encoder, hold_first=True)
    batcher = TextBatcher()
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
    batcher = TextBatcher(max_batch=4)
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
    batcher = TextBatcher()
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
    assert batcher.encode(spy, "four").shape == (encoder.dim,)
    assert not batcher._running and not batcher._queue


def test_different_models_never_share_a_run(encoder) -> None:
    a, b = Spy(encoder, hold_first=True), Spy(encoder)
    batcher = TextBatcher()
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
    batcher = TextBatcher()
    first, _ = in_threads(batcher, spy, ["held"])
    assert spy.entered.wait(PATIENCE)
    got: list = []
    terms = threading.Thread(target=lambda: got.extend(batcher.encode_many(spy, ["dog", "beach", "dog"])))
    terms.start()
    while len(batcher._queue) < 3:
        threading.Event().wait(0.001)
    spy.release.set()
    for thread in [*first, terms]:
        thread.join(PATIENCE)
    assert spy.runs[1:] == [["dog", "beach"]], "one run, each distinct text once"
    want = encoder.encode_texts(["dog", "beach"])
    np.testing.assert_allclose(np.stack(got), want[[0, 1, 0]], atol=1e-6)
