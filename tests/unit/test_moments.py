"""Issue 18: several vectors per file. A video's moments in the store, through crashes, copies, deletions and models."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from nasclip.store import moments
from nasclip.store.catalog import Catalog
from nasclip.store.schema import MIGRATIONS
from nasclip.store.store import Deleted, Encoded, LiveClip, Moved, Seen, Store

DIM = 16


def unit(seed: int, count: int | None = None) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count or 1, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors if count else vectors[0]


def claim(store: Store, name: str, size: int = 100, mtime: int = 1000, share: str = "s"):
    store.apply([Seen(share, name, size, mtime)])
    return next(r for r in store.pending(100, set()) if r.relpath == name)


def video(store: Store, name: str, times: tuple[float, ...], seed: int = 1, **seen) -> tuple[int, np.ndarray]:
    row = claim(store, name, **seen)
    vectors = unit(seed, len(times))
    summary = store.record([Encoded(row, f"fp-{name}-{seed}", vector=vectors, times=times, duration=times[-1] + 1)])
    assert summary["encoded"] == 1, summary
    return row.id, vectors


def ids_of(file_id: int, count: int) -> list[int]:
    return [moments.moment_id(file_id, i) for i in range(count)]


def test_moment_ids_map_back_to_their_file_by_arithmetic_and_never_meet_photo_ids() -> None:
    rng = random.Random(18)
    for _ in range(2000):
        file_id, idx = rng.randrange(1, 1 << 40), rng.randrange(0, 256)
        faiss_id = moments.moment_id(file_id, idx)
        assert faiss_id >= moments.MOMENT_BASE > file_id
        assert moments.split_id(faiss_id) == (file_id, idx)
        assert moments.split_id(file_id) == (file_id, None)
    mixed = np.array([7, moments.moment_id(7, 0), moments.moment_id(9, 255), 123456789], dtype=np.int64)
    assert moments.file_ids_of(mixed).tolist() == [7, 7, 9, 123456789]
    # Neighbouring files' moments never overlap: file 7's last frame is below file 8's first.
    assert moments.moment_id(7, 255) + 1 == moments.moment_id(8, 0)
    for bad in ((7, 256), (7, -1), (0, 0), (1 << 54, 0)):
        with pytest.raises(ValueError):
            moments.moment_id(*bad)


def test_a_video_s_moments_are_committed_with_its_row_and_survive_a_kill(tmp_path: Path) -> None:
    store = Store(tmp_path, "m1", DIM)
    times = (0.5, 3.0, 4.5, 9.0)
    file_id, vectors = video(store, "clip.mp4", times)
    assert sorted(store.index.ids().tolist()) == ids_of(file_id, 4)
    store.catalog.conn.close()  # no checkpoint, no close: as after kill -9
    again = Store(tmp_path, "m1", DIM)
    assert sorted(again.index.ids().tolist()) == ids_of(file_id, 4)
    for i, vector in enumerate(vectors):
        assert np.allclose(again.index.get(moments.moment_id(file_id, i)), vector)
    assert again.reader().moment_times("m1", file_id) == list(times)
    assert again.counts()["indexed"] == 1 and not again.pending(10, set())
    row = again.reader().searchable(file_id)
    assert row is not None and row.kind == "video" and row.duration == 10.0


def test_a_changed_video_sampled_again_keeps_only_its_new_moments(tmp_path: Path) -> None:
    store = Store(tmp_path, "m1", DIM)
    file_id, _ = video(store, "clip.mov", (0.0, 2.0, 4.0, 6.0, 8.0))
    store.apply([Seen("s", "clip.mov", 200, 2000)])  # edited in place: pending, old moments still answer
    row = store.pending(10, set())[0]
    assert sorted(store.index.ids().tolist()) == ids_of(file_id, 5)
    fresh = unit(9, 2)
    store.record([Encoded(row, "fp-new", vector=fresh, times=(1.0, 5.0), duration=6.0)])
    assert sorted(store.index.ids().tolist()) == ids_of(file_id, 2)
    assert np.allclose(store.index.get(moments.moment_id(file_id, 1)), fresh[1])
    assert store.reader().moment_times("m1", file_id) == [1.0, 5.0]
    store.checkpoint()
    store.close()
    assert sorted(Store(tmp_path, "m1", DIM).index.ids().tolist()) == ids_of(file_id, 2)


def test_a_byte_copy_of_a_video_takes_every_moment_under_its_own_ids(tmp_path: Path) -> None:
    store = Store(tmp_path, "m1", DIM)
    times = (0.5, 2.5, 7.0)
    original, vectors = video(store, "a/clip.mp4", times)
    copy = claim(store, "b/copy.mp4")
    summary = store.record([Encoded(copy, "fp-a/clip.mp4-1", donor=original)])
    assert summary["reused"] == 1 and summary["encoded"] == 0
    for i, vector in enumerate(vectors):
        assert np.allclose(store.index.get(moments.moment_id(copy.id, i)), vector)
    assert store.reader().moment_times("m1", copy.id) == list(times)
    assert store.reader().searchable(copy.id).duration == store.reader().searchable(original).duration  # type: ignore[union-attr]
    assert len(store.index) == 6
    assert store.counter("encoded_total") == 1


def test_deleting_or_overwriting_a_video_removes_every_moment_it_had(tmp_path: Path) -> None:
    store = Store(tmp_path, "m1", DIM)
    gone, _ = video(store, "gone.mp4", (0.0, 1.0, 2.0))
    kept, _ = video(store, "kept.mp4", (0.0, 5.0), seed=2)
    victim, _ = video(store, "victim.mp4", (0.0, 5.0, 9.0), seed=3)
    store.apply([Deleted("s", "gone.mp4")])
    assert store.purge_gone(older_than=1e12) == 1
    # A move onto another video's name displaces it: its moments go, the moved one's stay.
    store.apply([Moved("s", "kept.mp4", "s", "victim.mp4")])
    assert sorted(store.index.ids().tolist()) == ids_of(kept, 2)
    assert store.catalog.conn.execute("SELECT COUNT(*) FROM moments WHERE file_id IN (?, ?)",
                                      (gone, victim)).fetchone()[0] == 0
    assert store.reader().moment_times("m1", kept) == [0.0, 5.0]


def test_recovery_resamples_a_video_missing_a_moment_and_drops_strays(tmp_path: Path) -> None:
    store = Store(tmp_path, "m1", DIM)
    whole, _ = video(store, "whole.mp4", (0.0, 4.0))
    broken, _ = video(store, "broken.mp4", (0.0, 4.0, 8.0), seed=2)
    photo = claim(store, "photo.jpg")
    store.record([Encoded(photo, "fp-photo", vector=unit(5))])
    store.checkpoint()
    # The checkpoint lost one of broken's moments and holds a moment of a video the catalog forgot.
    store.index.remove([moments.moment_id(broken, 1)])
    store.index.add(np.array([moments.moment_id(999, 0)]), unit(6)[None])
    store.index.save(store.index_path(), store.catalog.log_high())
    store.catalog.conn.execute("DELETE FROM vector_log")
    store.catalog.conn.close()
    again = Store(tmp_path, "m1", DIM)
    assert sorted(again.index.ids().tolist()) == sorted([photo.id, *ids_of(whole, 2)])
    assert [r.relpath for r in again.pending(10, set())] == ["broken.mp4"]
    assert again.reader().moment_times("m1", broken) == []
    row = again.pending(10, set())[0]
    again.record([Encoded(row, "fp-broken", vector=unit(7, 3), times=(0.0, 4.0, 8.0), duration=9.0)])
    assert sorted(again.index.ids().tolist()) == sorted([photo.id, *ids_of(whole, 2), *ids_of(broken, 3)])


def test_a_model_switch_encodes_videos_again_and_retires_the_old_moments(tmp_path: Path) -> None:
    store = Store(tmp_path, "m1", DIM)
    file_id, _ = video(store, "clip.mp4", (0.0, 3.0))
    store.checkpoint()
    store.close()
    new = Store(tmp_path, "m2", DIM)
    assert new.serving_model() == "m1" and [r.relpath for r in new.pending(10, set())] == ["clip.mp4"]
    row = new.pending(10, set())[0]
    new.record([Encoded(row, "fp-clip", vector=unit(3, 3), times=(0.0, 2.0, 4.0), duration=5.0)])
    assert new.update_models() == "m2"
    assert sorted(new.index.ids().tolist()) == ids_of(file_id, 3)
    assert new.catalog.conn.execute("SELECT DISTINCT model_id FROM moments").fetchall() == [("m2",)]


def test_a_live_photo_clip_is_done_without_vectors_and_never_queued_again(tmp_path: Path) -> None:
    store = Store(tmp_path, "m1", DIM)
    still = claim(store, "IMG_0042.HEIC")
    clip = claim(store, "IMG_0042.MOV", size=300)
    summary = store.record([Encoded(still, "fp-still", vector=unit(1)),
                            LiveClip(clip, "fp-clip", "IMG_0042.HEIC", duration=2.9)])
    assert summary["clips"] == 1
    assert store.index.ids().tolist() == [still.id]
    assert store.counts()["indexed"] == 2
    store.catalog.conn.close()
    again = Store(tmp_path, "m1", DIM)  # _requeue_missing and reconciliation leave it alone
    assert again.pending(10, set()) == [] and again.index.ids().tolist() == [still.id]
    assert again.reader().searchable(clip.id).kind == "clip"  # type: ignore[union-attr]
    assert again.reader().donor("m1", clip.id, "fp-clip") is None  # no vectors to lend


def test_a_still_arriving_after_its_clip_sends_the_clip_back_to_be_judged_again(tmp_path: Path) -> None:
    store = Store(tmp_path, "m1", DIM)
    clip_id, _ = video(store, "DCIM/img_0042.mov", (0.0, 1.0))
    other_id, _ = video(store, "elsewhere/IMG_0042.MOV", (0.0, 1.0), seed=2)  # another folder: not its clip
    still = claim(store, "DCIM/IMG_0042.JPG")
    store.record([Encoded(still, "fp-still", vector=unit(3))])
    assert [r.id for r in store.pending(10, set())] == [clip_id]
    clip = store.pending(10, set())[0]
    store.record([LiveClip(clip, clip.fingerprint or "", "DCIM/IMG_0042.JPG")])
    assert sorted(store.index.ids().tolist()) == sorted([still.id, *ids_of(other_id, 2)])


def test_schema_5_rows_get_stems_and_failed_videos_and_raws_are_tried_again(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "catalog.db")
    for step, script in enumerate(MIGRATIONS[:5]):
        conn.executescript(f"BEGIN;{script};PRAGMA user_version={step + 1};COMMIT;")
    rows = [("IMG_0042.JPG", "indexed", None), ("IMG_0042.CR3", "failed", "not an image nasclip can read"),
            ("holiday.MP4", "failed", "not an image nasclip can read"), ("broken.jpg", "failed", "damaged")]
    conn.executemany("INSERT INTO files (share, relpath, size, mtime_ns, state, error, added, updated) "
                     "VALUES ('s', ?, 1, 1, ?, ?, 0, 0)", [(os_bytes(p), state, e) for p, state, e in rows])
    conn.commit()
    conn.close()
    store = Store(tmp_path, "m1", DIM)
    got = {r[0].decode(): r[1:] for r in store.catalog.conn.execute("SELECT relpath, state, stem FROM files")}
    assert got == {"IMG_0042.JPG": ("pending", b"img_0042"), "IMG_0042.CR3": ("pending", b"img_0042"),
                   "holiday.MP4": ("pending", b"holiday"), "broken.jpg": ("failed", b"broken")}
    # (IMG_0042.JPG is pending: it was indexed with no vector, so _requeue_missing queued it.)
    partners = store.reader().partners("s", [b"img_0042"])[b"img_0042"]
    assert sorted(p.relpath for p in partners) == [b"IMG_0042.CR3", b"IMG_0042.JPG"]


def test_the_text_pass_is_queued_for_photos_and_raws_never_for_videos_or_clips(tmp_path: Path) -> None:
    store = Store(tmp_path, "m1", DIM)
    photo, raw = claim(store, "a.jpg"), claim(store, "b.dng")
    clip = claim(store, "c.mov")
    video(store, "d.mp4", (0.0,))
    store.record([Encoded(photo, "fp-a", vector=unit(1)), Encoded(raw, "fp-b", vector=unit(2)),
                  LiveClip(clip, "fp-c", "c.heic")])
    queued = {r.relpath for r in store.text_pending(10)}
    assert queued == {"a.jpg", "b.dng"}


def test_the_catalog_check_passes_with_moments(tmp_path: Path) -> None:
    store = Store(tmp_path, "m1", DIM)
    video(store, "clip.mp4", (0.0, 1.0, 2.0))
    store.close()
    Catalog(tmp_path / "catalog.db").check()


def os_bytes(path: str) -> bytes:
    return path.encode()


def test_a_rebuilt_catalog_keeps_each_video_s_moments(tmp_path: Path) -> None:
    from nasclip.store.rebuild import rebuild

    store = Store(tmp_path, "m1", DIM)
    file_id, _ = video(store, "clip.mp4", (0.0, 2.5, 6.0))
    store.close()
    reports, _ = rebuild(tmp_path)
    assert any(r.name == "moments" and r.kept == 3 for r in reports), [r.line() for r in reports]
    again = Store(tmp_path, "m1", DIM)
    assert again.pending(10, set()) == [] and sorted(again.index.ids().tolist()) == ids_of(file_id, 3)
    assert again.reader().moment_times("m1", file_id) == [0.0, 2.5, 6.0]
