"""Issue 12, finding 10: checkpoints carry a checksum, vectors a norm check, and damage costs no re-encoding."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import faiss
import numpy as np
from conftest import make_scenes
from test_store import DIM, index_some, unit

from nasclip.store.store import Store


def flip_a_vector(path: Path, dim: int, n: int, which: float = 0.5) -> None:
    """Make one float of a flat IndexIDMap2 checkpoint of n vectors huge (its exponent byte), as bit rot would."""
    data = bytearray(path.read_bytes())
    # The file ends with the id map: an 8-byte count, then n int64 ids; the vectors come right before it.
    vectors_end = len(data) - 8 - 8 * n
    k = int(n * which)
    offset = vectors_end - 4 * dim * (n - k) + 3  # the most significant byte of vector k's first value
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def two_generations(tmp_path: Path) -> tuple[Store, dict[str, int]]:
    store = Store(tmp_path, "m1", DIM)
    ids = index_some(store, "s", ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    store.checkpoint()
    ids |= index_some(store, "s", ["e.jpg", "f.jpg"])
    store.checkpoint()
    store.close()
    return store, ids


def best_scores(store: Store) -> np.ndarray:
    scores, _ = store.index.search(np.stack([unit(i) for i in range(6)]), 1)
    return scores[:, 0]


def test_a_flipped_byte_in_the_newest_checkpoint_falls_back_to_the_previous_one_and_the_log(
        tmp_path: Path, caplog) -> None:
    store, ids = two_generations(tmp_path)
    flip_a_vector(store.index_path(), DIM, 6)
    with caplog.at_level(logging.INFO, logger="nasclip.store"):
        again = Store(tmp_path, "m1", DIM)
    assert sorted(again.index.ids().tolist()) == sorted(ids.values())
    assert again.counts()["pending"] == 0, "nothing is re-encoded"
    assert np.all(best_scores(again) <= 1.0 + 1e-5) and np.allclose(best_scores(again)[:4], 1.0, atol=1e-5)
    assert "checksum" in caplog.text and "m1.faiss.prev" in caplog.text


def test_flipped_bytes_in_both_generations_are_rebuilt_from_what_is_intact(tmp_path: Path, caplog) -> None:
    store, ids = two_generations(tmp_path)
    flip_a_vector(store.index_path(), DIM, 6, 0.5)
    flip_a_vector(store.index_path().with_name("m1.faiss.prev"), DIM, 4, 0.0)
    with caplog.at_level(logging.INFO, logger="nasclip.store"):
        again = Store(tmp_path, "m1", DIM)
    pending = again.counts()["pending"]
    assert 1 <= pending <= 2, "only the photos of damaged vectors are encoded again"
    assert len(again.index) + pending == len(ids)
    assert np.all(best_scores(again) <= 1.0 + 1e-5)
    assert "rebuilt" in caplog.text and "re-encod" in caplog.text


def test_damaged_vectors_in_the_log_are_dropped_and_their_photos_requeued(tmp_path: Path) -> None:
    store = Store(tmp_path, "m1", DIM)
    ids = index_some(store, "s", ["a.jpg", "b.jpg"])
    store.catalog.conn.execute("UPDATE vector_log SET vector=? WHERE file_id=?",
                               ((unit(0) * 7).astype(np.float32).tobytes(), ids["a.jpg"]))
    store.catalog.conn.close()
    again = Store(tmp_path, "m1", DIM)
    assert again.index.ids().tolist() == [ids["b.jpg"]]
    assert [r.relpath for r in again.pending(10, set())] == ["a.jpg"]


def test_a_checkpoint_without_a_header_from_an_older_nasclip_still_loads(tmp_path: Path) -> None:
    store = Store(tmp_path, "m1", DIM)
    ids = index_some(store, "s", ["a.jpg", "b.jpg"])
    store.checkpoint()
    legacy = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))
    legacy.add_with_ids(np.stack([unit(0), unit(1)]), np.array([ids["a.jpg"], ids["b.jpg"]], np.int64))
    faiss.write_index(legacy, str(store.index_path()))
    store.catalog.conn.execute("DELETE FROM vector_log")
    store.catalog.conn.close()
    again = Store(tmp_path, "m1", DIM)
    assert sorted(again.index.ids().tolist()) == sorted(ids.values()) and again.counts()["pending"] == 0
    assert np.allclose(again.index.get(ids["b.jpg"]), unit(1))


def test_a_damaged_newest_checkpoint_costs_the_daemon_no_encoding(tmp_path: Path, daemon_factory) -> None:
    share = tmp_path / "photos"
    make_scenes(share / "a", 16, seed=61)
    daemon = daemon_factory({"photos": share}, index={"checkpoint_seconds": 0.3})
    daemon.wait_idle()
    assert daemon.stop() == 0
    make_scenes(share / "b", 16, seed=62)
    daemon.start()
    daemon.wait_idle()
    assert daemon.stop() == 0  # two generations on disk now
    state = Path(daemon.config["state_dir"])
    newest = next((state / "index").glob("*.faiss"))
    assert newest.with_name(newest.name + ".prev").exists()
    flip_a_vector(newest, 128, 32)
    daemon.start()
    status = daemon.wait_idle()
    assert status["encoded"]["run"] == 0 and status["index"]["vectors"] == 32
    for query in ("a red circle", "a blue square", "green triangle"):
        assert all(r["score"] <= 1.0 + 1e-4 for r in daemon.search(query, k=32))
    assert "failed its checksum" in daemon.log()
    assert any("checksum" in note for note in status["notices"])
    with sqlite3.connect(state / "catalog.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM files WHERE state='indexed'").fetchone()[0] == 32
