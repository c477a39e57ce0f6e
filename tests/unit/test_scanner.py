"""Reconcile scans, path filters and settling, one call at a time on real files and a real catalog."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from nasclip.config import ShareConfig
from nasclip.store.store import Store
from nasclip.watch.scanner import (
    MOUNT_GUARD,
    PathFilter,
    count_folders,
    scan,
    unavailable,
)
from nasclip.watch.settle import Activity, Settler


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def photo(path: Path, data: bytes = b"x" * 100, age: float = 3600.0) -> Path:
    """A file that looks like a photo, last modified `age` seconds ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "state", "m", 8)
    yield s
    s.close()


def states(store: Store, share: str = "s") -> dict[str, str]:
    return {os.fsdecode(p): st for p, st in
            store.reader().conn.execute("SELECT relpath, state FROM files WHERE share=?", (share,))}


# ---------------------------------------------------------------------- filters


def test_path_filter_defaults_case_and_whole_path_patterns() -> None:
    default = PathFilter(ShareConfig(name="s", path=Path("/x")))
    assert default.wanted("2019/IMG_1.JPG") and default.wanted("a/b.heic") and default.wanted("c.Jpeg")
    for junk in ("@eaDir/IMG_1.JPG/SYNOPHOTO_THUMB_XL.jpg", "#recycle/a.jpg", "a/@Recycle/b.jpg",
                 "#snapshot/a.jpg", ".snapshot/hourly.0/a.jpg", ".snapshots/1/a.jpg", ".Trash-1000/files/a.jpg",
                 ".AppleDouble/a.jpg", "@__thumb/a.jpg", "a/.hidden.jpg", "a/@EADIR/b.jpg", "notes.txt",
                 "a/.DS_Store", "Thumbs.db", ".a.jpg.XXXXXX"):
        assert not default.wanted(junk), junk
    custom = PathFilter(ShareConfig(name="s", path=Path("/x"), extensions=("JPG", ".png"),
                                    exclude=("private", "2019/tmp*")))
    assert custom.wanted("@eaDir/a.jpg") and custom.wanted("x.PNG") and not custom.wanted("a.heic")
    assert not custom.wanted("private/a.jpg") and not custom.wanted("2019/tmp/a.jpg")
    assert custom.wanted("2020/tmp/a.jpg") and not custom.folder_wanted("2019/tmp-old")


# ---------------------------------------------------------------------- scans


def test_scan_adds_changes_and_deletes_and_an_unchanged_tree_costs_no_writes(tmp_path: Path, store: Store) -> None:
    root = tmp_path / "share"
    a = photo(root / "a.jpg")
    photo(root / "sub" / "b.jpg")
    photo(root / "@eaDir" / "a.jpg" / "thumb.jpg")
    share = ShareConfig(name="s", path=root)
    report = scan(share, store, 2.0)
    assert report.changes == {"new": 2} and report.files == 2 and report.folders == 2
    assert scan(share, store, 2.0).changes == {}
    photo(a, b"y" * 150)
    (root / "sub" / "b.jpg").unlink()
    fresh = photo(root / "sub" / "c.jpg", age=0)  # still being written, maybe
    report = scan(share, store, 2.0)
    assert report.changes == {"changed": 1, "deleted": 1} and report.recent == ["sub/c.jpg"]
    assert states(store) == {"a.jpg": "pending", "sub/b.jpg": "gone"}
    os.utime(fresh, (time.time() - 60, time.time() - 60))
    assert scan(share, store, 2.0, below="sub").changes == {"new": 1}


def test_a_root_that_vanishes_or_empties_is_unavailable_and_nothing_is_deleted(tmp_path: Path, store: Store) -> None:
    root = tmp_path / "share"
    for i in range(MOUNT_GUARD):
        photo(root / f"{i}.jpg")
    share = ShareConfig(name="s", path=root)
    scan(share, store, 2.0)
    root.rename(tmp_path / "away")
    report = scan(share, store, 2.0)
    assert not report.available and "missing" in (report.problem or "")
    root.mkdir()
    report = scan(share, store, 2.0)
    assert not report.available and "empty" in (report.problem or "")
    assert unavailable(share, store, empty_ok=True) is None
    # A volume that goes away while the walk runs: the check before deleting catches it.
    root.rmdir()
    (tmp_path / "away").rename(root)
    calls = []

    def check() -> str | None:
        calls.append(1)
        return None if len(calls) == 1 else "went away"

    for i in range(10):
        (root / f"{i}.jpg").unlink()
    report = scan(share, store, 2.0, check=check)
    assert not report.available and report.problem == "went away"
    assert set(states(store).values()) == {"pending"} and len(states(store)) == MOUNT_GUARD


def test_count_folders_counts_what_inotify_must_watch(tmp_path: Path) -> None:
    for rel in ("a/b/c", "a/@eaDir/x", ".hidden", "d"):
        (tmp_path / rel).mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "a")
    assert count_folders(tmp_path) == 8  # root, a, a/b, a/b/c, a/@eaDir, a/@eaDir/x, .hidden, d


# ---------------------------------------------------------------------- settling


def test_settler_waits_for_close_write_and_takes_renamed_files_after_a_grace(tmp_path: Path) -> None:
    clock = Clock()
    settler = Settler(settle_seconds=2.0, close_grace=0.5, open_limit=10.0, clock=clock)
    path = tmp_path / "a.jpg"
    with open(path, "wb") as handle:
        handle.write(b"x" * 10)
        handle.flush()
        settler.saw(("s", "a.jpg"), str(path), Activity.CREATED)
        settler.saw(("s", "a.jpg"), str(path), Activity.WRITTEN)
        clock.advance(5.0)
        assert settler.ready() == []  # quiet for longer than the settle time, but still open
    settler.saw(("s", "a.jpg"), str(path), Activity.CLOSED)
    clock.advance(0.4)
    assert settler.ready() == []
    clock.advance(0.2)
    st = path.stat()
    assert settler.ready() == [(("s", "a.jpg"), st.st_size, st.st_mtime_ns)] and len(settler) == 0

    moved = tmp_path / "b.jpg"
    path.rename(moved)
    settler.saw(("s", "b.jpg"), str(moved), Activity.RENAMED)
    clock.advance(0.5)
    assert [k for k, *_ in settler.ready()] == [("s", "b.jpg")]


def test_settler_without_events_needs_size_and_mtime_unchanged_for_the_settle_time(tmp_path: Path) -> None:
    clock = Clock()
    settler = Settler(settle_seconds=2.0, close_grace=0.5, open_limit=10.0, clock=clock)
    path = tmp_path / "a.jpg"
    path.write_bytes(b"x" * 10)
    settler.saw(("s", "a.jpg"), str(path), Activity.CHANGED)
    clock.advance(1.0)
    settler.saw(("s", "a.jpg"), str(path), Activity.CHANGED)  # a scan finds it again: no restart
    clock.advance(1.0)
    with open(path, "ab") as handle:  # grew, and no event said so (a polled share)
        handle.write(b"y")
    assert settler.ready() == []
    clock.advance(1.9)
    assert settler.ready() == []
    clock.advance(0.1)
    assert len(settler.ready()) == 1

    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    settler.saw(("s", "empty.jpg"), str(empty), Activity.CREATED)
    clock.advance(5.0)
    assert settler.ready() == []  # created and still empty: the writer has not started
    clock.advance(5.0)
    assert len(settler.ready()) == 1  # ... or never will
    gone = tmp_path / "gone.jpg"
    gone.write_bytes(b"x")
    settler.saw(("s", "gone.jpg"), str(gone), Activity.CHANGED)
    gone.unlink()
    clock.advance(3.0)
    assert settler.ready() == [] and len(settler) == 0


def test_settler_is_bounded(tmp_path: Path) -> None:
    settler = Settler(2.0, 0.5, 10.0, Clock(), limit=2)
    assert settler.saw(("s", "a"), str(tmp_path / "a"), Activity.CHANGED)
    assert settler.saw(("s", "b"), str(tmp_path / "b"), Activity.CHANGED)
    assert not settler.saw(("s", "c"), str(tmp_path / "c"), Activity.CHANGED)
    assert settler.saw(("s", "a"), str(tmp_path / "a"), Activity.WRITTEN)  # known files still update


def test_shares_that_contain_each_other_are_refused() -> None:
    from nasclip.config import parse_config
    from nasclip.errors import ConfigError

    text = ("shares:\n  - {name: all, path: /srv/photos}\n  - {name: kids, path: /srv/photos/kids}\n"
            "model: /m\n")
    with pytest.raises(ConfigError, match=r"shares\[1\]\.path: /srv/photos/kids overlaps share 'all'"):
        parse_config(text, Path("/etc/nasclip/nasclip.yaml"))
    with pytest.raises(ConfigError, match=r"extensions: is empty"):
        parse_config("shares:\n  - {name: a, path: /a, extensions: []}\nmodel: /m\n", Path("/etc/n.yaml"))
