"""Shared test fixtures: the demo model, config files, and the real daemon as a process."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Some test modules share helpers across the tiers (test_store's vectors, test_tokenizers'
# vocabularies, test_service's notify socket): importable whichever tier runs alone.
for tier in ("unit", "system"):
    sys.path.insert(1, str(ROOT / "tests" / tier))

from nasclip.errors import DaemonUnavailable  # noqa: E402
from nasclip.query.client import Client, call  # noqa: E402
from tools.scenes import Scene, balanced_scenes, jpeg_bytes, render  # noqa: E402

DEMO_MODEL = Path(os.environ.get("NASCLIP_TEST_MODEL", ROOT / "models" / "demo"))


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll predicate until it returns something truthy; fail the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def write_config(path: Path, shares: dict[str, Path], **overrides: Any) -> Path:
    """A config file for the test daemon; overrides are merged one level deep."""
    config: dict[str, Any] = {
        "shares": [{"name": name, "path": str(p)} for name, p in shares.items()],
        "model": str(DEMO_MODEL),
        "state_dir": str(path.parent / "state"),
        "socket": str(path.parent / "run" / "query.sock"),
        "log_level": "debug",
        "indexer": {"settle_seconds": 0.5, "threads": 1, "decode_threads": 2},
        "index": {"checkpoint_seconds": 5},
        "query": {"socket_group": None},
        # Reading text in photos is on by default; a test daemon reads none unless its test asks
        # (ocr={"enabled": True}), so that timing and memory bounds measure what the test is about.
        "ocr": {"enabled": False},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path


class DaemonProcess:
    """nasclipd running as a real process on a config file."""

    def __init__(self, config: Path, env: dict[str, str] | None = None, prefix: list[str] | None = None) -> None:
        self.config_path = config
        self.prefix = list(prefix or [])  # e.g. setpriv, to run the daemon with fewer privileges
        self.config = yaml.safe_load(config.read_text())
        self.socket = Path(self.config["socket"])
        self.env = {**os.environ, **(env or {})}
        self.log_path = config.parent / "nasclipd.log"
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    def start(self, wait: bool = True) -> "DaemonProcess":
        log = open(self.log_path, "ab")
        log.write(f"---- start {self.runs}\n".encode())
        log.flush()
        command = [*self.prefix, sys.executable, "-m", "nasclip.cli.daemon", "--config", str(self.config_path)]
        self.proc = subprocess.Popen(command,
                                     stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=str(ROOT))
        log.close()
        self.runs += 1
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        def answers() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"nasclipd exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                return call(self.socket, op="ping")["ok"]
            except DaemonUnavailable:
                return False
        wait_until(answers, timeout, what="the daemon to answer pings")

    def request(self, **fields: Any) -> dict:
        with Client(self.socket) as client:
            return client.request(**fields)

    def search(self, text: str, k: int = 10, **fields: Any) -> list[dict]:
        reply = self.request(op="search", text=text, k=k, **fields)
        assert reply["ok"], reply
        return reply["results"]

    def status(self) -> dict:
        reply = self.request(op="status")
        assert reply["ok"], reply
        return reply["status"]

    def wait_idle(self, timeout: float = 60.0) -> dict:
        """Wait until nothing is pending, nothing is still settling and the watcher has scanned every share."""
        last: list[tuple] = []

        def idle() -> dict | None:
            status = self.status()
            scanned = all((s["last_scan"] is not None or not s["available"]) and not s.get("settling")
                          for s in status["shares"])
            if not scanned or status["photos"]["pending"] != 0:
                return None
            # The indexer's counters follow the catalog a moment later: wait until they are still.
            counters = (status["photos"], status["encoded"], status["reused"])
            steady = last == [counters]
            last[:] = [counters]
            return status if steady else None
        return wait_until(idle, timeout, interval=0.2, what="indexing to finish")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self.proc = None
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def daemon_factory(tmp_path: Path):
    """Start daemons on configs in tmp_path; all are stopped at the end of the test."""
    started: list[DaemonProcess] = []

    def make(shares: dict[str, Path], env: dict[str, str] | None = None, start: bool = True,
             **overrides: Any) -> DaemonProcess:
        config = write_config(tmp_path / "nasclip.yaml", shares, **overrides)
        daemon = DaemonProcess(config, env)
        started.append(daemon)
        if start:
            daemon.start()
        return daemon

    yield make
    for daemon in started:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.stop(signal.SIGKILL)


def make_scenes(folder: Path, count: int, seed: int, prefix: str = "scene",
                size: tuple[int, int] | None = None, noise: int = 0) -> dict[Path, Scene]:
    """Write count balanced demo scenes as JPEGs into folder; returns what each shows.

    size fixes the pixel size; noise adds sensor-like grain, which makes the
    JPEGs as big and as slow to decode as real photos of that size.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    grain = np.random.default_rng(seed)
    scenes = {}
    for i, scene in enumerate(balanced_scenes(count, rng)):
        path = folder / f"{prefix}-{i:04d}.jpg"
        image = render(scene, rng, *(size or (None, None)))
        if noise:
            pixels = np.asarray(image, dtype=np.int16)
            pixels = pixels + grain.integers(-noise, noise + 1, pixels.shape[:2] + (1,), dtype=np.int16)
            image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        path.write_bytes(jpeg_bytes(image, rng))
        scenes[path] = scene
    return scenes


def write_scene(path: Path, scene: Scene, seed: int = 0) -> Path:
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes(render(scene, rng), rng))
    return path
