#!/usr/bin/env python3
"""Vector store benchmark: search latency, memory and recall of flat, fp16 and sq8.

    .venv/bin/python bench/bench_search.py            # 100k and 1M vectors (about 5 minutes)
    .venv/bin/python bench/bench_search.py --sizes 100000

Synthetic clustered 512-d unit vectors (CLIP-like: photos come in groups of
similar scenes). Each (size, kind) runs in its own process, so "store RSS" is
the resident memory the nasclip VectorIndex adds, nothing else. Latency is
one query at a time, k=10, FAISS on 2 threads, through VectorIndex.search
(lock included). Recall@10 of fp16/sq8 is measured against flat's answers.
Baseline named by the issue: flat. Targets: flat p50 <= 100 ms at 1M;
sq8 recall@10 >= 0.95 with memory <= 0.3 x flat.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DIM = 512
CLUSTERS = 2048
QUERIES = 200
CHUNK = 50_000


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def centres() -> np.ndarray:
    return _unit(np.random.default_rng(1).standard_normal((CLUSTERS, DIM)))


def chunk(start: int, size: int, centre: np.ndarray) -> np.ndarray:
    """Vectors start..start+size, reproducible chunk by chunk."""
    rng = np.random.default_rng(1000 + start // CHUNK)
    pick = rng.integers(0, CLUSTERS, size)
    noise = rng.standard_normal((size, DIM)).astype(np.float32) * (1.6 / np.sqrt(DIM))
    return _unit(centre[pick] + noise)


def queries(centre: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(7)
    noise = rng.standard_normal((QUERIES, DIM)).astype(np.float32) * (1.6 / np.sqrt(DIM))
    return _unit(centre[rng.integers(0, CLUSTERS, QUERIES)] + noise)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def worker(kind: str, size: int, out: Path) -> None:
    import faiss

    from nasclip.store.vectors import VectorIndex

    centre = centres()
    qs = queries(centre)
    faiss.omp_set_num_threads(2)
    before = rss_mb()
    index = VectorIndex(DIM, kind, search_threads=2)  # type: ignore[arg-type]
    built = time.perf_counter()
    for start in range(0, size, CHUNK):
        n = min(CHUNK, size - start)
        index.add(np.arange(start, start + n, dtype=np.int64), chunk(start, n, centre))
    built = time.perf_counter() - built
    store_mb = rss_mb() - before
    latencies, answers = [], []
    index.search(qs[:1], 10)  # warm up
    for q in qs:
        t = time.perf_counter()
        _, ids = index.search(q[None], 10)
        latencies.append((time.perf_counter() - t) * 1000)
        answers.append(ids[0].tolist())
    out.write_text(json.dumps({"kind": kind, "size": size, "p50": float(np.percentile(latencies, 50)),
                               "p99": float(np.percentile(latencies, 99)), "store_mb": store_mb,
                               "build_s": built, "answers": answers}))


def run(kind: str, size: int, tmp: Path) -> dict:
    out = tmp / f"{kind}-{size}.json"
    subprocess.run([sys.executable, __file__, "--worker", kind, str(size), str(out)], check=True)
    return json.loads(out.read_text())


def recall(answers: list[list[int]], truth: list[list[int]]) -> float:
    return float(np.mean([len(set(a) & set(t)) / len(t) for a, t in zip(answers, truth)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), Path(args.worker[2]))
        return
    print(f"{'vectors':>9} {'index':>5} {'p50 ms':>8} {'p99 ms':>8} {'store MB':>9} {'x flat':>7} "
          f"{'recall@10':>9} {'build s':>8}")
    verdicts = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            flat = run("flat", size, Path(tmp))
            for kind in ("flat", "fp16", "sq8"):
                res = flat if kind == "flat" else run(kind, size, Path(tmp))
                ratio = res["store_mb"] / flat["store_mb"]
                rec = recall(res["answers"], flat["answers"])
                print(f"{size:>9,} {kind:>5} {res['p50']:8.1f} {res['p99']:8.1f} {res['store_mb']:9.0f} "
                      f"{ratio:7.2f} {rec:9.3f} {res['build_s']:8.1f}", flush=True)
                if size >= 1_000_000 and kind == "flat":
                    verdicts.append(f"flat p50 at {size:,}: {res['p50']:.1f} ms (target <= 100 ms: "
                                    f"{'met' if res['p50'] <= 100 else 'MISSED'})")
                if size >= 1_000_000 and kind == "sq8":
                    verdicts.append(f"sq8 at {size:,}: recall@10 {rec:.3f} (target >= 0.95), memory {ratio:.2f} x "
                                    f"flat (target <= 0.3): {'met' if rec >= 0.95 and ratio <= 0.3 else 'MISSED'}")
    for line in verdicts:
        print(line)


if __name__ == "__main__":
    main()
