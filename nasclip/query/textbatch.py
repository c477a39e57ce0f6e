"""Query texts encoded together: one text-encoder run at a time, with every text waiting for it.

Thirty-two clients searching at once used to mean thirty-two encoder runs
at once on two cores: each slower than one alone, all finishing late.
Here the query threads queue their texts; whichever thread finds no run in
progress leads one, for every text queued for the same model (up to
``max_batch``), and hands each waiting thread its vector. A lone query
runs at once (nothing waits for a batch to fill); under load the texts
that arrive during one run form the next batch, so the batch size follows
the load with no timer to tune. The text encoder's cost per text falls with
the batch, and the CPU runs one encoder at a time instead of thrashing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class TextEncoder(Protocol):
    """What the batcher needs of an encoder (indexing/encoder.py's Encoder)."""

    def encode_texts(self, texts: list[str]) -> np.ndarray: ...


@dataclass(eq=False)
class _Waiting:
    encoder: TextEncoder
    text: str
    vector: np.ndarray | None = None
    error: BaseException | None = None
    done: bool = field(default=False)


class TextBatcher:
    """Turns concurrent ``encode(encoder, text)`` calls into shared encoder runs."""

    def __init__(self, max_batch: int = 32) -> None:
        self.max_batch = max_batch
        self._cond = threading.Condition()
        self._queue: list[_Waiting] = []
        self._running = False
        self.runs = 0   # encoder runs so far
        self.texts = 0  # texts they encoded

    def encode(self, encoder: TextEncoder, text: str) -> np.ndarray:
        """The unit vector of text (the encoder's own result); raises what the encoder raised."""
        return self.encode_many(encoder, [text])[0]

    def encode_many(self, encoder: TextEncoder, texts: list[str]) -> list[np.ndarray]:
        """The vectors of one query's texts (weighted terms), queued together so one run can take them all."""
        mine = [_Waiting(encoder, text) for text in texts]
        with self._cond:
            self._queue.extend(mine)
        while True:
            with self._cond:
                while self._running and not all(w.done for w in mine):
                    self._cond.wait()
                if all(w.done for w in mine):
                    break
                self._running = True  # this thread leads the next run (its texts may not all fit in it)
            self._lead()
        for w in mine:
            if w.error is not None:
                raise w.error
        return [w.vector for w in mine if w.vector is not None]

    def _lead(self) -> None:
        batch: list[_Waiting] = []
        texts: list[str] = []
        try:
            with self._cond:
                first = self._queue[0]
                batch = [w for w in self._queue if w.encoder is first.encoder][:self.max_batch]
                taken = set(map(id, batch))
                self._queue = [w for w in self._queue if id(w) not in taken]
            texts = list(dict.fromkeys(w.text for w in batch))  # one row per distinct text
            try:
                rows = dict(zip(texts, first.encoder.encode_texts(texts)))
                for w in batch:
                    w.vector = rows[w.text].copy()
            except BaseException as exc:  # every query waiting on this run gets the encoder's error
                for w in batch:
                    w.error = exc
        finally:
            with self._cond:
                self.runs += 1
                self.texts += len(texts)
                for w in batch:
                    w.done = True
                self._running = False
                self._cond.notify_all()
