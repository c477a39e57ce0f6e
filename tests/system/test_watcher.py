"""Watching shares the way NAS shares behave: real directories, real inotify, the real indexer.

Most tests run the real Store, Encoder (demo model), Indexer and Watcher
threads in-process, which lets them read the watcher's own counters; the
mount-safety test runs the real daemon and asks it over its socket.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from conftest import DEMO_MODEL, ROOT, make_scenes, wait_until
from PIL import Image

from nasclip.config import IndexerConfig, ShareConfig
from nasclip.indexing.encoder import Encoder
from nasclip.indexing.indexer import Indexer
from nasclip.model.spec import load_model_spec
from nasclip.query.access import self_peer
from nasclip.query.protocol import Request, Term
from nasclip.query.search import Searcher
from nasclip.store.store import Store
from nasclip.watch import watcher as watcher_mod
from nasclip.watch.watcher import Watcher

QUEUED_EVENTS = Path("/proc/sys/fs/inotify/max_queued_events")


def tiny_png(i: int) -> bytes:
    """A distinct 8x8 PNG per i: cheap to write and decode, never a twin of another."""
    image = Image.new("RGB", (8, 8), (i % 251, (i // 251) % 251, (i * 7) % 253))
    image.putpixel((i % 8, (i // 8) % 8), ((i * 13) % 256, 255 - i % 256, 128))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def write_photos(folder: Path, count: int, start: int = 0, prefix: str = "p") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        path = folder / f"{prefix}{i:05d}.png"
        path.write_bytes(tiny_png(i))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def encoder() -> Iterator[Encoder]:
    enc = Encoder.open(load_model_spec(DEMO_MODEL), threads=1)
    yield enc
    enc.close()


@dataclass
class Rig:
    """The real parts, in-process, on real folders."""

    store: Store
    indexer: Indexer
    watcher: Watcher
    roots: dict[str, Path]

    def encoded(self) -> int:
        return self.store.counter("encoded_total")

    def live(self, share: str) -> dict[str, tuple[int, str]]:
        """relpath -> (row id, state) of the share's rows that are not gone."""
        rows = self.store.reader().conn.execute(
            "SELECT relpath, id, state FROM files WHERE share=? AND state!='gone'", (share,))
        return {os.fsdecode(p): (i, s) for p, i, s in rows}

    def indexed(self, share: str) -> dict[str, int]:
        return {p: i for p, (i, s) in self.live(share).items() if s == "indexed"}

    def wait_indexed(self, share: str, expected: set[str], timeout: float, what: str = "") -> dict[str, int]:
        """Wait until exactly these paths are the share's live rows, all indexed."""
        def done() -> list[dict[str, int]] | None:
            live = self.live(share)
            if set(live) == expected and all(s == "indexed" for _, s in live.values()):
                return [{p: i for p, (i, _) in live.items()}]  # a list: an empty dict would read as "not yet"
            return None
        return wait_until(done, timeout, interval=0.05, what=what or f"{len(expected)} photos indexed in '{share}'")[0]

    def quiet(self, seconds: float = 1.5) -> None:
        """Let any late (wrong) work happen before asserting that it did not."""
        time.sleep(seconds)


@pytest.fixture
def rig_factory(tmp_path: Path, encoder: Encoder) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(shares: dict[str, dict[str, Any]], settle: float = 0.5, start: bool = True,
             queue_size: int = watcher_mod.EVENT_QUEUE, before_start: Callable[[Watcher], None] | None = None) -> Rig:
        configs = tuple(ShareConfig(name=name, **opts) for name, opts in shares.items())
        roots = {s.name: s.path for s in configs}
        store = Store(tmp_path / "state", encoder.model_id, encoder.dim)
        indexer = Indexer(store, encoder, IndexerConfig(batch_size=16, decode_threads=2, threads=1,
                                                        settle_seconds=settle), roots)
        watcher = Watcher(store, configs, settle, on_change=indexer.wake, queue_size=queue_size)
        rig = Rig(store, indexer, watcher, roots)
        made.append(rig)
        if before_start:
            before_start(watcher)
        if start:
            watcher.start()
            indexer.start()
        return rig

    yield make
    for rig in made:
        rig.watcher.close()
        rig.indexer.close()
        rig.store.close()


def watcher_warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "nasclip.watcher" and text in r.getMessage()]


# ---------------------------------------------------------------------- must show 1


def test_file_written_in_20_chunks_over_10_s_is_indexed_once_after_it_is_complete(
        tmp_path: Path, rig_factory: Callable[..., Rig]) -> None:
    share = tmp_path / "photos"
    write_photos(share, 2)
    # The settle time is shorter than the pauses between chunks: only close-write
    # can tell that the file is still being written.
    rig = rig_factory({"photos": {"path": share}}, settle=0.3)
    rig.wait_indexed("photos", {"p00000.png", "p00001.png"}, 30)
    before = rig.encoded()
    data = make_big_png()
    chunks = [data[i * len(data) // 20:(i + 1) * len(data) // 20] for i in range(20)]
    early: list[str] = []
    with open(share / "arriving.png", "wb") as handle:
        for i, chunk in enumerate(chunks):
            handle.write(chunk)
            handle.flush()
            if i < 19:
                time.sleep(10 / 19)
                if "arriving.png" in rig.live("photos"):
                    early.append(f"after chunk {i + 1}")
    assert not early, f"the half-written file got a catalog row {early[0]}"
    rig.wait_indexed("photos", {"p00000.png", "p00001.png", "arriving.png"}, 10, "the complete file indexed")
    rig.quiet(1.0)
    assert rig.encoded() - before == 1
    row = rig.store.catalog.get("photos", "arriving.png")
    assert row is not None and row.size == len(data) and row.attempts == 0


def make_big_png() -> bytes:
    """A real photo-sized PNG (~200 kB of noise) so that 20 chunks are 20 real writes."""
    image = Image.frombytes("RGB", (256, 256), os.urandom(256 * 256 * 3))
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=0)
    return out.getvalue()


# ---------------------------------------------------------------------- must show 2


def test_renaming_a_folder_of_200_photos_costs_no_encoding_and_deleting_it_removes_them(
        tmp_path: Path, rig_factory: Callable[..., Rig], encoder: Encoder) -> None:
    share = tmp_path / "photos"
    names = {f"album/{p.name}" for p in write_photos(share / "album", 200)}
    rig = rig_factory({"photos": {"path": share}})
    before_ids = rig.wait_indexed("photos", names, 60)
    encoded = rig.encoded()
    assert encoded == 200

    started = time.monotonic()
    (share / "album").rename(share / "Holiday 2019")
    moved = {n.replace("album/", "Holiday 2019/") for n in names}
    after_ids = rig.wait_indexed("photos", moved, 5, "all 200 photos under the new folder name")
    took = time.monotonic() - started
    rig.quiet()
    assert rig.encoded() == encoded, "a folder rename must not re-encode anything"
    assert {n.replace("album/", "Holiday 2019/"): i for n, i in before_ids.items()} == after_ids
    searcher = Searcher(rig.store, encoder, rig.roots, 10_000_000)
    hits, _ = searcher.search(Request("search", terms=(Term(1.0, text="a photo"),), k=300), self_peer())
    assert {h.path for h in hits} == {str(share / p) for p in moved}
    print(f"folder rename of 200 photos reflected in {took:.2f} s")

    started = time.monotonic()
    shutil.rmtree(share / "Holiday 2019")
    wait_until(lambda: not rig.live("photos"), 5, what="the deleted folder's photos to be gone")
    hits, _ = searcher.search(Request("search", terms=(Term(1.0, text="a photo"),), k=300), self_peer())
    assert hits == []
    print(f"folder delete of 200 photos reflected in {time.monotonic() - started:.2f} s")


# ---------------------------------------------------------------------- must show 3


def test_5000_files_dropped_at_once_are_all_indexed_even_when_events_overflow(
        tmp_path: Path, rig_factory: Callable[..., Rig], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    share = tmp_path / "photos"
    share.mkdir()
    staging = tmp_path / "staging" / "drop"
    for part in range(5):
        write_photos(staging / f"roll{part}", 1000, start=part * 1000)
    kernel = os.geteuid() == 0 and os.access(QUEUED_EVENTS, os.W_OK)
    if kernel:
        # A small kernel queue for this watcher's inotify instance only: the
        # limit is read when the instance is created (on the watcher's own
        # thread, once the share is watched), and restored right after that.
        saved = QUEUED_EVENTS.read_text()
        try:
            rig = rig_factory({"photos": {"path": share}},
                              before_start=lambda w: QUEUED_EVENTS.write_text("1024"))
            wait_until(lambda: rig.watcher.shares["photos"].mode == "inotify", 5, what="the share to be watched")
        finally:
            QUEUED_EVENTS.write_text(saved)
    else:  # without root, the watcher's own bounded queue overflows instead
        rig = rig_factory({"photos": {"path": share}}, queue_size=64)
        wait_until(lambda: rig.watcher.shares["photos"].mode == "inotify", 5, what="the share to be watched")
    for part in range(5):  # the folders exist and are watched: every file makes events
        (share / "drop" / f"roll{part}").mkdir(parents=True)
    time.sleep(0.5)
    # Make sure the events outrun their reader, as on a busy NAS: while cp runs,
    # hold the lock watchdog's inotify reader takes around each read (root), or
    # the lock the watcher's event thread takes for its health check (not root).
    observer = rig.watcher._observer
    assert observer is not None
    lock = observer._inotify_fd._lock if kernel else rig.watcher._lock
    with lock:
        if not kernel:
            time.sleep(watcher_mod.HEALTH_EVERY * 1.5)  # the event thread is now parked on it
        subprocess.run(["cp", "-r", f"{staging}/.", str(share / "drop")], check=True)
    expected = {f"drop/roll{i // 1000}/p{i:05d}.png" for i in range(5000)}
    rig.wait_indexed("photos", expected, 240, "all 5000 dropped photos indexed")
    assert rig.watcher.overflows >= 1, "the overflow path was not taken"
    if kernel:
        assert rig.watcher.kernel_overflows >= 1, "the kernel queue did not overflow"
    assert len(watcher_warnings(caplog, "file events were lost")) == 1, "one line, however many overflows"
    assert not [r for r in caplog.records if r.name.startswith("watchdog")]
    assert rig.encoded() == 5000


# ---------------------------------------------------------------------- must show 4


def test_a_polled_share_picks_up_additions_and_deletions_within_its_interval(
        tmp_path: Path, rig_factory: Callable[..., Rig]) -> None:
    share = tmp_path / "nfs"
    write_photos(share, 3)
    rig = rig_factory({"nfs": {"path": share, "watch": "poll", "scan_interval": 1.0}}, settle=0.5)
    rig.wait_indexed("nfs", {"p00000.png", "p00001.png", "p00002.png"}, 30)
    state = rig.watcher.shares["nfs"]
    assert state.mode == "poll" and state.watch is None

    # A slow copy (a chunk every 0.2 s, for 2.4 s) is not indexed before it is complete.
    data = make_big_png()
    early = False
    with open(share / "slow.png", "wb") as handle:
        for i in range(12):
            handle.write(data[i * len(data) // 12:(i + 1) * len(data) // 12])
            handle.flush()
            time.sleep(0.2)
            early = early or "slow.png" in rig.live("nfs")
    assert not early, "a growing file on a polled share was indexed before it was complete"
    write_photos(share / "new", 2, start=10)
    (share / "p00001.png").unlink()
    started = time.monotonic()
    rig.wait_indexed("nfs", {"p00000.png", "p00002.png", "slow.png", "new/p00010.png", "new/p00011.png"},
                     1.0 + 0.5 + 2.5, "poll to find the additions and the deletion")
    print(f"poll share caught up in {time.monotonic() - started:.2f} s (interval 1 s, settle 0.5 s)")
    assert rig.encoded() == 6


# ---------------------------------------------------------------------- must show 5 (the real daemon)


def test_a_share_whose_root_goes_away_stays_searchable_and_returns_without_encoding(
        tmp_path: Path, daemon_factory) -> None:
    share = tmp_path / "photos"
    scenes = make_scenes(share, 60, seed=5)
    daemon = daemon_factory({"photos": share})
    status = wait_until(lambda: (s := daemon.status())["photos"]["indexed"] == 60 and s, 60, interval=0.2,
                        what="60 photos indexed")
    encoded = status["encoded"]["total"]
    assert encoded == 60

    def share_status() -> dict:
        return daemon.status()["shares"][0]

    def check_away(how: str) -> None:
        wait_until(lambda: not share_status()["available"], 5, what=f"the share to show unavailable ({how})")
        status = daemon.status()
        assert status["photos"]["indexed"] == 60 and status["photos"]["gone"] == 0, how
        assert status["shares"][0]["watch"] == "unavailable" and status["shares"][0]["problem"], how
        if os.geteuid() == 0:
            # Root may see everything; other users' read permission cannot be
            # checked on files that are not there, so the server hides those.
            hits = daemon.search("a red circle", k=100)
            assert {h["path"] for h in hits} == {str(p) for p in scenes}, how

    def check_back(how: str) -> None:
        wait_until(lambda: share_status()["available"], 5, what=f"the share to be back ({how})")
        status = daemon.wait_idle(30)
        time.sleep(1.0)
        status = daemon.status()
        assert status["photos"]["indexed"] == 60 and status["photos"]["pending"] == 0, how
        assert status["encoded"]["total"] == encoded, f"coming back cost encodings ({how})"
        assert status["shares"][0]["watch"] == "inotify", how

    away = tmp_path / "photos.away"
    share.rename(away)  # the root disappears, as an unmount of /srv/photos's parent would do
    check_away("root missing")
    away.rename(share)
    check_back("root back")

    share.rename(away)
    share.mkdir()  # an empty mount point, as an unmounted volume leaves behind
    check_away("root empty")
    share.rmdir()
    away.rename(share)
    check_back("volume back")
    assert "is missing" in daemon.log() and "is empty" in daemon.log()
    assert "forgot" not in daemon.log()


# ---------------------------------------------------------------------- must show 6


def test_enospc_on_adding_a_watch_degrades_that_share_to_polling_with_one_log_line(
        tmp_path: Path, rig_factory: Callable[..., Rig], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    big, small = tmp_path / "big", tmp_path / "small"
    write_photos(big, 1)
    write_photos(small, 1, start=1)

    def inject(w: Watcher) -> None:
        real = w.add_watch

        def add_watch(path: Path, handler: Any) -> object:
            if path == big:
                raise OSError(errno.ENOSPC, "inotify watch limit reached")
            return real(path, handler)
        w.add_watch = add_watch

    rig = rig_factory({"big": {"path": big, "scan_interval": 1.0}, "small": {"path": small}},
                      before_start=inject)
    rig.wait_indexed("big", {"p00000.png"}, 30)
    rig.wait_indexed("small", {"p00001.png"}, 30)
    assert rig.watcher.shares["big"].mode == "poll (inotify limit)"
    assert rig.watcher.shares["small"].mode == "inotify"
    limit = int(Path("/proc/sys/fs/inotify/max_user_watches").read_text())
    lines = watcher_warnings(caplog, "fs.inotify.max_user_watches")
    assert len(lines) == 1, lines
    assert "share 'big'" in lines[0] and f"fs.inotify.max_user_watches = {limit}" in lines[0]
    # Polling now does what inotify did: a new photo shows up within the interval.
    write_photos(big, 1, start=5)
    rig.wait_indexed("big", {"p00000.png", "p00005.png"}, 1.0 + 0.5 + 2.5, "the degraded share to poll")
    assert len(watcher_warnings(caplog, "fs.inotify.max_user_watches")) == 1


def test_more_folders_than_max_user_watches_degrades_before_watching(
        tmp_path: Path, rig_factory: Callable[..., Rig], caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # watchdog would start fine and leave the deeper folders silently unwatched.
    share = tmp_path / "deep"
    for i in range(6):
        write_photos(share / f"y{i}" / "m1", 1, start=i)
    monkeypatch.setattr("nasclip.watch.inotify.inotify_limit", lambda name: 10 if name == "max_user_watches" else None)
    rig = rig_factory({"deep": {"path": share}})
    wait_until(lambda: rig.watcher.shares["deep"].mode != "starting", 5, what="the share to be checked")
    assert rig.watcher.shares["deep"].mode == "poll (inotify limit)"
    lines = watcher_warnings(caplog, "fs.inotify.max_user_watches = 10")
    assert len(lines) == 1 and "13 folders" in lines[0]


# ---------------------------------------------------------------------- NAS junk, moves, permissions


def test_default_excludes_are_honoured_and_can_be_overridden(tmp_path: Path, rig_factory: Callable[..., Rig]) -> None:
    junk = ["@eaDir/a.png/SYNOPHOTO_THUMB_M.png", "#recycle/b.png", "@Recycle/c.png", "#snapshot/d.png",
            "x/.snapshot/e.png", ".snapshots/f.png", ".Trash-1000/g.png", ".AppleDouble/h.png",
            "@__thumb/i.png", ".hidden.png", "x/.DS_Store", "Thumbs.db", "notes.txt", "x/@EADIR/j.png"]
    wanted = ["a.png", "x/B.PNG", "x/y/c.png"]
    for root in (tmp_path / "nas", tmp_path / "custom"):
        for i, rel in enumerate(junk + wanted + ["private/k.png"]):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(tiny_png(i))
    rig = rig_factory({"nas": {"path": tmp_path / "nas"},
                       "custom": {"path": tmp_path / "custom", "exclude": ("private", "x/y/*")}})
    rig.wait_indexed("nas", set(wanted) | {"private/k.png"}, 30)
    custom = {r for r in junk + wanted if r.lower().endswith(".png")} - {"x/y/c.png"}
    rig.wait_indexed("custom", custom, 30)
    # Events obey the same rules as scans.
    (tmp_path / "nas" / "@eaDir" / "new.png").write_bytes(tiny_png(100))
    (tmp_path / "nas" / ".partial.png").write_bytes(tiny_png(101))
    (tmp_path / "nas" / "new.png").write_bytes(tiny_png(102))
    rig.wait_indexed("nas", set(wanted) | {"private/k.png", "new.png"}, 5)


def test_moves_between_folders_and_in_and_out_of_a_share(tmp_path: Path, rig_factory: Callable[..., Rig]) -> None:
    share, outside = tmp_path / "photos", tmp_path / "elsewhere"
    write_photos(share / "a", 3)
    write_photos(share / "b", 3, start=3)
    write_photos(outside, 1, start=50)  # never seen by nasclip
    rig = rig_factory({"photos": {"path": share}})
    expected = {f"a/p{i:05d}.png" for i in range(3)} | {f"b/p{i:05d}.png" for i in range(3, 6)}
    ids = rig.wait_indexed("photos", expected, 30)
    assert rig.encoded() == 6

    (share / "a" / "p00000.png").rename(share / "b" / "p00000.png")  # between folders
    (share / "a" / "p00001.png").rename(outside / "p00001.png")      # out of the share
    (outside / "p00050.png").rename(share / "a" / "p00050.png")      # in: a photo never seen
    expected = (expected - {"a/p00000.png", "a/p00001.png"}) | {"b/p00000.png", "a/p00050.png"}
    moved = rig.wait_indexed("photos", expected, 5)
    assert moved["b/p00000.png"] == ids["a/p00000.png"], "a move keeps the row and its vector"
    assert rig.encoded() == 7, "only the photo new to nasclip is encoded"

    (outside / "p00001.png").rename(share / "c.png")   # back in: its vector is reused
    shutil.move(str(share / "b"), str(outside / "b"))  # a folder out of the share
    expected = {"a/p00002.png", "a/p00050.png", "c.png"}
    rig.wait_indexed("photos", expected, 5)
    shutil.move(str(outside / "b"), str(share / "d"))  # and back in under another name
    expected |= {f"d/p{i:05d}.png" for i in (0, 3, 4, 5)}
    rig.wait_indexed("photos", expected, 5)
    rig.quiet()
    assert rig.encoded() == 7, "photos moved out and back in reuse their vectors"

    # rsync and many editors write a hidden temporary file and rename it into place.
    temp = share / "a" / ".p00060.png.Xy12Ab"
    temp.write_bytes(tiny_png(60))
    temp.rename(share / "a" / "p00060.png")
    temp.write_bytes(tiny_png(61))
    temp.rename(share / "c.png")  # saved over an indexed photo: new content, encoded again
    rig.wait_indexed("photos", expected | {"a/p00060.png"}, 5)
    wait_until(lambda: rig.encoded() == 9, 5, what="the new and the rewritten photo to be encoded")
    rig.quiet(1.0)
    assert rig.encoded() == 9


PERMISSION_PROBE = textwrap.dedent("""
    import json, logging, os, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from nasclip.config import ShareConfig
    from nasclip.store.store import Store
    from nasclip.watch.watcher import Watcher
    share, state, uid = Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    if uid >= 0:  # everything is imported: now stop being root, who may read anything
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    records = []
    handler = logging.Handler()
    handler.emit = lambda r: records.append(r.getMessage())
    logging.getLogger("nasclip").addHandler(handler)
    logging.getLogger("nasclip").setLevel(logging.INFO)
    store = Store(state, "probe", 8)
    watcher = Watcher(store, (ShareConfig(name="s", path=share, watch="poll"),), 0.0)
    def rows():
        return {os.fsdecode(p): s for p, s in store.reader().conn.execute("SELECT relpath, state FROM files")}
    watcher.request_scan(); watcher.scan_once()
    first = rows()
    os.chmod(share / "locked", 0)
    for _ in range(3):
        watcher.request_scan(); watcher.scan_once()
    print(json.dumps({"first": first, "after": rows(), "log": records}))
""")


def test_permission_denied_folder_is_logged_once_and_keeps_its_rows() -> None:
    # Root reads everything, so the probe drops to nobody when the tests run as root
    # (in a folder nobody can reach: pytest's own temporary folders are private).
    user = 65534 if os.geteuid() == 0 else -1
    with tempfile.TemporaryDirectory(prefix="nasclip-perm-") as tmp:
        base = Path(tmp)
        share, state = base / "share", base / "state"
        write_photos(share / "open", 2)
        write_photos(share / "locked", 2, start=2)
        state.mkdir()
        if user >= 0:
            for path in [base, *base.rglob("*")]:
                os.chown(path, user, -1)
            base.chmod(0o755)
        try:
            result = subprocess.run([sys.executable, "-c", PERMISSION_PROBE, str(ROOT), str(share), str(state),
                                     str(user)], capture_output=True, text=True, timeout=60)
        finally:
            (share / "locked").chmod(0o755)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    both = {"open/p00000.png", "open/p00001.png", "locked/p00002.png", "locked/p00003.png"}
    assert set(out["first"]) == both
    assert {p for p, s in out["after"].items() if s != "gone"} == both, "rows below the unreadable folder were lost"
    denied = [line for line in out["log"] if "cannot read folder" in line]
    assert len(denied) == 1 and str(share / "locked") in denied[0] and "ermission denied" in denied[0], out["log"]


# ---------------------------------------------------------------------- the watch itself


def test_a_stopped_observer_or_watch_is_noticed_and_replaced(tmp_path: Path, rig_factory: Callable[..., Rig],
                                                            caplog: pytest.LogCaptureFixture) -> None:
    share = tmp_path / "photos"
    write_photos(share, 1)
    rig = rig_factory({"photos": {"path": share}})
    rig.wait_indexed("photos", {"p00000.png"}, 30)
    # What an exception escaping a handler does to watchdog: the observer thread ends.
    observer = rig.watcher._observer
    assert observer is not None
    observer.stop()
    observer.join()
    write_photos(share, 1, start=1)
    rig.wait_indexed("photos", {"p00000.png", "p00001.png"}, 5, "a new observer and a rescan")
    assert watcher_warnings(caplog, "observer stopped")
    # watchdog stops the emitter of a deleted root; a root recreated at once needs a new watch.
    shutil.rmtree(share)
    share.mkdir()
    rig.wait_indexed("photos", set(), 5, "the deleted photos to be gone")
    write_photos(share, 1, start=2)
    rig.wait_indexed("photos", {"p00002.png"}, 6, "the recreated root to be watched")
    assert rig.watcher.shares["photos"].mode == "inotify"
