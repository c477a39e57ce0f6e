"""The query socket's path: nasclipd never deletes a file that is not a socket (issue 12, finding 7)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from conftest import make_scenes, write_config

from nasclip.cli import admin

BIN = Path(sys.executable).parent


def config_check(config: Path, capsys) -> tuple[int, str]:
    code = admin.main(["config", "check", str(config)])
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def test_a_socket_path_on_the_catalog_deletes_nothing(tmp_path: Path, daemon_factory, capsys) -> None:
    make_scenes(tmp_path / "photos", 3, seed=51)
    daemon = daemon_factory({"photos": tmp_path / "photos"})
    daemon.wait_idle()
    daemon.stop()
    catalog = tmp_path / "state" / "catalog.db"
    before = catalog.read_bytes()
    config = write_config(tmp_path / "nasclip.yaml", {"photos": tmp_path / "photos"}, socket=str(catalog))

    code, said = config_check(config, capsys)
    assert code == 1 and f"socket: {catalog} is nasclip's own catalog or index" in said, said
    run = subprocess.run([str(BIN / "nasclipd"), "--config", str(config)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode != 0 and f"{catalog} is nasclip's own catalog or index" in run.stderr, run
    assert catalog.read_bytes() == before


def test_a_file_that_is_not_a_socket_is_refused_not_removed(tmp_path: Path, daemon_factory, capsys) -> None:
    make_scenes(tmp_path / "photos", 1, seed=52)
    notes = tmp_path / "run" / "notes.txt"
    notes.parent.mkdir()
    notes.write_text("precious")
    daemon = daemon_factory({"photos": tmp_path / "photos"}, start=False, socket=str(notes))

    code, said = config_check(daemon.config_path, capsys)
    assert code == 1 and f"{notes} exists and is not a socket (a regular file)" in said, said
    daemon.start(wait=False)
    assert daemon.proc.wait(60) != 0
    assert f"{notes} exists and is not a socket (a regular file); nasclipd will not remove it" in daemon.log()
    assert notes.read_text() == "precious"

    # A socket left over by a crash is still cleaned up and reused.
    notes.unlink()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(notes))
    stale.close()
    code, said = config_check(daemon.config_path, capsys)
    assert code == 0, said
    daemon.start()
    assert daemon.request(op="ping")["ok"]


def test_stopping_removes_only_the_socket_it_bound(tmp_path: Path, daemon_factory) -> None:
    make_scenes(tmp_path / "photos", 1, seed=53)
    daemon = daemon_factory({"photos": tmp_path / "photos"})
    daemon.socket.unlink()
    daemon.socket.write_text("put here while nasclipd ran")
    assert daemon.stop() == 0
    assert daemon.socket.read_text() == "put here while nasclipd ran"
