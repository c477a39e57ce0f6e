"""Issue 5: kill -9 at random moments loses nothing and converges to one vector per photo."""

from __future__ import annotations

import os
import random
import re
import sqlite3
import time
from pathlib import Path

import faiss
import numpy as np
import pytest
from conftest import make_scenes, wait_until

from nasclip.store import checkpoint
from nasclip.store.catalog import decode_path

BATCH = 2


def check_state(state_dir: Path, share: Path) -> dict[int, str]:
    """Offline checks of catalog + checkpoint; returns id -> path of indexed rows."""
    db = sqlite3.connect(state_dir / "catalog.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = {i: decode_path(p) for i, p in db.execute("SELECT id, relpath FROM files WHERE state='indexed'")}
    others = db.execute("SELECT state, COUNT(*) FROM files WHERE state!='indexed' GROUP BY state").fetchall()
    newest = next((state_dir / "index").glob("*.faiss"))
    index, covered = checkpoint.read(newest)
    # The clean stop checkpointed: the log holds nothing the newest checkpoint lacks.
    assert db.execute("SELECT COUNT(*) FROM vector_log WHERE seq>?", (covered,)).fetchone()[0] == 0
    db.close()
    assert others == [], others
    on_disk = {p.relative_to(share).as_posix() for p in share.rglob("*.jpg")}
    assert sorted(rows.values()) == sorted(on_disk)
    ids = faiss.vector_to_array(index.id_map)
    assert len(ids) == len(np.unique(ids)), "an id is in the index twice"
    assert sorted(ids.tolist()) == sorted(rows)
    return rows


@pytest.mark.slow
def test_twenty_kills_converge_without_loss(tmp_path: Path, daemon_factory) -> None:
    share = tmp_path / "photos"
    # Grainy 2-megapixel photos and small batches keep the indexer busy across several kills.
    scenes = (make_scenes(share / "a", 150, seed=11, size=(1600, 1200), noise=25)
              | make_scenes(share / "b", 150, seed=12, size=(1200, 1600), noise=25))
    assert len(scenes) == 300
    daemon = daemon_factory({"photos": share}, start=False,
                            indexer={"batch_size": BATCH, "settle_seconds": 0.2, "decode_threads": 1},
                            index={"checkpoint_seconds": 0.5, "keep_deleted": 1.0})
    rng = random.Random(5)
    current = sorted(scenes)
    deleted = renamed = 0
    def encodings_per_run() -> list[int]:
        runs = daemon.log().split("---- start ")[1:]
        return [sum(int(n) for n in re.findall(r"encoded a batch of (\d+) photos", run)) for run in runs]

    for kill in range(20):
        daemon.start(wait=False)
        if sum(encodings_per_run()) < 240:
            # While much is left to encode, kill soon after this run's first batch, so
            # that kills land mid-indexing however fast the machine is.
            wait_until(lambda: encodings_per_run()[-1] > 0, 60, interval=0.02, what="a batch to be encoded")
            time.sleep(rng.uniform(0.0, 0.5))
        else:
            time.sleep(rng.uniform(0.3, 2.5))  # at start-up, during scans, checkpoints, idle
        # Renames and deletes while the daemon runs (seen as events) or is dead (seen by the scan).
        for _ in range(rng.randint(0, 3)):
            victim = current.pop(rng.randrange(len(current)))
            if rng.random() < 0.5:
                victim.unlink()
                deleted += 1
            else:
                target = victim.with_name(f"renamed-{kill}-{victim.name}")
                os.rename(victim, target)
                current.append(target)
                renamed += 1
        daemon.kill()
    daemon.start()
    status = daemon.wait_idle(timeout=120)
    assert status["photos"]["indexed"] == len(current) == 300 - deleted
    wait_until(lambda: daemon.status()["photos"]["gone"] == 0, 15, what="deleted photos to be purged")
    assert daemon.stop() == 0

    rows = check_state(Path(daemon.config["state_dir"]), share)
    assert len(rows) == 300 - deleted
    per_run = encodings_per_run()
    encodings = sum(per_run)
    # At most one batch per kill was encoded but not yet committed.
    assert encodings <= 300 + 20 * BATCH, f"{encodings} encodings for 300 photos ({renamed} renamed): {per_run}"
    assert renamed > 0 and deleted > 0
    assert sum(1 for n in per_run[:20] if n) >= 3, f"the kills should interrupt indexing: {per_run}"
