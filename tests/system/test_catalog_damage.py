"""Issue 12, finding 11: a damaged catalog gets a clear message, a doctor check and a rebuild that keeps the rest."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from conftest import make_scenes

from nasclip.cli.doctor import ServiceUser, check_state_dir
from nasclip.config import load_config

BIN = Path(sys.executable).parent
# Long folder names spread the rows of `files` over several pages.
FOLDER = "holiday-" + "x" * 150


def files_leaf_pages(db: Path) -> list[int]:
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the file itself, none in the WAL
        return [n for (n,) in conn.execute(
            "SELECT pageno FROM dbstat WHERE name='files' AND pagetype='leaf' ORDER BY pageno")]


def damage_page(db: Path, pageno: int) -> None:
    with sqlite3.connect(db) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    with open(db, "r+b") as handle:
        handle.seek((pageno - 1) * page_size)
        handle.write(b"\xa5" * page_size)


def admin(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "nasclip"), "--config", str(config), *args], capture_output=True, text=True,
                          timeout=120)


def test_a_damaged_catalog_is_reported_and_rebuilt_keeping_every_readable_row(tmp_path: Path,
                                                                               daemon_factory) -> None:
    share = tmp_path / "photos"
    scenes = make_scenes(share / FOLDER, 60, seed=71)
    daemon = daemon_factory({"photos": share})
    daemon.wait_idle()
    refused = admin(daemon.config_path, "catalog", "rebuild")
    assert refused.returncode != 0 and f"pid {daemon.proc.pid}" in refused.stderr, refused.stderr
    assert daemon.stop() == 0

    state = Path(daemon.config["state_dir"])
    db = state / "catalog.db"
    leaves = files_leaf_pages(db)
    assert len(leaves) >= 3, leaves
    damage_page(db, leaves[len(leaves) // 2])

    daemon.start(wait=False)
    code = daemon.proc.wait(60)
    log = daemon.log().split("---- start 1")[1]
    assert code == 65, log
    errors = [line for line in log.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "Traceback" not in log, log
    assert str(db) in errors[0] and "nasclip catalog rebuild" in errors[0], log
    assert "Traceback" not in admin(daemon.config_path, "status").stderr

    config = load_config(daemon.config_path)
    checks = [c for c in check_state_dir(config, ServiceUser.current()) if c.level == "fail"]
    assert checks and "integrity" in checks[0].message and "nasclip catalog rebuild" in checks[0].hint, checks

    done = admin(daemon.config_path, "catalog", "rebuild")
    assert done.returncode == 0, done.stdout + done.stderr
    damaged = list(state.glob("catalog.db.damaged-*"))
    assert len(damaged) == 1
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        kept = conn.execute("SELECT COUNT(*) FROM files").fetchone()[0]
    assert 0 < kept < len(scenes)
    assert f"files: kept {kept} of {len(scenes)} rows" in done.stdout, done.stdout

    daemon.start()
    status = daemon.wait_idle()
    assert status["photos"]["indexed"] == len(scenes)
    # Rows that survived keep their vectors; only the photos of the lost rows are encoded again.
    assert status["encoded"]["run"] == len(scenes) - kept
    found = {r["path"] for r in daemon.search("a photo", k=len(scenes))}
    assert found == {str(p) for p in scenes}
