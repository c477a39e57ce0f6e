"""The one writer: catalog and vector indexes in step through crashes, moves and model switches."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from nasclip.errors import StoreError
from nasclip.store.catalog import SCHEMA_VERSION, Catalog
from nasclip.store.store import Deleted, Encoded, Failed, Moved, Seen, Store

DIM = 16


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return vector / np.linalg.norm(vector)


def index_some(store: Store, share: str, names: list[str]) -> dict[str, int]:
    """Seen + Encoded for each name; returns name -> row id."""
    store.apply([Seen(share, name, 100 + i, 1_000 + i) for i, name in enumerate(names)])
    rows = {r.relpath: r for r in store.pending(len(names) + 10, set())}
    store.record([Encoded(rows[name], f"fp-{name}", vector=unit(i)) for i, name in enumerate(names)])
    return {name: rows[name].id for name in names}


def test_vectors_survive_a_crash_before_any_checkpoint(tmp_path: Path) -> None:
    store = Store(tmp_path, "m1", DIM)
    ids = index_some(store, "s", ["a.jpg", "b.jpg", "c.jpg"])
    # No checkpoint, no close: as after kill -9.
    store.catalog.conn.close()
    again = Store(tmp_path, "m1", DIM)
    assert sorted(again.index.ids().tolist()) == sorted(ids.values())
    assert np.allclose(again.index.get(ids["b.jpg"]), unit(1))
    assert again.counts()["indexed"] == 3 and again.counts()["pending"] == 0
    assert again.counter("encoded_total") == 3


def test_checkpoints_trim_the_log_up_to_what_the_older_generation_holds(tmp_path: Path) -> None:
    store = Store(tmp_path, "m1", DIM)
    index_some(store, "s", ["a.jpg", "b.jpg"])
    assert store.catalog.conn.execute("SELECT COUNT(*) FROM vector_log").fetchone()[0] == 2
    store.checkpoint()
    # The only generation: should it be damaged, the log is all there is.
    assert store.catalog.conn.execute("SELECT COUNT(*) FROM vector_log").fetchone()[0] == 2
    index_some(store, "s", ["c.jpg"])
    store.checkpoint()
    assert store.catalog.conn.execute("SELECT COUNT(*) FROM vector_log").fetchone()[0] == 1  # c: newest only
    assert store.index_path().with_name("m1.faiss.prev").exists()
    store.close()
    store.close()  # idempotent
    again = Store(tmp_path, "m1", DIM)
    # The newest checkpoint covers every logged vector: nothing is replayed, nothing is unsaved.
    assert len(again.index) == 3 and again.changes_since_checkpoint == 0


def test_reconcile_removes_strays_and_requeues_lost_vectors(tmp_path: Path) -> None:
    store = Store(tmp_path, "m1", DIM)
    ids = index_some(store, "s", ["a.jpg", "b.jpg", "c.jpg"])
    store.checkpoint()
    # The catalog forgets c (as if its deletion committed but the index did not follow) ...
    store.catalog.conn.execute("DELETE FROM files WHERE id=?", (ids["c.jpg"],))
    # ... and b's vector is missing from the checkpoint (as if the file were older).
    store.index.remove([ids["b.jpg"]])
    store.index.save(store.index_path(), store.catalog.log_high())
    store.catalog.conn.execute("DELETE FROM vector_log")
    store.catalog.conn.close()
    again = Store(tmp_path, "m1", DIM)
    assert sorted(again.index.ids().tolist()) == [ids["a.jpg"]]
    assert [r.relpath for r in again.pending(10, set())] == ["b.jpg"]


def test_corrupt_checkpoint_is_set_aside_and_rebuilt_from_the_log(tmp_path: Path) -> None:
    store = Store(tmp_path, "m1", DIM)
    index_some(store, "s", ["a.jpg", "b.jpg"])
    store.checkpoint()
    store.close()
    path = Store(tmp_path, "m1", DIM).index_path()
    path.write_bytes(path.read_bytes()[:40])
    again = Store(tmp_path, "m1", DIM)
    assert (path.parent / (path.name + ".corrupt")).exists()
    assert len(again.index) == 2 and again.counts()["pending"] == 0  # from the log: nothing re-encoded


def test_moves_keep_ids_and_displace_overwritten_rows(tmp_path: Path) -> None:
    store = Store(tmp_path, "m1", DIM)
    ids = index_some(store, "s", ["2023/a.jpg", "2023/b.jpg", "other/b.jpg"])
    store.apply([Moved("s", "2023", "t", "trip")])  # not a folder move: nothing named '2023' is a file
    assert store.catalog.get("s", "2023/a.jpg") is not None
    store.apply([Moved("s", "2023", "t", "trip", folder=True)])
    assert store.catalog.get("t", "trip/a.jpg").id == ids["2023/a.jpg"]
    # A file renamed over another replaces it: the overwritten row and its vector go.
    store.apply([Moved("t", "trip/b.jpg", "s", "other/b.jpg")])
    assert store.catalog.get("s", "other/b.jpg").id == ids["2023/b.jpg"]
    assert ids["other/b.jpg"] not in store.index.ids().tolist()
    assert store.counter("encoded_total") == 3


def test_gone_rows_lend_their_vector_until_purged(tmp_path: Path) -> None:
    store = Store(tmp_path, "m1", DIM)
    ids = index_some(store, "s", ["old/a.jpg"])
    store.apply([Deleted("s", "old", folder=True), Seen("s", "new/a.jpg", 100, 1_000)])
    row = store.pending(1, set())[0]
    donor = store.donor_for(row, "fp-old/a.jpg")
    assert donor == ids["old/a.jpg"]
    summary = store.record([Encoded(row, "fp-old/a.jpg", donor=donor)])
    assert summary["reused"] == 1 and summary["encoded"] == 0
    assert np.allclose(store.index.get(row.id), unit(0))
    assert store.purge_gone(older_than=1e18) == 1
    assert store.index.ids().tolist() == [row.id]


def test_stale_results_are_dropped(tmp_path: Path) -> None:
    store = Store(tmp_path, "m1", DIM)
    store.apply([Seen("s", "a.jpg", 10, 1)])
    row = store.pending(1, set())[0]
    store.apply([Seen("s", "a.jpg", 20, 2)])  # changed while being encoded
    assert store.record([Encoded(row, "fp", vector=unit(0))])["stale"] == 1
    assert len(store.index) == 0
    fresh = store.pending(1, set())[0]
    assert store.record([Failed(fresh, "fp", "truncated", retry_at=1e18)])["retry"] == 1
    assert store.pending(1, set()) == []  # not due before retry_at


def test_switching_models_serves_the_old_one_until_the_new_one_covers_everything(tmp_path: Path) -> None:
    store = Store(tmp_path, "old", DIM)
    index_some(store, "s", ["a.jpg", "b.jpg"])
    store.close()
    store = Store(tmp_path, "new", DIM)
    assert store.serving_model() == "old"
    pending = store.pending(10, set())
    assert len(pending) == 2 and store.migration() == {"from": ["old"], "to": "new", "done": 0, "total": 2}
    store.record([Encoded(pending[0], "fp-a", vector=unit(7))])
    assert store.update_models() == "old"  # 1 of 2: a tie goes to... the target only when complete
    store.record([Encoded(pending[1], "fp-b", vector=unit(8))])
    assert store.update_models() == "new"
    assert list(store.indexes) == ["new"] and not store.index_path("old").exists()
    assert store.counter("encoded_total") == 4


def test_catalog_refuses_a_newer_schema(tmp_path: Path) -> None:
    Catalog(tmp_path / "c.db").close()
    conn = sqlite3.connect(tmp_path / "c.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this nasclip"):
        Catalog(tmp_path / "c.db")


def test_file_names_that_are_not_utf8_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path, "m1", DIM)
    name = b"caf\xe9/photo.jpg".decode("utf-8", "surrogateescape")
    store.apply([Seen("s", name, 1, 1)])
    assert store.pending(1, set())[0].relpath == name


def test_a_search_from_any_thread_scans_on_index_search_threads_only() -> None:
    # OpenMP's thread count is per thread: a query server thread would otherwise scan (and run
    # its BLAS product) on one thread per core, whatever index.search_threads says.
    import threading

    import faiss

    from nasclip.store.vectors import VectorIndex

    index = VectorIndex(8, "flat", search_threads=1)
    raw = np.random.default_rng(1).standard_normal((20, 8)).astype(np.float32)
    vectors = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    index.add(np.arange(1, 21, dtype=np.int64), vectors)
    seen: list[int] = []

    def search() -> None:
        index.search(vectors[:2], 3)
        seen.append(faiss.omp_get_max_threads())

    worker = threading.Thread(target=search)
    worker.start()
    worker.join()
    assert seen == [1]
