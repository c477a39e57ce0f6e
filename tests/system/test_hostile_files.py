"""Files that try to trick the indexer: symlinks, swaps during a decode, endless files, look-alike twins.

The in-process tests run the real Store, Encoder (demo model), Indexer and
Watcher on real folders; the daemon tests run nasclipd and ask its socket.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from conftest import DEMO_MODEL, Scene, wait_until, write_scene
from PIL import Image, ImageDraw

from nasclip.config import IndexerConfig, ShareConfig
from nasclip.indexing import decode as decode_module
from nasclip.indexing import fingerprints as fingerprints_module
from nasclip.indexing.encoder import Encoder
from nasclip.indexing.indexer import Indexer
from nasclip.model.spec import load_model_spec
from nasclip.query.client import Client
from nasclip.store.store import Deleted, Seen, Store
from nasclip.watch.watcher import Watcher


@pytest.fixture(scope="module")
def encoder() -> Iterator[Encoder]:
    enc = Encoder.open(load_model_spec(DEMO_MODEL), threads=1)
    yield enc
    enc.close()


@pytest.fixture
def parts(tmp_path: Path, encoder: Encoder):
    """Store + Indexer (+ a Watcher, not started) on tmp_path/photos; closed at the end."""
    made: list[tuple] = []

    def make(watch: bool = False, **indexer: object) -> tuple[Store, Indexer, Watcher | None, Path]:
        share = tmp_path / "photos"
        share.mkdir(exist_ok=True)
        store = Store(tmp_path / "state", encoder.model_id, encoder.dim)
        config = IndexerConfig(**{"batch_size": 8, "decode_threads": 2, "threads": 1, "settle_seconds": 0.3,
                                  **indexer})
        index = Indexer(store, encoder, config, {"photos": share})
        watcher = None
        if watch:
            watcher = Watcher(store, (ShareConfig(name="photos", path=share),), 0.3, on_change=index.wake)
            watcher.start()
            index.start()
        made.append((store, index, watcher))
        return store, index, watcher, share

    yield make
    for store, index, watcher in made:
        if watcher is not None:
            watcher.close()
        index.close()
        store.close()


def seen(store: Store, share: Path, *names: str) -> None:
    store.apply([Seen("photos", n, (share / n).stat().st_size, (share / n).stat().st_mtime_ns) for n in names])


def rows(store: Store) -> dict[str, tuple[int, str, str | None]]:
    """relpath -> (id, state, fingerprint) of live rows."""
    found = store.reader().conn.execute("SELECT relpath, id, state, fingerprint FROM files WHERE state!='gone'")
    return {os.fsdecode(p): (i, s, f) for p, i, s, f in found}


def vector_of(store: Store, relpath: str) -> np.ndarray | None:
    row = rows(store).get(relpath)
    return store.index.get(row[0]) if row else None


def same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return a is not None and b is not None and float(np.dot(a, b)) > 0.9999


def old(path: Path, days: float = 2) -> Path:
    stamp = time.time() - days * 86400
    os.utime(path, (stamp, stamp))
    return path


# --------------------------------------------------------------------------- F4: symlinks and swaps


@pytest.mark.slow
def test_symlinks_created_while_the_daemon_runs_are_never_indexed(tmp_path: Path, daemon_factory) -> None:
    share = tmp_path / "photos"
    write_scene(share / "alice" / "mine.jpg", Scene("red", "circle", "white"), seed=1)
    private = write_scene(share / "bob" / "private.jpg", Scene("blue", "star", "yellow"), seed=2)
    os.chmod(private, 0o600)
    outside = write_scene(tmp_path / "elsewhere" / "secret.jpg", Scene("green", "triangle", "black"), seed=3)
    write_scene(tmp_path / "elsewhere" / "album" / "deep.jpg", Scene("orange", "square", "white"), seed=4)
    daemon = daemon_factory({"photos": share})
    daemon.wait_idle()
    links = {share / "alice" / "out.jpg": outside, share / "alice" / "bobs.jpg": private,
             share / "alice" / "album": tmp_path / "elsewhere" / "album"}
    for link, target in links.items():
        link.symlink_to(target)
    assert daemon.request(op="scan")["ok"]  # a scan must not take them either
    time.sleep(2.0)
    status = daemon.wait_idle()
    assert status["photos"]["indexed"] == 2 and status["encoded"]["run"] == 2, status["photos"]
    found = {r["path"] for r in daemon.search("a photo", k=50)}
    assert found == {str(share / "alice" / "mine.jpg"), str(private)}
    with sqlite3.connect(f"file:{tmp_path / 'state' / 'catalog.db'}?mode=ro", uri=True) as db:
        known = {os.fsdecode(r[0]) for r in db.execute("SELECT relpath FROM files")}
    assert known == {"alice/mine.jpg", "bob/private.jpg"}


def test_a_photo_swapped_for_a_symlink_during_its_decode_does_not_get_the_targets_vector(
        parts, monkeypatch: pytest.MonkeyPatch) -> None:
    store, index, watcher, share = parts(watch=True)
    private = write_scene(share / "bob" / "private.jpg", Scene("blue", "star", "yellow"), seed=2)
    wait_until(lambda: rows(store).get("bob/private.jpg", (0, ""))[1] == "indexed", 20, what="bob's photo indexed")
    bobs_vector, bobs_fp = vector_of(store, "bob/private.jpg"), rows(store)["bob/private.jpg"][2]

    # A slow decode: the next photo's decode waits until the swap is done.
    entered, release = threading.Event(), threading.Event()
    real = decode_module.load_tensor

    def slow(source, *args, **kwargs):
        entered.set()
        release.wait(20)
        return real(source, *args, **kwargs)

    monkeypatch.setattr(decode_module, "load_tensor", slow)
    write_scene(share / "alice" / "new.jpg", Scene("red", "circle", "white"), seed=1)
    assert entered.wait(20), "the decode did not start"
    os.rename(share / "alice" / "new.jpg", share / "alice" / "kept.jpg")
    (share / "alice" / "new.jpg").symlink_to(private)
    time.sleep(1.0)  # let the watcher see the rename and the link
    monkeypatch.setattr(decode_module, "load_tensor", real)
    release.set()

    def settled() -> bool:
        now = rows(store)
        return now.get("alice/kept.jpg", (0, ""))[1] == "indexed" and all(s != "pending" for _, s, _ in now.values())
    wait_until(settled, 20, what="alice's photo indexed under its new name")
    time.sleep(1.0)
    for relpath, (_, _, fp) in rows(store).items():
        if relpath.startswith("alice/"):
            assert not same(vector_of(store, relpath), bobs_vector), f"{relpath} got bob's vector"
            assert fp != bobs_fp, f"{relpath} got bob's fingerprint"
    assert "alice/new.jpg" not in rows(store) or rows(store)["alice/new.jpg"][1] != "indexed"


# --------------------------------------------------------------------------- F5: bounds


def sparse_jpeg(path: Path, size: int) -> Path:
    """A JPEG start marker and then nothing but a hole: Pillow reads it byte by byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(b"\xff\xd8\xff")
        handle.truncate(size)
    return path


def test_endless_files_fail_within_seconds_in_a_share_and_as_like(tmp_path: Path, daemon_factory) -> None:
    share = tmp_path / "photos"
    for i, colour in enumerate(("red", "green", "blue", "yellow")):
        old(write_scene(share / f"ok{i}.jpg", Scene(colour, "circle", "white"), seed=i))
    huge = old(sparse_jpeg(share / "huge.jpg", 20 << 30))      # over indexer.max_file_bytes
    slow = old(sparse_jpeg(share / "slow.jpg", 3 << 30))       # under it: the decode deadline stops it
    daemon = daemon_factory({"photos": share}, indexer={"max_file_bytes": 4 << 30, "decode_timeout": 2})
    started = time.monotonic()

    def done() -> dict | None:
        photos = daemon.status()["photos"]
        return photos if photos["indexed"] == 4 and photos["failed"] + photos["pending"] == 2 else None
    wait_until(done, 15, interval=0.2, what="the good photos indexed and the endless ones refused")
    failures = wait_until(lambda: {Path(f["path"]).name: f["error"] for f in daemon.request(op="failed")["failed"]}
                          if len(daemon.request(op="failed")["failed"]) == 2 else None, 10, what="both failed")
    assert "indexer.max_file_bytes" in failures["huge.jpg"], failures
    assert "indexer.decode_timeout" in failures["slow.jpg"], failures
    assert time.monotonic() - started < 15

    for path, words in ((huge, "indexer.max_file_bytes"), (slow, "indexer.decode_timeout")):
        outside = tmp_path / "outside" / path.name
        outside.parent.mkdir(exist_ok=True)
        os.link(path, outside)
        asked = time.monotonic()
        with Client(daemon.socket, timeout=10) as client:
            reply = client.request(op="search", image=str(outside), k=3)
        assert not reply["ok"] and words in reply["error"]["message"], reply
        assert time.monotonic() - asked < 6
    assert daemon.request(op="ping")["ok"]


def test_a_decode_that_never_returns_does_not_hold_up_the_other_photos(parts, monkeypatch) -> None:
    store, index, _, share = parts(decode_timeout=1.0)
    for i in range(6):
        old(write_scene(share / f"p{i}.jpg", Scene(("red", "green", "blue")[i % 3], "square", "white"), seed=i))
    stuck = threading.Event()
    real = decode_module.load_tensor
    calls = [0]

    def hangs_once(source, *args, **kwargs):
        calls[0] += 1
        if calls[0] == 1:
            stuck.wait(30)  # a decoder caught in C code, or a read from a hung mount
        return real(source, *args, **kwargs)

    monkeypatch.setattr(decode_module, "load_tensor", hangs_once)
    seen(store, share, *(f"p{i}.jpg" for i in range(6)))
    try:
        started = time.monotonic()
        while store.counts()["indexed"] < 5 and time.monotonic() - started < 20:
            index.loop()
        took = time.monotonic() - started
        assert store.counts()["indexed"] == 5, store.counts()
        assert took < 8, f"the other photos waited {took:.1f} s for the stuck one"
        waiting = [r for r in rows(store).values() if r[1] == "pending"]
        assert len(waiting) == 1
        error = store.reader().conn.execute("SELECT error, retry_at FROM files WHERE state='pending'").fetchone()
        assert "indexer.decode_timeout" in error[0] and error[1] > time.time()
    finally:
        stuck.set()


def vm_rss_mb(pid: int) -> float:
    return int(re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text()).group(1)) / 1024


def test_concurrent_like_queries_of_a_huge_png_keep_memory_bounded(tmp_path: Path, daemon_factory) -> None:
    share = tmp_path / "photos"
    write_scene(share / "a.jpg", Scene("red", "circle", "white"))
    big = tmp_path / "outside" / "big.png"
    big.parent.mkdir()
    side_w, side_h = 8000, 7000  # 56 megapixels, 168 MB as RGB
    image = Image.linear_gradient("L").resize((side_w, side_h)).convert("RGB")
    ImageDraw.Draw(image).ellipse((1000, 1000, 6000, 6000), fill=(200, 30, 30))
    image.save(big, compress_level=1)
    del image
    daemon = daemon_factory({"photos": share})
    daemon.wait_idle()
    before = vm_rss_mb(daemon.proc.pid)
    replies: list[dict] = []

    def like() -> None:
        with Client(daemon.socket, timeout=30) as client:
            replies.append(client.request(op="search", image=str(big), k=1))

    peak = before
    for _ in range(2):  # the first round may still find fresh memory; the second reuses what was kept
        threads = [threading.Thread(target=like) for _ in range(4)]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            peak = max(peak, vm_rss_mb(daemon.proc.pid))
            time.sleep(0.05)
    time.sleep(0.5)
    after = vm_rss_mb(daemon.proc.pid)
    answered = [r for r in replies if r["ok"]]
    busy = [r for r in replies if not r["ok"]]
    assert len(replies) == 8 and answered, replies
    assert all(r["error"]["code"] == "busy" for r in busy), busy
    print(f"RSS before {before:.0f} MB, peak {peak:.0f} MB, after 2 x 4 concurrent --like of 56 MP: "
          f"{after:.0f} MB; {len(answered)} answered, {len(busy)} busy")
    assert after - before < 150, f"RSS grew by {after - before:.0f} MB and stayed there"


# --------------------------------------------------------------------------- F9: fingerprints


def bmp(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "BMP")
    return out.getvalue()


def test_uncompressed_twins_differing_only_in_the_middle_get_their_own_vectors(parts, monkeypatch) -> None:
    monkeypatch.setattr(fingerprints_module, "FULL_HASH_BYTES", 0)  # the format alone must decide
    store, index, _, share = parts()
    plain = Image.new("RGB", (600, 400), (240, 240, 240))
    marked = plain.copy()
    ImageDraw.Draw(marked).ellipse((150, 120, 450, 280), fill=(220, 20, 20))
    a, b = bmp(plain), bmp(marked)
    assert len(a) == len(b) and a[:65536] == b[:65536] and a[-65536:] == b[-65536:]
    (share / "a.bmp").write_bytes(a)
    seen(store, share, "a.bmp")
    index.loop()
    (share / "b.bmp").write_bytes(b)
    seen(store, share, "b.bmp")
    index.loop()
    assert rows(store)["b.bmp"][1] == "indexed"
    assert not same(vector_of(store, "a.bmp"), vector_of(store, "b.bmp")), "b.bmp reused a.bmp's vector"
    assert rows(store)["a.bmp"][2] != rows(store)["b.bmp"][2]


def padded_jpeg(image: Image.Image, total: int) -> bytes:
    """A JPEG whose first and last 64 KB are padding (an APP15 segment, bytes after EOI), total bytes long."""
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    body = out.getvalue()
    app = b"\xff\xef" + (65535).to_bytes(2, "big") + bytes(65533)
    data = body[:2] + app + body[2:]
    assert len(data) + 65536 <= total
    return data + bytes(total - len(data))


def test_an_edit_in_place_is_re_encoded_even_when_the_fingerprint_cannot_tell(parts, monkeypatch) -> None:
    monkeypatch.setattr(fingerprints_module, "FULL_HASH_BYTES", 0)  # a big photo: head and tail only
    store, index, _, share = parts()
    before = padded_jpeg(Image.new("RGB", (400, 300), (20, 20, 200)), 300_000)
    after = padded_jpeg(Image.new("RGB", (400, 300), (230, 200, 30)), 300_000)
    assert before[:65536] == after[:65536] and before[-65536:] == after[-65536:]
    path = share / "edited.jpg"
    path.write_bytes(before)
    old(path)
    seen(store, share, "edited.jpg")
    index.loop()
    first = vector_of(store, "edited.jpg")
    encoded = store.counter("encoded_total")
    with open(path, "r+b") as handle:  # an editor saving in place: same size, same ends
        handle.write(after)
    seen(store, share, "edited.jpg")
    assert rows(store)["edited.jpg"][1] == "pending"
    index.loop()
    assert rows(store)["edited.jpg"][1] == "indexed"
    assert store.counter("encoded_total") == encoded + 1, "the edited photo was not re-encoded"
    assert not same(vector_of(store, "edited.jpg"), first)


def test_fingerprints_stored_before_the_change_still_let_an_unchanged_photo_keep_its_vector(parts) -> None:
    store, index, _, share = parts()
    photo = old(write_scene(share / "kept.jpg", Scene("purple", "star", "white")))
    seen(store, share, "kept.jpg")
    index.loop()
    # As the previous release stored it: size and a hash of the head and tail, no scheme prefix.
    data = photo.read_bytes()
    legacy = f"{len(data)}:" + hashlib.blake2b(data[:65536] + data[max(65536, len(data) - 65536):],
                                                digest_size=16).hexdigest()
    with store.catalog.transaction() as tx:
        tx.execute("UPDATE files SET fingerprint=?", (legacy,))
    encoded = store.counter("encoded_total")
    store.apply([Deleted("photos", "kept.jpg")])
    seen(store, share, "kept.jpg")  # back unchanged (a share that was away)
    assert rows(store)["kept.jpg"][1] == "pending"
    index.loop()
    assert rows(store)["kept.jpg"][1] == "indexed"
    assert store.counter("encoded_total") == encoded, "an unchanged photo was re-encoded"
