"""Issue 12, findings 2 and 13: the state directory is private to the service and has one daemon."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from conftest import DaemonProcess, make_scenes, wait_until, write_config

from nasclip.cli.doctor import ServiceUser, check_state_dir
from nasclip.config import load_config

# The daemon runs under the most permissive umask an owner might have.
LAX_UMASK = ["sh", "-c", 'umask 000; exec "$@"', "sh"]


def modes(root: Path) -> dict[str, str]:
    """Relative path -> octal mode of root and everything below it."""
    found = {".": f"{stat.S_IMODE(root.stat().st_mode):04o}"}
    for path in root.rglob("*"):
        found[path.relative_to(root).as_posix()] = f"{stat.S_IMODE(path.lstat().st_mode):04o}"
    return found


def test_the_state_dir_becomes_private_whatever_the_umask_and_stays_so(tmp_path: Path, daemon_factory) -> None:
    share = tmp_path / "photos"
    make_scenes(share / "a", 10, seed=51)
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, 0o750)  # as the old unit made it (StateDirectoryMode=0750)
    (state / "catalog.db").write_bytes(b"")  # an empty file is an empty SQLite database
    os.chmod(state / "catalog.db", 0o644)
    daemon = daemon_factory({"photos": share}, start=False, index={"checkpoint_seconds": 0.3})
    daemon.prefix = LAX_UMASK
    daemon.start()
    daemon.wait_idle()
    make_scenes(share / "b", 10, seed=52)  # a second checkpoint generation, a fresh log
    wait_until(lambda: daemon.status()["photos"]["indexed"] == 20, 30, what="the second set")
    wait_until(lambda: any((state / "index").glob("*.faiss*")), 10, what="a checkpoint")
    time.sleep(1.0)  # another checkpoint or two
    found = modes(state)
    assert "catalog.db-wal" in found and any(name.startswith("index/") for name in found), found
    loose = {name: mode for name, mode in found.items()
             if mode != ("0700" if (state / name).is_dir() else "0600")}
    assert loose == {}, f"group or others may read state: {loose}"
    log = daemon.log()
    assert log.count("made the state directory private") == 1, log[-2000:]
    assert "catalog.db (0644 -> 0600)" in log
    assert daemon.stop() == 0
    loose = {n: m for n, m in modes(state).items() if m not in ("0700", "0600")}
    assert loose == {}


def test_doctor_flags_group_or_other_access_to_the_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "index").mkdir(parents=True, mode=0o700)
    os.chmod(state, 0o700)
    (state / "catalog.db").write_bytes(b"")
    os.chmod(state / "catalog.db", 0o600)
    config = load_config(write_config(tmp_path / "nasclip.yaml", {"p": tmp_path}))
    user = ServiceUser.current()
    assert all(c.level == "ok" for c in check_state_dir(config, user)), list(check_state_dir(config, user))
    os.chmod(state, 0o755)
    os.chmod(state / "catalog.db", 0o640)
    problems = [c for c in check_state_dir(config, user) if c.level != "ok"]
    assert len(problems) == 1 and problems[0].level == "fail", problems
    assert "catalog.db" in problems[0].message and str(state) in problems[0].message
    assert f"chmod -R go= {state}" in problems[0].hint


def test_a_second_daemon_on_the_same_state_dir_exits_naming_the_first(tmp_path: Path, daemon_factory) -> None:
    share = tmp_path / "photos"
    make_scenes(share, 4, seed=53)
    first = daemon_factory({"photos": share})
    first.wait_idle()
    # The very same settings (socket included), with its own log file.
    (tmp_path / "second").mkdir()
    config = tmp_path / "second" / "nasclip.yaml"
    config.write_text(first.config_path.read_text())
    second = DaemonProcess(config)
    second.start(wait=False)
    try:
        wait_until(lambda: second.proc.poll() is not None, 30, what="the second daemon to exit")
        code = second.proc.returncode
    finally:
        if second.proc.poll() is None:
            second.kill()
    assert code != 0
    log = second.log()
    assert f"pid {first.proc.pid}" in log and str(Path(first.config["state_dir"])) in log, log
    assert "Traceback" not in log
    assert first.request(op="ping")["ok"], "the first daemon must keep its socket"
    assert (Path(first.config["state_dir"]) / "lock").read_text().strip() == str(first.proc.pid)
