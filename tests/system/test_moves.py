"""Issue 5: moving photos costs no encoding, whether the daemon sees the move or finds it later."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import make_scenes, wait_until


def all_paths(daemon, k: int = 1000) -> set[str]:
    return {r["path"] for r in daemon.search("a photo", k=k)}


def test_folder_moved_to_another_share_reuses_every_vector(tmp_path: Path, daemon_factory) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    scenes = make_scenes(first / "trip", 200, seed=21)
    second.mkdir()
    (second / "keep.jpg").write_bytes(next(iter(scenes)).read_bytes())  # a copy: reused at once too
    daemon = daemon_factory({"first": first, "second": second})
    status = daemon.wait_idle()
    assert status["photos"]["indexed"] == 201
    assert status["encoded"]["run"] == 200 and status["reused"] == 1

    os.rename(first / "trip", second / "trip-2023")
    moved = {str(second / "trip-2023" / p.name) for p in scenes}
    wait_until(lambda: moved <= all_paths(daemon) and not any(str(p) in all_paths(daemon) for p in scenes),
               30, what="the moved photos under their new share")
    status = daemon.wait_idle()
    assert status["encoded"]["run"] == 200, "moving between shares must not re-encode"
    assert status["photos"]["indexed"] == 201
    results = daemon.search("a photo", k=10, share="second")
    assert results and all(r["share"] == "second" for r in results)


def test_folder_moved_while_the_daemon_was_stopped_reuses_every_vector(tmp_path: Path, daemon_factory) -> None:
    share = tmp_path / "photos"
    scenes = make_scenes(share / "2022" / "summer", 200, seed=22)
    daemon = daemon_factory({"photos": share})
    daemon.wait_idle()
    assert daemon.stop() == 0

    (share / "archive").mkdir()
    os.rename(share / "2022" / "summer", share / "archive" / "summer-2022")
    daemon.start()
    status = daemon.wait_idle()
    assert status["encoded"]["run"] == 0 and status["reused"] == 200
    assert status["encoded"]["total"] == 200
    expected = {str(share / "archive" / "summer-2022" / p.name) for p in scenes}
    assert all_paths(daemon) == expected
