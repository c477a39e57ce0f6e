#!/usr/bin/env python3
"""`make demo`: index a generated photo share with the real daemon and search it.

1. Renders a small share of scenes the demo model understands (one coloured
   shape on a plain background; the file name says what is in the picture).
2. Starts the real nasclipd on it (config in demo/nasclip.yaml) and waits
   until every photo is indexed, showing progress.
3. Runs sample searches in English and Chinese through nasclip-query.
4. Stops the daemon with SIGTERM, as systemd would.

Exits 0 when the daemon ran and the red-circle searches found red circles.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nasclip.errors import NasclipError  # noqa: E402
from nasclip.query.client import call  # noqa: E402
from tools.scenes import balanced_scenes, jpeg_bytes, render  # noqa: E402

DEMO = ROOT / "demo"
PHOTOS = DEMO / "photos"
BIN = Path(sys.executable).parent
QUERIES = ["a red circle", "红色的圆形", "a photo of a blue square on a yellow background",
           "黄色背景上的蓝色正方形", "green triangle", "一颗紫色的星星"]
CHECKED = {"a red circle": "red-circle", "红色的圆形": "red-circle"}


def make_share(count: int = 192, seed: int = 2024) -> None:
    """Render count scenes (6 of each colour and shape) into demo/photos, named by what they show."""
    rng = random.Random(seed)
    if PHOTOS.exists():
        shutil.rmtree(PHOTOS)
    for i, scene in enumerate(balanced_scenes(count, rng)):
        folder = PHOTOS / f"album-{i % 4 + 1}"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{scene.colour}-{scene.shape}-on-{scene.background}-{i:03d}.jpg"
        (folder / name).write_bytes(jpeg_bytes(render(scene, rng), rng))
    print(f"demo share: {count} photos in {PHOTOS.relative_to(ROOT)}/")


def write_config() -> Path:
    config = DEMO / "nasclip.yaml"
    config.write_text(
        "# written by tools/demo.py; paths are relative to this file\n"
        "shares:\n  - name: demo\n    path: photos\n"
        f"model: {ROOT / 'models' / 'demo'}\n"
        "state_dir: state\nsocket: run/query.sock\nlog_level: info\n"
        "indexer:\n  settle_seconds: 0.5\n"
        "query:\n  socket_group: null\n")
    return config


def wait_for_index(socket: Path, daemon: subprocess.Popen, total: int, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    shown = -1
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise SystemExit(f"demo: nasclipd exited with {daemon.returncode}; see {DEMO / 'nasclipd.log'}")
        try:
            status = call(socket, op="status")["status"]
        except NasclipError:
            time.sleep(0.2)
            continue
        photos = status["photos"]
        done = photos["indexed"] + photos["failed"]
        if done != shown:
            print(f"  indexed {photos['indexed']} / {total}", flush=True)
            shown = done
        if done >= total and photos["pending"] == 0:
            return status
        time.sleep(0.3)
    raise SystemExit(f"demo: indexing did not finish within {timeout:.0f} s")


def main() -> int:
    DEMO.mkdir(exist_ok=True)
    make_share()
    config = write_config()
    for folder in ("state", "run"):
        shutil.rmtree(DEMO / folder, ignore_errors=True)
    log = open(DEMO / "nasclipd.log", "wb")
    print("starting nasclipd (log: demo/nasclipd.log)")
    daemon = subprocess.Popen([str(BIN / "nasclipd"), "--config", str(config)], stdout=log, stderr=log)
    ok = True
    try:
        socket = DEMO / "run" / "query.sock"
        total = sum(1 for _ in PHOTOS.rglob("*.jpg"))
        status = wait_for_index(socket, daemon, total)
        print(f"indexed {status['photos']['indexed']} photos with model {status['model']['id']} "
              f"on {status['model']['backend']}\n")
        for text in QUERIES:
            print(f'$ nasclip-query -k 5 "{text}"')
            result = subprocess.run([str(BIN / "nasclip-query"), "--config", str(config), "-k", "5", text],
                                    capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            print(result.stdout + result.stderr, end="")
            if result.returncode != 0:
                ok = False
            expected = CHECKED.get(text)
            if expected:
                names = [Path(line.split()[-1]).name for line in result.stdout.splitlines() if line.strip()]
                right = sum(name.startswith(expected) for name in names)
                print(f"  -> {right} of {len(names)} are {expected.replace('-', ' ')}s")
                ok = ok and right == 5 and len(names) == 5
            print()
    finally:
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(60)
        log.close()
        print(f"nasclipd stopped (exit {code})")
    if not ok:
        print("demo: the sample searches did not give the expected results", file=sys.stderr)
        return 1
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
