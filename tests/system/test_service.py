"""nasclip as a systemd service, with the real daemon as a process.

The notify socket here is our own datagram socket standing in for systemd;
the "stuck" indexer is a real blocking read: a FIFO linked into a share,
which the indexer opens like any photo and which blocks until a writer
comes — the way a read from a hung network share blocks.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

import pytest
import yaml
from conftest import DEMO_MODEL, make_scenes, wait_until, write_config, write_scene

from nasclip.cli.doctor import ServiceUser, run_checks
from nasclip.config import load_config
from nasclip.errors import DaemonUnavailable
from nasclip.query.client import call
from nasclip.service.logs import JOURNAL_SOCKET, JournalHandler
from nasclip.service.notify import Notifier
from nasclip.service.reload import plan_reload
from nasclip.store import checkpoint
from tools.scenes import Scene

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "nasclip.service"
SYSUSERS = ROOT / "systemd" / "nasclip.sysusers"
BIN = Path(sys.executable).parent
N_PHOTOS = 300
PROGRESS = re.compile(r"^indexed [\d ]+ / [\d ]+, [\d.]+ photos/s, about .+ left")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A share big enough that indexing takes a few seconds (read-only for the daemons)."""
    folder = tmp_path_factory.mktemp("photos")
    make_scenes(folder, N_PHOTOS, seed=8)
    return folder


class NotifySocket:
    """Stands in for systemd: records every datagram sent to $NOTIFY_SOCKET with its arrival time."""

    def __init__(self, address: str, on_ready: Callable[[], object] | None = None) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.1)
        self.on_ready = on_ready
        self.at_ready: object = None  # what on_ready returned when READY=1 arrived
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            now = time.monotonic()
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            if fields.get("READY") == "1" and self.on_ready is not None and self.at_ready is None:
                self.at_ready = self.on_ready()  # right now, before anything else happens
            with self._lock:
                self.messages.append((now, fields))

    def snapshot(self) -> list[tuple[float, dict[str, str]]]:
        with self._lock:
            return list(self.messages)

    def wait_for(self, predicate: Callable[[dict[str, str]], bool], after: float = 0.0,
                 timeout: float = 30.0, what: str = "a notification") -> tuple[float, dict[str, str]]:
        def found() -> tuple[float, dict[str, str]] | None:
            return next(((t, m) for t, m in self.snapshot() if t >= after and predicate(m)), None)
        return wait_until(found, timeout, what=what)

    def pings(self, start: float, end: float) -> list[float]:
        return [t for t, m in self.snapshot() if start <= t <= end and m.get("WATCHDOG") == "1"]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def answers(path: Path) -> bool:
    try:
        return bool(call(path, op="ping")["ok"])
    except DaemonUnavailable:
        return False


HUNG_MOUNT = Path(__file__).resolve().parents[1] / "fakes" / "hung_mount"


def hang_photo(folder: Path, name: str) -> Path:
    """A photo whose reads block (tests/fakes/hung_mount) until folder/.release exists."""
    (folder / ".release").unlink(missing_ok=True)
    path = folder / f"hung-{name}"
    write_scene(folder / f".{name}.part", Scene("blue", "star", "white"))
    os.replace(folder / f".{name}.part", path)
    return path


def catalog_counts(state: Path) -> tuple[int, int]:
    """(indexed rows, logged vectors the newest checkpoint does not cover) straight from the files."""
    covered = max((checkpoint.read(p)[1] or 0 for p in (state / "index").glob("*.faiss")), default=0)
    with sqlite3.connect(state / "catalog.db") as conn:
        indexed = conn.execute("SELECT COUNT(*) FROM files WHERE state='indexed'").fetchone()[0]
        logged = conn.execute("SELECT COUNT(*) FROM vector_log WHERE seq>?", (covered,)).fetchone()[0]
    return indexed, logged


def catalog_row(state: Path, share: str, relpath: str) -> tuple[int, str] | None:
    """(size, state) of one photo's row."""
    with sqlite3.connect(state / "catalog.db") as conn:
        return conn.execute("SELECT size, state FROM files WHERE share=? AND relpath=?",
                            (share, relpath.encode())).fetchone()


def unit_setting(name: str) -> str:
    match = re.search(rf"^{name}=(.+)$", UNIT.read_text(), re.M)
    assert match, f"{name} is not set in {UNIT}"
    return match.group(1).strip()


def seconds(value: str) -> float:
    """A systemd time span such as '2min', '90s' or '1min 30s'."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value))


# ---------------------------------------------------------------------- the notify protocol


@pytest.mark.slow
def test_notify_ready_status_watchdog_stall_and_stopping(tmp_path: Path, photos: Path, daemon_factory) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "broken.jpg").write_bytes(b"this is a text file, not a photo")
    # Under systemd stderr is a journal stream; JOURNAL_STREAM naming our log file makes nasclipd
    # believe it. With no journald to take native entries, lines get <N> priority prefixes.
    log_file = tmp_path / "nasclipd.log"
    log_file.touch()
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "1000000",
           "PYTHONPATH": os.pathsep.join([str(HUNG_MOUNT), os.environ.get("PYTHONPATH", "")])}
    journal_stream = not JOURNAL_SOCKET.exists()
    if journal_stream:
        env["JOURNAL_STREAM"] = f"{log_file.stat().st_dev}:{log_file.stat().st_ino}"
    daemon = daemon_factory({"photos": photos, "incoming": incoming}, env=env, start=False,
                            indexer={"batch_size": 2, "decode_threads": 1, "decode_timeout": 600},
                            service={"stall_seconds": 1.0, "stop_timeout": 2.0})
    notify = NotifySocket(env["NOTIFY_SOCKET"], on_ready=lambda: answers(daemon.socket))
    try:
        daemon.start(wait=False)

        # READY=1 comes first, and only once the socket answers.
        ready, message = notify.wait_for(lambda m: m.get("READY") == "1", timeout=60, what="READY=1")
        assert notify.at_ready is True, "READY=1 was sent before the query socket answered"
        assert notify.snapshot()[0][1] == message, "something was sent before READY=1"

        # STATUS= with progress while indexing, then "up to date"; pings all along.
        progress = notify.wait_for(lambda m: bool(PROGRESS.match(m.get("STATUS", ""))), timeout=60,
                                   what="a STATUS line with progress")[1]["STATUS"]
        progress_at = notify.wait_for(lambda m: m.get("STATUS") == progress)[0]
        done, final = notify.wait_for(lambda m: "up to date" in m.get("STATUS", ""), after=progress_at, timeout=90,
                                      what="up to date")
        assert final["STATUS"] == f"indexed {N_PHOTOS} / {N_PHOTOS + 1}, up to date, 1 failed", final
        assert notify.pings(progress_at, done), f"no WATCHDOG=1 while indexing ({progress})"

        # One line for the failed photo, naming it and the reason, with its journal priority.
        failed = [line for line in daemon.log().splitlines() if "broken.jpg" in line]
        assert len(failed) == 1, failed
        assert re.search(r"cannot index .*/incoming/broken\.jpg: not an image", failed[0]), failed[0]
        assert failed[0].startswith("<4>nasclip.indexer: ") if journal_stream else "WARNING" in failed[0]

        # Pings at WATCHDOG_USEC / 2, busy or idle, with no gap long enough for systemd to act.
        time.sleep(max(0.0, 2.0 - (time.monotonic() - done)))
        pings = notify.pings(ready, time.monotonic())
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        assert len(pings) >= 4 and max(gaps) < 1.0, f"pings {len(pings)}, longest gap {max(gaps):.2f} s"

        # A photo whose read blocks (a hung mount): the indexer stalls, the pings stop, queries still work.
        stuck = hang_photo(incoming, "stuck.jpg")
        wait_until(lambda: daemon.status()["service"]["stalled"], 20, what="the daemon to notice the stall")
        stalled_at = time.monotonic()
        time.sleep(3.0)
        status = daemon.status()
        assert status["healthy"] is False and status["photos"]["pending"] == 1
        assert notify.pings(stalled_at, time.monotonic()) == [], "WATCHDOG=1 was sent while the indexer was stuck"

        # The mount answers again: the read completes, pings resume, the photo is indexed.
        (incoming / ".release").touch()
        unblocked = time.monotonic()
        notify.wait_for(lambda m: m.get("WATCHDOG") == "1", after=unblocked, timeout=15, what="pings to resume")
        real = stuck.stat().st_size
        wait_until(lambda: catalog_row(tmp_path / "state", "incoming", stuck.name) == (real, "indexed"), 15,
                   what="the photo whose read blocked to be indexed")
        status = daemon.wait_idle()
        assert status["healthy"] and status["photos"]["indexed"] == N_PHOTOS + 1

        # SIGTERM with a read stuck again: STOPPING=1, and the process leaves within service.stop_timeout.
        hang_photo(incoming, "stuck-again.jpg")
        wait_until(lambda: daemon.status()["service"]["stalled"], 20, what="the second stall")
        asked = time.monotonic()
        assert daemon.stop(signal.SIGTERM, timeout=30) == 0
        took = time.monotonic() - asked
        notify.wait_for(lambda m: m.get("STOPPING") == "1", after=asked, timeout=1, what="STOPPING=1")
        assert took < 2.0 + 5.0, f"stop took {took:.1f} s with service.stop_timeout 2 s"
        assert "the indexer did not stop within service.stop_timeout" in daemon.log()
        assert catalog_counts(tmp_path / "state") == (N_PHOTOS + 1, 0), "no final checkpoint"
    finally:
        notify.close()


# ---------------------------------------------------------------------- stopping under load


def test_sigterm_during_heavy_indexing_checkpoints_and_nothing_is_encoded_twice(
        tmp_path: Path, photos: Path, daemon_factory) -> None:
    stop_timeout = seconds(unit_setting("TimeoutStopSec"))
    daemon = daemon_factory({"photos": photos}, indexer={"batch_size": 4, "decode_threads": 2})
    wait_until(lambda: daemon.status()["photos"]["indexed"] >= 8, 60, interval=0.02, what="indexing to begin")
    asked = time.monotonic()
    assert daemon.stop(signal.SIGTERM, timeout=stop_timeout) == 0
    took = time.monotonic() - asked
    assert took < stop_timeout and "did not stop within" not in daemon.log()
    indexed, logged = catalog_counts(tmp_path / "state")
    assert 0 < indexed < N_PHOTOS, f"{indexed} of {N_PHOTOS} indexed: the stop did not come during indexing"
    assert logged == 0, "the vector log holds vectors no checkpoint has: none was written at the stop"
    index_files = list((tmp_path / "state" / "index").glob("*.faiss"))
    assert len(index_files) == 1 and checkpoint.read(index_files[0])[0].ntotal == indexed

    daemon.start()
    status = daemon.wait_idle(timeout=90)
    assert status["photos"]["indexed"] == N_PHOTOS
    assert status["encoded"]["run"] == N_PHOTOS - indexed, "photos done before the stop were encoded again"
    assert status["encoded"]["total"] == N_PHOTOS and status["reused"] == 0

    # The admin commands on the running daemon, as a person uses them.
    config = str(daemon.config_path)
    human = subprocess.run([str(BIN / "nasclip"), "--config", config, "status"], capture_output=True, text=True,
                           timeout=30)
    assert human.returncode == 0 and f"{N_PHOTOS} indexed, 0 pending" in human.stdout, human
    assert f"config   {config}" in human.stdout
    raw = subprocess.run([str(BIN / "nasclip"), "--config", config, "status", "--json"], capture_output=True,
                         text=True, timeout=30)
    status = yaml.safe_load(raw.stdout)
    assert status["model"]["backend"] and status["index"]["bytes_on_disk"] > 0
    assert status["shares"][0]["watch"] == "inotify" and status["service"]["restart_needed"] == []
    doctor = subprocess.run([str(BIN / "nasclip"), "--config", config, "doctor"], capture_output=True, text=True,
                            timeout=60)
    lines = doctor.stdout.splitlines()
    assert doctor.returncode == 0, doctor.stdout
    for topic in ("config", "model", "backend", "share", "inotify", "state", "socket", "daemon"):
        assert any(re.match(rf"(ok|warn)\s+{topic}\s+\S", line) for line in lines), f"no {topic} line:\n{lines}"
    assert any(re.match(r"ok\s+daemon\s+healthy: 300 photos indexed", line) for line in lines), lines
    daemon.stop()


# ---------------------------------------------------------------------- reload


def test_sighup_reloads_shares_and_settings_and_rejects_a_broken_config(tmp_path: Path, daemon_factory) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    make_scenes(first, 4, seed=1, prefix="first")
    make_scenes(second, 4, seed=2, prefix="second")
    address = f"@nasclip-test-{uuid.uuid4().hex}"  # an abstract socket, as some managers use
    notify = NotifySocket(address)
    try:
        daemon = daemon_factory({"first": first}, env={"NOTIFY_SOCKET": address}, log_level="info")
        wait_until(lambda: daemon.status()["photos"]["indexed"] == 4, 30, what="the first share to be indexed")
        config = daemon.config_path
        model_link = tmp_path / "model-elsewhere"
        model_link.symlink_to(DEMO_MODEL)
        write_config(config, {"second": second}, log_level="debug", model=str(model_link), query={"max_k": 3},
                     index={"checkpoint_seconds": 0.5})
        asked = time.monotonic()
        daemon.proc.send_signal(signal.SIGHUP)
        reloading, _ = notify.wait_for(lambda m: m.get("RELOADING") == "1" and "MONOTONIC_USEC" in m, after=asked,
                                       what="RELOADING=1")
        notify.wait_for(lambda m: m.get("READY") == "1", after=reloading, what="READY=1 after the reload")

        def switched() -> dict | None:
            status = daemon.status()
            shares = [s["name"] for s in status["shares"]]
            return status if shares == ["second"] and status["photos"]["indexed"] == 4 and \
                status["photos"]["pending"] == 0 and status["shares"][0]["last_scan"] else None
        status = wait_until(switched, 30, interval=0.2, what="the new share to be indexed")
        assert status["photos"]["gone"] == 4, "the removed share's photos are still searchable"
        assert {hit["share"] for hit in daemon.search("a red circle", k=3)} == {"second"}
        reply = daemon.request(op="search", text="a red circle", k=4)
        assert not reply["ok"] and "from 1 to 3" in reply["error"]["message"], reply  # query.max_k, live
        assert status["service"]["restart_needed"] == ["model"]
        assert status["model"]["folder"] == str(DEMO_MODEL), "the model changed without a restart"
        log = daemon.log()
        assert re.search(r"config reload: model changed, but the model is loaded at start-up; restart nasclipd",
                         log)
        assert "DEBUG" not in log[:log.index("config reloaded from")]
        # log_level and index.checkpoint_seconds applied live: a debug line about a checkpoint soon follows.
        wait_until(lambda: re.search(r"DEBUG .*checkpoint", daemon.log()), 10, what="a debug line")

        # A broken file is rejected with its located errors; the running config stays.
        config.write_text(config.read_text().replace("indexer:\n", "indexer:\n  batchsize: 2\n"))
        line = next(i for i, text in enumerate(config.read_text().splitlines(), 1) if "batchsize" in text)
        asked = time.monotonic()
        daemon.proc.send_signal(signal.SIGHUP)
        notify.wait_for(lambda m: m.get("READY") == "1", after=asked, what="READY=1 after a rejected reload")
        wait_until(lambda: "config reload rejected" in daemon.log(), 10, what="the rejection to be logged")
        assert f"{config}:{line}: indexer.batchsize: unknown key (did you mean 'batch_size'?)" in daemon.log()
        status = daemon.status()
        assert [s["name"] for s in status["shares"]] == ["second"] and status["healthy"]
        assert status["service"]["restart_needed"] == ["model"]
        daemon.stop()
    finally:
        notify.close()


def test_reload_plan_applies_what_it_can_and_keeps_the_rest() -> None:
    base = {"shares": [{"name": "a", "path": "/a"}, {"name": "b", "path": "/b"}], "model": "/m"}
    running = load_yaml(base)
    new = load_yaml({**base, "shares": [{"name": "b", "path": "/b2"}, {"name": "c", "path": "/c"}],
                     "model": "/other", "log_level": "debug", "indexer": {"batch_size": 2, "threads": 3},
                     "query": {"max_k": 10, "max_connections": 4}})
    plan = plan_reload(running, new)
    assert (plan.shares_added, plan.shares_removed, plan.shares_changed) == (("c",), ("a",), ("b",))
    assert set(plan.applied) == {"shares", "log_level", "indexer.batch_size", "query.max_k"}
    assert set(plan.restart) == {"model", "indexer.threads", "query.max_connections"}
    config = plan.config
    assert config.model == running.model and config.indexer.threads == 0 and config.query.max_connections == 32
    assert config.indexer.batch_size == 2 and config.query.max_k == 10 and config.log_level == "debug"
    assert [s.name for s in config.shares] == ["b", "c"]
    assert plan.describe() == ("shares added c, removed a, changed b; "
                               "applied log_level, indexer.batch_size, query.max_k")
    again = plan_reload(config, new)  # the file still differs in what waits for a restart
    assert set(again.restart) == set(plan.restart) and again.describe() == "nothing that applies live changed"
    assert not plan_reload(config, config).changed and plan_reload(config, config).describe() == "nothing changed"


def load_yaml(data: dict) -> object:
    from nasclip.config import parse_config
    return parse_config(yaml.safe_dump(data), Path("/etc/nasclip/nasclip.yaml"))


# ---------------------------------------------------------------------- the unit file


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    """systemd-analyze, installed from Debian's systemd package when missing and we may (root, apt)."""
    found = shutil.which("systemd-analyze")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "systemd"], env=env,
                       capture_output=True, timeout=600)
        found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is missing and cannot be installed here (needs root and apt-get)")
    return found


def installable_unit(folder: Path, text: str | None = None) -> Path:
    """The unit as installed in a venv here: ExecStart must name an existing executable for verify.

    Only the venv prefix of ExecStart changes (/opt/nasclip/bin → this venv's bin).
    """
    text = text if text is not None else UNIT.read_text()
    assert "ExecStart=/opt/nasclip/bin/nasclipd " in text
    path = folder / "nasclip.service"
    path.write_text(text.replace("/opt/nasclip/bin/", f"{BIN}/"))
    return path


def test_unit_passes_systemd_analyze_verify(tmp_path: Path, systemd_analyze: str) -> None:
    unit = installable_unit(tmp_path)
    done = subprocess.run([systemd_analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    complaints = [line for line in (done.stdout + done.stderr).splitlines() if "nasclip" in line]
    assert done.returncode == 0 and not complaints, done.stdout + done.stderr
    # verify only warns about unknown or malformed settings; make sure such a warning would be caught.
    (tmp_path / "broken").mkdir()
    broken = installable_unit(tmp_path / "broken",
                              UNIT.read_text().replace("WatchdogSec=2min", "WatchdogSec=2min\nWatchDogSec=1"))
    done = subprocess.run([systemd_analyze, "verify", str(broken)], capture_output=True, text=True, timeout=60)
    assert "Unknown key" in done.stderr and "WatchDogSec" in done.stderr


def test_unit_is_a_hardened_notify_service(tmp_path: Path, systemd_analyze: str) -> None:
    for name, value in {"Type": "notify", "User": "nasclip", "Group": "nasclip", "Restart": "on-failure",
                        "StateDirectory": "nasclip", "RuntimeDirectory": "nasclip", "ProtectSystem": "strict",
                        "NoNewPrivileges": "yes", "PrivateTmp": "yes", "ProtectHome": "read-only",
                        "RestartPreventExitStatus": "78 65", "StateDirectoryMode": "0700",
                        "UMask": "0077"}.items():
        assert unit_setting(name) == value, name
    # The drain (service.stop_timeout) must leave time for the final checkpoint within TimeoutStopSec.
    defaults = load_config(ROOT / "config" / "nasclip.yaml").service
    assert seconds(unit_setting("TimeoutStopSec")) >= 2 * defaults.stop_timeout
    assert seconds(unit_setting("WatchdogSec")) >= 60
    # Every group of directives is explained by a comment right above it.
    lines = UNIT.read_text().splitlines()
    uncommented = [line for before, line in zip(lines, lines[1:])
                   if "=" in line and not line.startswith("#") and not before.strip()]
    assert uncommented == []
    done = subprocess.run([systemd_analyze, "security", "--offline=true", str(installable_unit(tmp_path))],
                          capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    if match is None:
        pytest.skip(f"systemd-analyze security --offline is not supported here: {done.stderr.strip()[:200]}")
    assert float(match.group(1)) <= 2.0, done.stdout[-2000:]


def test_sysusers_snippet_creates_the_user_and_group(tmp_path: Path, systemd_analyze: str) -> None:
    sysusers = shutil.which("systemd-sysusers")
    if sysusers is None:
        pytest.skip("systemd-sysusers is not installed")
    (tmp_path / "etc").mkdir()
    done = subprocess.run([sysusers, f"--root={tmp_path}", str(SYSUSERS)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^nasclip:x:\d+:\d+:[^:]*:/var/lib/nasclip:/usr/sbin/nologin$",
                     (tmp_path / "etc" / "passwd").read_text(), re.M)
    assert re.search(r"^nasclip:x:\d+:", (tmp_path / "etc" / "group").read_text(), re.M)


# ---------------------------------------------------------------------- journal, notify units


def parse_journal_entry(data: bytes) -> dict[str, str]:
    """Decode one native-protocol datagram (written from systemd's JOURNAL_NATIVE_PROTOCOL description)."""
    fields, i = {}, 0
    while i < len(data):
        end = data.index(b"\n", i)
        line = data[i:end]
        if b"=" in line:
            name, value = line.split(b"=", 1)
            i = end + 1
        else:
            name = line
            size = struct.unpack("<Q", data[end + 1:end + 9])[0]
            value = data[end + 9:end + 9 + size]
            assert data[end + 9 + size:end + 10 + size] == b"\n"
            i = end + 10 + size
        fields[name.decode()] = value.decode()
    return fields


def test_journal_entries_carry_structured_fields(tmp_path: Path) -> None:
    import logging

    journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    journal.bind(str(tmp_path / "journal.sock"))
    journal.settimeout(5)
    handler = JournalHandler("nasclipd", tmp_path / "journal.sock")
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("nasclip.test-journal")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("cannot index %s: %s", "/srv/photos/a b.jpg", "not an image",
                    extra={"PHOTO_PATH": "/srv/photos/a b.jpg"})
        entry = parse_journal_entry(journal.recv(65536))
        assert entry["MESSAGE"] == "cannot index /srv/photos/a b.jpg: not an image"
        assert entry["PRIORITY"] == "4" and entry["PHOTO_PATH"] == "/srv/photos/a b.jpg"
        assert entry["SYSLOG_IDENTIFIER"] == "nasclipd" and entry["LOGGER"] == "nasclip.test-journal"
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("something failed")
        entry = parse_journal_entry(journal.recv(65536))  # a multi-line message uses the binary form
        assert entry["PRIORITY"] == "3" and entry["MESSAGE"].startswith("something failed\nTraceback")
        # No journald: the record goes to the fallback handler instead of being lost.
        journal.close()
        (tmp_path / "journal.sock").unlink()
        seen = []
        handler.fallback = logging.Handler()
        handler.fallback.emit = seen.append  # type: ignore[method-assign]
        log.error("still here")
        assert [r.getMessage() for r in seen] == ["still here"]
    finally:
        log.removeHandler(handler)
        handler.close()


def test_notifier_speaks_the_protocol_itself(tmp_path: Path) -> None:
    listener = NotifySocket(str(tmp_path / "n.sock"))
    try:
        notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "n.sock"), "WATCHDOG_USEC": "3000000",
                             "WATCHDOG_PID": str(os.getpid())})
        assert notifier.watchdog_interval == 1.5
        notifier.ready("indexed 0 / 0")
        notifier.watchdog()
        notifier.stopping()
        wait_until(lambda: len(listener.snapshot()) == 3, 5)
        assert [m for _, m in listener.snapshot()] == [
            {"READY": "1", "STATUS": "indexed 0 / 0"}, {"WATCHDOG": "1"}, {"STOPPING": "1", "STATUS": "stopping"}]
    finally:
        listener.close()
    assert Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}).watchdog_interval is None
    quiet = Notifier({})
    assert not quiet.enabled
    quiet.ready()  # no manager: nothing happens, nothing fails


# ---------------------------------------------------------------------- doctor


@pytest.fixture
def open_tmp() -> Path:
    """A folder every user may enter (pytest's own tmp folders are private to their owner)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="nasclip-doctor-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_doctor_judges_limits_and_permissions_for_the_service_user(open_tmp: Path) -> None:
    tmp_path = open_tmp
    shutil.copytree(DEMO_MODEL, tmp_path / "model")
    share = tmp_path / "share"
    for i in range(9):
        (share / f"album-{i}" / "sub").mkdir(parents=True)
    (share / "album-0" / "sub").chmod(0o700)  # root's: the service user cannot enter
    (share / "@eaDir" / "thumbs").mkdir(parents=True)  # excluded: needs no watch
    config = load_config(write_config(tmp_path / "nasclip.yaml", {"photos": share}, model=str(tmp_path / "model")))
    nobody = ServiceUser.lookup("nobody")
    if nobody is None:
        pytest.skip("there is no user 'nobody' to judge permissions for")

    def lines(limit: int | None) -> dict[str, str]:
        return {c.topic: c.line() for c in run_checks(config, nobody, watch_limit=limit) if c.topic != "socket"}

    tight = lines(10)  # 19 folders to watch
    assert re.match(r"fail\s+inotify\s+19 folders to watch, fs.inotify.max_user_watches is 10: .+→ raise it",
                    tight["inotify"]), tight["inotify"]
    assert re.match(r"warn\s+inotify\s+19 folders .* close to", lines(20)["inotify"])
    roomy = lines(100_000)
    assert re.match(r"ok\s+inotify\s+19 folders to watch", roomy["inotify"])
    assert re.match(rf"warn\s+share\s+share 'photos': nobody cannot read 1 of 19 folders, e\.g\. "
                    rf"{re.escape(str(share / 'album-0' / 'sub'))}.+→ give nobody rx access", roomy["share"])
    assert re.match(r"ok\s+model\s+\S+: .* load and match the manifest; readable by nobody", roomy["model"]), \
        roomy["model"]
    assert re.match(r"ok\s+backend\s+CPU via ONNX Runtime", roomy["backend"])
    (tmp_path / "state").mkdir()
    assert re.match(rf"fail\s+state\s+nobody cannot write to {re.escape(str(tmp_path / 'state'))}",
                    lines(100_000)["state"])
    share.chmod(0o700)
    assert re.match(r"fail\s+share\s+share 'photos': nobody cannot read", lines(100_000)["share"])
    # An encoder file that does not load is a model problem, with the command that explains more.
    from nasclip.model.spec import load_model_spec
    (tmp_path / "model" / load_model_spec(tmp_path / "model").image.onnx).write_bytes(b"not a model")
    assert re.match(r"fail\s+model\s+.+→ nasclip models verify model", lines(100_000)["model"])
    me = ServiceUser.current()
    checks = {c.topic: c for c in run_checks(config, me, watch_limit=100_000)}
    assert checks["state"].level == "ok" and checks["share"].level == "ok"
    assert checks["socket"].level == "warn" and "not running" in checks["socket"].message
