"""Issue 12, finding 6: a full disk is a reported, recoverable state that loses nothing.

Every test here runs on a real small tmpfs (mounting needs root; elsewhere
they are skipped), filled by a real file until the kernel says ENOSPC.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
from conftest import DEMO_MODEL, make_scenes, wait_until
from test_service import NotifySocket

BIN = Path(sys.executable).parent
PAGE = 4096


@pytest.fixture
def tmpfs() -> Iterator[Callable[[Path, str], Path]]:
    """Mount small tmpfs file systems; all are unmounted at the end of the test."""
    if os.geteuid() != 0:
        pytest.skip("a real full file system needs a tmpfs mount, which needs root")
    mounted: list[Path] = []

    def mount(path: Path, size: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True)
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(fs: Path, leave: int = 0) -> Path:
    """Write a file until the file system is full, then give back `leave` bytes (whole pages)."""
    filler = fs / "filler"
    with open(filler, "wb", buffering=0) as handle:
        for chunk in (b"\1" * (64 * PAGE), b"\1" * PAGE):
            try:
                while True:
                    handle.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size // PAGE * PAGE - leave))
    return filler


def logged_vectors(state: Path) -> int:
    with sqlite3.connect(state / "catalog.db") as conn:
        return conn.execute("SELECT COUNT(*) FROM vector_log").fetchone()[0]


@pytest.mark.slow
def test_a_checkpoint_on_a_full_disk_keeps_the_old_index_and_the_log(tmp_path: Path, tmpfs, daemon_factory) -> None:
    share = tmp_path / "photos"
    state = tmp_path / "state"
    index_fs = tmpfs(state / "index", "1m")
    make_scenes(share / "first", 31, seed=31)
    # checkpoint_changes=32: the second checkpoint comes once the whole second set is recorded.
    daemon = daemon_factory({"photos": share}, index={"checkpoint_seconds": 3600, "checkpoint_changes": 32})
    daemon.wait_idle()
    assert daemon.stop() == 0  # the final checkpoint holds the first 31 vectors
    make_scenes(share / "second", 32, seed=32)
    # 63 flat 128-d vectors serialise to 32 850 bytes, 32 338 of them before the id map: with
    # 8 pages free FAISS's big writes succeed and only the buffered tail fails, at fclose.
    fill(index_fs, leave=8 * PAGE)
    daemon.start()
    wait_until(lambda: daemon.status()["photos"]["indexed"] == 63, 60, what="the second set to be indexed")
    # Either the full disk is reported, or (the old way) a short checkpoint replaced the good one
    # and the log was trimmed.
    wait_until(lambda: daemon.status().get("disk_full") or logged_vectors(state) == 0, 15,
               what="a checkpoint attempt")
    assert daemon.proc.poll() is None, "a failed checkpoint must not end the daemon"
    daemon.kill()

    daemon.start()  # on the still-full file system
    status = daemon.wait_idle()
    assert status["photos"]["indexed"] == 63
    assert status["encoded"]["run"] == 0, "vectors were lost and photos re-encoded"
    assert status["index"]["vectors"] == 63
    assert daemon.search("a red circle", k=3)[0]["score"] <= 1.0 + 1e-4
    assert daemon.status()["disk_full"]["path"].startswith(str(index_fs))
    (index_fs / "filler").unlink()
    wait_until(lambda: not daemon.status().get("disk_full"), 20, what="the condition to clear when space returns")
    assert daemon.stop() == 0
    daemon.start()
    status = daemon.wait_idle()
    assert status["encoded"]["run"] == 0 and status["index"]["vectors"] == 63
    assert "Traceback" not in daemon.log()


@pytest.mark.slow
def test_the_daemon_waits_out_a_full_disk_says_so_once_and_loses_no_change(tmp_path: Path, tmpfs, daemon_factory,
                                                                          request) -> None:
    share = tmp_path / "photos"
    state = tmpfs(tmp_path / "state", "3m")
    make_scenes(share / "before", 10, seed=41)
    notify = NotifySocket(str(tmp_path / "notify.sock"))
    request.addfinalizer(notify.close)
    daemon = daemon_factory({"photos": share}, env={"NOTIFY_SOCKET": notify.address},
                            index={"checkpoint_seconds": 0.5})
    daemon.wait_idle()
    filler = fill(state)
    # Created while nothing can be written: the watcher must keep these changes, not drop them.
    added = make_scenes(share / "during", 12, seed=42)
    wait_until(lambda: daemon.status().get("disk_full"), 20, what="status to report the full disk")
    time.sleep(6)  # longer than the health loop's old 5 s retry: the journal still gets one line
    status = daemon.status()
    assert daemon.proc.poll() is None
    assert status["disk_full"]["path"] and not status["healthy"]
    assert status["photos"]["indexed"] == 10
    notify.wait_for(lambda m: m.get("STATUS", "").startswith(f"DISK FULL at {state}"), what="STATUS= saying so")
    human = subprocess.run([str(BIN / "nasclip"), "--config", str(daemon.config_path), "status"],
                           capture_output=True, text=True, timeout=30)
    assert human.returncode == 0 and "DISK FULL at" in human.stdout and "nothing is lost" in human.stdout, human
    log = daemon.log()
    assert log.count("disk is full") == 1, log[-3000:]
    assert "Traceback" not in log, log[-3000:]

    filler.unlink()
    status = wait_until(lambda: (s := daemon.status())["photos"]["indexed"] == 10 + len(added) and
                        not s.get("disk_full") and s, 30, what="indexing to resume when space returns")
    assert status["healthy"]
    assert daemon.log().count("disk space is back") == 1
    assert daemon.stop() == 0
    daemon.start()
    assert daemon.wait_idle()["encoded"]["run"] == 0


def test_the_indexer_keeps_encoded_results_while_the_catalog_cannot_take_them(tmp_path: Path, tmpfs) -> None:
    from nasclip.config import IndexerConfig
    from nasclip.indexing.encoder import Encoder
    from nasclip.indexing.indexer import Indexer
    from nasclip.model.spec import load_model_spec
    from nasclip.store.store import Seen, Store

    photos = tmp_path / "photos"
    make_scenes(photos, 6, seed=43)
    for path in photos.iterdir():  # old enough not to count as still arriving
        os.utime(path, (time.time() - 3600,) * 2)
    state = tmpfs(tmp_path / "state", "2m")
    spec = load_model_spec(DEMO_MODEL)
    store = Store(state, spec.id, spec.embedding_dim)
    encoder = Encoder.open(spec, backend="onnx", threads=1, text=False)
    calls: list[int] = []
    real = encoder.encode_images

    def counted(batch):
        calls.append(len(batch))
        return real(batch)

    encoder.encode_images = counted  # type: ignore[method-assign]
    indexer = Indexer(store, encoder, IndexerConfig(decode_threads=1), {"p": photos})
    try:
        store.apply([Seen("p", p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in photos.iterdir()])
        filler = fill(state)
        assert indexer.loop() == 0  # encoded, but the catalog is full: held, not lost
        assert indexer.loop() == 0
        assert store.space.status() is not None
        assert calls == [6] and store.counts()["pending"] == 6
        filler.unlink()
        assert indexer.loop() == 6
        assert calls == [6], "held results were encoded again"
        assert store.counts()["indexed"] == 6 and store.space.status() is None
    finally:
        indexer.close()
        store.close()
