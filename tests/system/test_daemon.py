"""Issue 2: the walking skeleton through the real daemon process and the real socket."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, Scene, make_scenes, wait_until, write_scene

BIN = Path(sys.executable).parent


def paths_of(results: list[dict]) -> list[str]:
    return [r["path"] for r in results]


def test_copy_delete_rename_are_searchable_within_5_s(tmp_path: Path, daemon_factory) -> None:
    share = tmp_path / "photos"
    scenes = make_scenes(share / "2023", 40, seed=1)
    daemon = daemon_factory({"photos": share})
    status = daemon.wait_idle()
    assert status["photos"]["indexed"] == len(scenes)

    # Copied in: a purple star on white, which the share had none of in this exact pose.
    incoming = tmp_path / "incoming.jpg"
    write_scene(incoming, Scene("purple", "star", "white"), seed=99)
    target = share / "2024" / "new-star.jpg"
    target.parent.mkdir()
    shutil.copyfile(incoming, target)
    k = len(scenes) + 5
    wait_until(lambda: str(target) in paths_of(daemon.search("a purple star", k=k)), 5.0,
               what="the copied photo to be searchable")
    assert str(target) in paths_of(daemon.search("a purple star", k=5))

    # Renamed: found under its new path, not the old one.
    renamed = share / "2024" / "renamed-star.jpg"
    os.rename(target, renamed)
    def moved() -> bool:
        found = paths_of(daemon.search("a purple star", k=k))
        return str(renamed) in found and str(target) not in found
    wait_until(moved, 5.0, what="the renamed photo under its new path")

    # Deleted: gone from results.
    renamed.unlink()
    wait_until(lambda: str(renamed) not in paths_of(daemon.search("a purple star", k=k)), 5.0,
               what="the deleted photo to disappear")
    assert daemon.status()["encoded"]["run"] == len(scenes) + 1  # the rename cost nothing


def test_restart_reencodes_nothing_and_answers_the_same(tmp_path: Path, daemon_factory) -> None:
    share = tmp_path / "photos"
    scenes = make_scenes(share, 48, seed=2)
    daemon = daemon_factory({"photos": share})
    daemon.wait_idle()
    queries = ["a red circle", "黄色背景上的蓝色正方形", "green triangle"]
    before = {q: daemon.search(q, k=10) for q in queries}
    assert daemon.stop() == 0
    assert "encoded 48 photos this run" in daemon.log()

    daemon.start()
    status = daemon.wait_idle()
    assert status["encoded"]["run"] == 0
    assert status["encoded"]["total"] == len(scenes)
    assert status["photos"]["indexed"] == len(scenes)
    after = {q: daemon.search(q, k=10) for q in queries}
    assert after == before
    assert daemon.stop() == 0
    assert daemon.log().rstrip().endswith("encoded 0 photos this run, reused 0 vectors, 0 failed")


def test_query_cli_human_and_json_output(tmp_path: Path, daemon_factory) -> None:
    share = tmp_path / "photos"
    make_scenes(share, 32, seed=3)
    daemon = daemon_factory({"photos": share})
    daemon.wait_idle()
    human = subprocess.run([str(BIN / "nasclip-query"), "--config", str(daemon.config_path), "-k", "3",
                            "a red circle"], capture_output=True, text=True, check=True)
    lines = human.stdout.splitlines()
    assert len(lines) == 3
    for rank, line in enumerate(lines, 1):
        number, score, path = line.split(maxsplit=2)
        assert int(number) == rank and -1.0 <= float(score) <= 1.0 and Path(path).is_file()
    as_json = subprocess.run([str(BIN / "nasclip-query"), "--socket", str(daemon.socket), "--json", "-k", "4",
                              "红色的圆形"], capture_output=True, text=True, check=True)
    import json
    results = json.loads(as_json.stdout)["results"]
    assert len(results) == 4
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    assert all(set(r) >= {"path", "score"} for r in results)


def test_query_cli_when_the_daemon_is_not_running(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.sock"
    result = subprocess.run([str(BIN / "nasclip-query"), "--socket", str(missing), "a dog"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and str(missing) in result.stderr


def test_make_demo_finds_red_circles(tmp_path: Path) -> None:
    """`make demo` runs tools/demo.py: the real daemon on a generated share."""
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "demo.py")], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for query in ("a red circle", "红色的圆形"):
        block = result.stdout.split(f'$ nasclip-query -k 5 "{query}"\n')[1].split("\n\n")[0]
        names = [Path(line.split()[-1]).name for line in block.splitlines()[:5]]
        assert len(names) == 5 and all(n.startswith("red-circle-") for n in names), block
