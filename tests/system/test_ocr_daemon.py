"""Issue 17 with the real daemon: photos become findable by the words in them, after CLIP indexing.

Photos with text are copied into a share; they are encoded first, then read.
The daemon is killed (-9) while it reads one, restarted, and finishes: every
photo's text is recorded exactly once (the log line that follows each commit,
and the catalog's counter, agree). nasclip-query --text-in finds them, with the
text around the word; a photo renamed afterwards is found under its new name
and not read again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import ROOT, wait_until
from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
# One word only each photo shows, and one every photo shows.
WORDS = ("harbor", "museum", "bakery", "pharmacy", "platform", "library", "espresso", "delivery")
READ = re.compile(r"read (\d+) lines of text in (\S+)")


def text_photo(path: Path, word: str, seed: int) -> None:
    """A 2400 × 1800 photo-like image (noise makes detection work as on a photo) with a sign on it."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(60, 200, (1800, 2400, 3), dtype="uint8")
    image = Image.fromarray(pixels).resize((2400, 1800))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((300, 500, 1700, 900), radius=30, fill=(245, 240, 220))
    font = ImageFont.truetype(FONT, 110)
    draw.text((360, 540), word.upper(), font=font, fill=(20, 30, 90))
    draw.text((360, 700), "OPEN DAILY", font=font, fill=(20, 30, 90))
    image.save(path, quality=88)


def query(socket: Path, *args: str) -> list[dict]:
    done = subprocess.run([sys.executable, "-m", "nasclip.cli.query", "-s", str(socket), "--json", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["results"]


def reads(log: str) -> list[str]:
    """The photos whose text was recorded, one entry per recording, across every run in the log."""
    return [path for _, path in READ.findall(log)]


def test_photos_are_found_by_their_text_once_indexed_read_once_through_a_kill_and_renames(
        tmp_path: Path, daemon_factory) -> None:
    share = tmp_path / "photos"
    share.mkdir()
    daemon = daemon_factory({"photos": share}, ocr={"enabled": True, "threads": 1})
    staging = tmp_path / "staging"
    staging.mkdir()
    for i, word in enumerate(WORDS):
        text_photo(staging / f"sign-{i}.jpg", word, i)
    for photo in sorted(staging.iterdir()):
        shutil.copy(photo, share / photo.name)

    # Killed while it reads a photo: one text recorded, the next one begun.
    def reading() -> bool:
        log = daemon.log()
        started = log.count("reading the text in ")
        return len(reads(log)) >= 1 and started == len(reads(log)) + 1
    wait_until(reading, 120, interval=0.01, what="the daemon to be reading a photo's text")
    daemon.kill()
    first_run = daemon.log()
    interrupted = re.findall(r"reading the text in (\S+)", first_run)[-1]
    assert interrupted not in reads(first_run)
    # CLIP first: every photo was encoded before any text was read.
    assert first_run.rfind("encoded a batch") < first_run.find("reading the text in ")

    daemon.start()
    wait_until(lambda: daemon.status()["ocr"]["photos"] == {"pending": 0, "done": len(WORDS), "failed": 0}, 180,
               interval=0.2, what="every photo's text to be read")
    recorded = reads(daemon.log())
    assert sorted(recorded) == sorted(f"photos/sign-{i}.jpg" for i in range(len(WORDS))), recorded
    assert interrupted in recorded  # read after the restart, once
    status = daemon.status()["ocr"]
    assert status["read_total"] == len(WORDS) and status["available"]

    for i, word in enumerate(WORDS):
        found = query(daemon.socket, "--text-in", word)
        assert [r["path"] for r in found] == [str(share / f"sign-{i}.jpg")], word
        assert word.upper() in found[0]["text"]
    both = query(daemon.socket, "--text-in", "Open daily", "-k", "20")
    assert len(both) == len(WORDS) and all("OPEN DAILY" in r["text"] for r in both)
    human = subprocess.run([sys.executable, "-m", "nasclip.cli.query", "-s", str(daemon.socket), "--text-in",
                            "espresso"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert "sign-6.jpg" in human.stdout and "\u201cESPRESSO" in human.stdout
    # The query box: quoted words and text: are words the photo's text must hold; the rest ranks by CLIP.
    assert [r["path"] for r in query(daemon.socket, '"espresso"')] == [str(share / "sign-6.jpg")]
    assert [r["path"] for r in query(daemon.socket, 'a sign text:espresso')] == [str(share / "sign-6.jpg")]
    said = subprocess.run([sys.executable, "-m", "nasclip.cli.query", "-s", str(daemon.socket), '"espresso"'],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert said.stdout.splitlines()[0].startswith("photos showing the words \u201cespresso\u201d"), said.stdout

    os.rename(share / "sign-0.jpg", share / "harbor at night.jpg")
    wait_until(lambda: [r["path"] for r in query(daemon.socket, "--text-in", "harbor")]
               == [str(share / "harbor at night.jpg")], 30, interval=0.2, what="the renamed photo to be found")
    assert len(reads(daemon.log())) == len(WORDS) and daemon.status()["ocr"]["read_total"] == len(WORDS)
    assert daemon.stop() == 0
