"""Query work in shared batches, a bounded number at a time: text-encoder runs and index scans.

Thirty-two clients searching at once used to mean thirty-two encoder runs
and thirty-two index scans at once on two cores: each slower than one
alone, all finishing late, and the indexer starved. Here the query threads
queue their jobs; a thread that finds a slot free leads one run, for the
oldest job and every queued job that can share its run (the same key: the
same text encoder, or unfiltered scans of the same index, up to
``max_batch``), and hands each waiting thread its result. A lone query runs
at once (nothing waits for a batch to fill); under load the jobs that
arrive during one run form the next, so the batch size follows the load
with no timer to tune.

Both kinds of run cost far less per job in a batch: a text encoder run
takes its texts together, and a flat index scanned for 32 queries at once
reads its vectors once (a matrix product) instead of 32 times, about 1.8 ms
a query instead of 8 at 100k × 512. And because at most ``slots`` runs (one
core each) happen at once, a storm of queries leaves the other cores to
indexing.

Runs are not all a search costs: each request is also read, parsed,
checked, answered and written back — a few ms of Python that no slot
bounds. Under a storm of cheap queries (an int8 text encoder) query threads
took a whole core of two from the indexer (bench/bench_query.py, thread CPU
from /proc). So the servers ``charge`` every request's CPU here, runs
included, and while ``budget()`` gives a number of cores (the daemon: while
the indexer has work) a run waits until the query work charged is back
within that many cores: a token bucket holding ``BURST`` CPU seconds, so a
lone search never waits, and a storm gets its share, not the indexer's.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Generic, Hashable, Sequence, TypeVar

from ..indexing.backends.onnx import usable_cores

# After a run, the next waits this fraction of its length: nothing for a lone query (no
# run just before it), under a storm of queries a pause that keeps query work below a
# whole core and lets the next batch grow (measured: bench/bench_query.py).
BREATHER = 0.15
BURST = 0.25  # CPU seconds of query work that may run at once before the budget applies
# While indexing has work, each query slot is this much of a core: the rest of it, and every other core,
# are indexing's. Measured (bench/bench_query.py, 32 clients at 100k photos on 2 cores, one slot): 0.8
# kept the indexer at 0.47-0.53 of its rate with a p99 of 0.79-0.91 s; after the decode got cheaper
# (stop 28), 0.75 kept 0.51 with a p99 of 0.68 s and 0.7 kept 0.56 with 0.74 s.
SLOT_SHARE = 0.7

T = TypeVar("T")
R = TypeVar("R")


def default_slots() -> int:
    """Half the cores, at least one: what query work may take while indexing keeps the rest."""
    return max(1, usable_cores() // 2)


@dataclass(eq=False)
class _Job(Generic[T, R]):
    key: Hashable | None  # None: runs alone
    item: T
    run: Callable[[list[T]], Sequence[R]]
    result: R | None = None
    error: BaseException | None = None
    done: bool = False


class Batcher:
    """Turns concurrent ``submit(key, items, run)`` calls into shared runs, at most ``slots`` at once."""

    def __init__(self, slots: int = 1, max_batch: int = 32, breather: float = BREATHER,
                 budget: Callable[[], float | None] = lambda: None) -> None:
        self.slots = max(1, slots)
        self.max_batch = max_batch
        self.breather = breather
        self.budget = budget  # cores query work may use now; None: as many as it needs
        self._tokens = BURST  # CPU seconds query work may still spend before runs wait
        self._refilled = time.monotonic()
        self._resume_at = 0.0  # no run starts before this (monotonic seconds)
        self._cond = threading.Condition()
        self._queue: list[_Job] = []
        self._running = 0
        self.runs = 0   # runs so far
        self.jobs = 0   # jobs they did
        self.last_active = -1e9  # monotonic time query work last ran (or was queued)

    def submit(self, key: Hashable | None, items: Sequence[T], run: Callable[[list[T]], Sequence[R]]) -> list[R]:
        """run's result for each item (in order); raises what run raised.

        run(batch) gets items of one key, from this call and others, and
        returns one result per item. Items queued together (one query's
        texts) can all share one run. key None: these items run alone.
        """
        mine: list[_Job[T, R]] = [_Job(key, item, run) for item in items]
        with self._cond:
            self._queue.extend(mine)
            self.last_active = time.monotonic()
        while True:
            with self._cond:
                while not all(job.done for job in mine):
                    if self._running >= self.slots or not self._queue:
                        self._cond.wait()
                        continue
                    pause = max(self._resume_at - time.monotonic(), self._owed())
                    if pause <= 0:
                        break
                    self._cond.wait(pause)
                if all(job.done for job in mine):
                    break
                self._running += 1  # this thread leads the next run (maybe of others' jobs: it helps, then waits)
                batch = self._take()
            self._lead(batch)
        for job in mine:
            if job.error is not None:
                raise job.error
        return [job.result for job in mine]  # type: ignore[misc]  # every job is done

    def charge(self, cpu_seconds: float) -> None:
        """Count the CPU one request spent (the runs its thread led included) against the budget."""
        with self._cond:
            self._refill()
            self._tokens -= cpu_seconds

    def owed(self) -> float:
        """Seconds until query work is back within its budget: 0 without a budget or with tokens left."""
        with self._cond:
            return self._owed()

    def _owed(self) -> float:
        cores = self.budget()
        if cores is None:
            self._tokens = BURST  # no budget now: nothing is owed when one applies again
            return 0.0
        self._refill()
        return -self._tokens / cores if self._tokens < 0 else 0.0

    def _refill(self) -> None:
        """The tokens earned since the last look, at the budget's rate (holding the lock)."""
        now = time.monotonic()
        cores = self.budget()
        rate = cores if cores is not None else float(usable_cores())
        self._tokens = min(BURST, self._tokens + (now - self._refilled) * rate)
        self._refilled = now

    def active_within(self, seconds: float) -> bool:
        """Whether query work ran or waited within the last seconds: background passes let it have the CPU."""
        with self._cond:
            return self._running > 0 or bool(self._queue) or time.monotonic() - self.last_active < seconds

    def _take(self) -> list[_Job]:
        """The oldest job and the queued jobs that share its run (called holding the lock)."""
        first = self._queue[0]
        if first.key is None:
            batch = [first]
        else:
            batch = [job for job in self._queue if job.key == first.key][:self.max_batch]
        taken = set(map(id, batch))
        self._queue = [job for job in self._queue if id(job) not in taken]
        return batch

    def _lead(self, batch: list[_Job]) -> None:
        started = time.monotonic()
        try:
            try:
                results = batch[0].run([job.item for job in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"a batch run returned {len(results)} results for {len(batch)} jobs")
                for job, result in zip(batch, results):
                    job.result = result
            except BaseException as exc:  # every job of this run gets the run's error
                for job in batch:
                    job.error = exc
        finally:
            with self._cond:
                self.runs += 1
                self.jobs += len(batch)
                for job in batch:
                    job.done = True
                self._running -= 1
                ended = time.monotonic()
                self.last_active = ended
                self._resume_at = ended + self.breather * (ended - started)
                self._cond.notify_all()
