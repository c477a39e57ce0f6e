"""Names and files that try to break nasclip's text: forged log lines, monstrous YAML, files that never change.

File names, config files and model manifests come from people; every text
output must stay one line per entry, every YAML reader must fail clearly and
quickly on a hostile file, and a file that keeps failing must cost ever less.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DEMO_MODEL, Scene, wait_until, write_scene

from nasclip.config import load_config
from nasclip.display import printable
from nasclip.errors import ConfigError, ModelError
from nasclip.model.registry import load_registry
from nasclip.model.spec import load_model_spec
from nasclip.store import catalog as cat
from nasclip.store.store import Seen, Store
from nasclip.typedyaml import MAX_YAML_DEPTH

BIN = Path(sys.executable).parent
FORGED = "a\nERROR fake.jpg"


def old(path: Path, days: float = 2) -> Path:
    stamp = time.time() - days * 86400
    os.utime(path, (stamp, stamp))
    return path


# --------------------------------------------------------------------------- names in text output


def test_printable_escapes_controls_and_keeps_everything_else() -> None:
    assert printable("a\nERROR fake.jpg") == "a\\nERROR fake.jpg"
    assert printable("tab\there\x1b[31mred\x7f\x85\u2028") == "tab\\there\\x1b[31mred\\x7f\\x85\\u2028"
    assert printable(os.fsdecode(b"caf\xe9.jpg")) == "caf\ufffd.jpg"
    assert printable("金色頭發 ok.jpg") == "金色頭發 ok.jpg"


def test_a_file_name_with_a_newline_stays_on_one_line_in_the_log_and_in_nasclip_failed(
        tmp_path: Path, daemon_factory) -> None:
    share = tmp_path / "photos"
    old(write_scene(share / "good.jpg", Scene("red", "circle", "white")))
    old_path = share / FORGED
    old_path.write_text("not a photo\n")
    old(old_path)
    daemon = daemon_factory({"photos": share})
    wait_until(lambda: daemon.status()["photos"]["failed"] == 1, 20, what="the forged name to fail")
    log_lines = daemon.log().splitlines()
    assert not [line for line in log_lines if line.startswith("ERROR fake.jpg")], "a forged log line"
    assert [line for line in log_lines if "a\\nERROR fake.jpg" in line and "not an image" in line]

    env = {**os.environ, "NASCLIP_SOCKET": str(daemon.socket)}
    failed = subprocess.run([str(BIN / "nasclip"), "--socket", str(daemon.socket), "failed"],
                            capture_output=True, text=True, env=env, check=True)
    assert failed.stdout.splitlines() == [f"{share}/a\\nERROR fake.jpg\tnot an image nasclip can read "
                                          "(unknown format or damaged header)"]
    status = subprocess.run([str(BIN / "nasclip"), "--socket", str(daemon.socket), "status"],
                            capture_output=True, text=True, env=env, check=True)
    assert not [line for line in status.stdout.splitlines() if line.startswith("ERROR fake.jpg")]
    assert "a\\nERROR fake.jpg" in status.stdout


# --------------------------------------------------------------------------- YAML bounds


def test_a_deeply_nested_config_fails_clearly_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "nasclip.yaml"
    path.write_text("shares: []\nmodel: /m\nindexer: " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"{path}:3: not valid YAML: nested deeper than {MAX_YAML_DEPTH} levels" in str(info.value)
    check = subprocess.run([str(BIN / "nasclip"), "config", "check", str(path)], capture_output=True, text=True)
    assert check.returncode == 1 and "Traceback" not in check.stderr and "nested deeper" in check.stderr


def test_a_huge_config_is_refused_at_once_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "nasclip.yaml"
    with open(path, "w") as handle:
        handle.write("shares: []\nmodel: /m\n")
        line = "# " + "x" * 1000 + "\n"
        for _ in range(72_000):  # 72 MB
            handle.write(line)
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert time.monotonic() - started < 1.0
    assert "larger than 1024 KiB" in str(info.value) and str(path) in str(info.value)


def test_model_manifests_and_registries_have_the_same_bounds(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.yaml").write_text("name: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n")
    with pytest.raises(ModelError, match="nested deeper than"):
        load_model_spec(model)
    registry = tmp_path / "registry.yaml"
    registry.write_text("models:\n" + "  - x\n" * 400_000)
    with pytest.raises(ModelError, match="larger than 1024 KiB"):
        load_registry(registry)
    assert load_model_spec(DEMO_MODEL).embedding_dim > 0  # real files are well within the bounds


# --------------------------------------------------------------------------- retries that back off


def test_claiming_work_does_not_read_the_rows_waiting_for_a_retry(tmp_path: Path) -> None:
    store = Store(tmp_path / "state", "m", 4)
    try:
        store.apply([Seen("p", f"wait/{i:05d}.jpg", 0, i) for i in range(20_000)])
        later = cat.now() + 3600
        with store.catalog.transaction() as tx:
            tx.execute("UPDATE files SET retry_at=?, attempts=1", (later,))
        store.apply([Seen("p", f"new/{i}.jpg", 10, 10**12 + i) for i in range(3)])
        conn = store.reader().conn
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0
        conn.set_progress_handler(count, 100)  # called every 100 virtual-machine instructions
        claimed = store.pending(8, set())
        conn.set_progress_handler(None, 0)
        assert sorted(r.relpath for r in claimed) == ["new/0.jpg", "new/1.jpg", "new/2.jpg"]
        assert steps[0] * 100 < 20_000, f"{steps[0] * 100} instructions to claim 3 rows past 20,000 waiting"
    finally:
        store.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.slow
def test_2000_empty_files_cost_little_cpu_once_they_failed_and_their_retries_grow_apart(
        tmp_path: Path, daemon_factory) -> None:
    share = tmp_path / "photos"
    share.mkdir()
    for i in range(2000):
        (share / f"e{i:05d}.jpg").write_bytes(b"")  # fresh: they may still be arriving, so they are retried
    daemon = daemon_factory({"photos": share}, log_level="info")
    catalog = f"file:{tmp_path / 'state' / 'catalog.db'}?mode=ro"

    def attempts() -> tuple[int, int]:
        with sqlite3.connect(catalog, uri=True) as db:
            return db.execute("SELECT MIN(attempts), COUNT(*) FROM files").fetchone()
    wait_until(lambda: attempts() == (2, 2000), 30, interval=0.2, what="every empty file tried twice")
    started, cpu = time.monotonic(), cpu_seconds(daemon.proc.pid)
    time.sleep(12.0)  # covers the third try of every file
    spent = cpu_seconds(daemon.proc.pid) - cpu
    with sqlite3.connect(catalog, uri=True) as db:
        gaps = dict(db.execute("SELECT attempts, AVG(retry_at - updated) FROM files GROUP BY attempts"))
    print(f"2000 empty files: {spent:.2f} CPU-s in {time.monotonic() - started:.0f} s after their second try; "
          f"retry gaps by attempt {gaps}")
    assert min(gaps) >= 3, gaps
    assert all(gaps[n] < gaps[m] for n in gaps for m in gaps if n < m), gaps
    assert spent < 0.6, f"{spent:.2f} CPU-seconds for 2000 retries"  # today's main: 0.71 alone
