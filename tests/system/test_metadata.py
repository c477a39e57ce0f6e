"""What a photo says of itself reaches the results (issue 16): capture time and camera, read at index time.

Real daemon, real photos with EXIF written by Pillow: capture dates that
differ from the files' mtimes (as on a NAS, where mtime is the day of the
copy), a photo with no EXIF (the mtime, marked as such), malformed EXIF (the
photo is still indexed), and a byte copy that reuses its twin's vector and
with it the twin's metadata, with no second decode.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, DaemonProcess
from PIL import Image

from tools.scenes import Scene, render

COPIED = 1_700_000_000  # 2023-11-14: the day the photos were copied to the NAS


def write(path: Path, scene: Scene, exif: Image.Exif | None, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = render(scene, random.Random(seed))
    image.save(path, "JPEG", quality=90, **({"exif": exif} if exif is not None else {}))
    os.utime(path, (COPIED, COPIED))
    return path


def camera(make: str, model: str, date: str, offset: str | None) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = make, model
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = date
    if offset is not None:
        sub[0x9011] = offset
    return exif


def by_name(results: list[dict]) -> dict[str, dict]:
    return {Path(r["path"]).name: r for r in results}


def test_results_carry_the_capture_time_and_camera_read_at_index_time(tmp_path: Path, daemon_factory) -> None:
    share = tmp_path / "photos"
    red = Scene("red", "circle", "white")
    write(share / "lisbon.jpg", red, camera("Apple", "iPhone 11", "2019:07:14 18:30:05", "+01:00"), 1)
    write(share / "old.jpg", red, camera("NIKON CORPORATION", "NIKON D70", "2004:02:29 09:10:11", None), 2)
    write(share / "plain.jpg", red, None, 3)
    write(share / "zero-date.jpg", red, camera("Canon", "Canon EOS R5", "0000:00:00 00:00:00", "+02:00"), 4)
    write(share / "hostile.jpg", red, camera("<script>x</script>", "M1", "2020:01:02 03:04:05", None), 5)
    daemon: DaemonProcess = daemon_factory({"photos": share})
    assert daemon.wait_idle()["encoded"]["run"] == 5
    copy = share / "album" / "lisbon-copy.jpg"  # copied in later, as a person files a photo twice
    copy.parent.mkdir()
    shutil.copyfile(share / "lisbon.jpg", copy)
    os.utime(copy, (COPIED + 86400, COPIED + 86400))
    daemon.request(op="scan", share="photos")
    status = daemon.wait_idle()
    assert status["photos"]["indexed"] == 6 and status["encoded"]["run"] == 5, status  # the copy reuses
    got = by_name(daemon.search("a red circle", k=10))
    assert len(got) == 6

    assert got["lisbon.jpg"]["taken"] == "2019-07-14T18:30:05+01:00"
    assert got["lisbon.jpg"]["taken_from"] == "exif" and got["lisbon.jpg"]["camera"] == "Apple iPhone 11"
    assert got["lisbon-copy.jpg"]["taken"] == "2019-07-14T18:30:05+01:00", "a copy keeps what its twin says"
    assert got["lisbon-copy.jpg"]["camera"] == "Apple iPhone 11"
    # No offset in the photo: the wall clock alone, as the camera showed it.
    assert got["old.jpg"]["taken"] == "2004-02-29T09:10:11" and got["old.jpg"]["camera"] == "NIKON CORPORATION D70"
    # Nothing (or nothing usable) in the file: its mtime, in the NAS's zone, marked as such.
    for name in ("plain.jpg", "zero-date.jpg"):
        assert got[name]["taken_from"] == "mtime", got[name]
        assert got[name]["taken"].startswith("2023-11-1"), got[name]
        assert abs(got[name]["mtime"] - COPIED) < 1
    assert got["plain.jpg"]["camera"] is None and got["zero-date.jpg"]["camera"] == "Canon EOS R5"

    # Date filters mean the date taken (the file's time only where the photo says nothing),
    # on the photo's own clock: in 2019, the Lisbon photo and its copy, whatever their mtimes.
    def names(**filters) -> set[str]:
        return set(by_name(daemon.search("a red circle", k=10, **filters)))

    assert names(after="2019-01-01", before="2020-01-01") == {"lisbon.jpg", "lisbon-copy.jpg"}
    assert names(after="2019-07-14T18:30:05", before="2019-07-14T18:30:06") == {"lisbon.jpg", "lisbon-copy.jpg"}
    assert names(before="2005-01-01") == {"old.jpg"}
    assert names(after="2023-01-01") == {"plain.jpg", "zero-date.jpg"}
    assert names(after="2020-01-01", before="2021-01-01") == {"hostile.jpg"}

    # --camera: every word, any case, in make and model; --sort: by the date taken.
    assert names(camera="iphone") == {"lisbon.jpg", "lisbon-copy.jpg"}
    assert names(camera="CANON r5") == {"zero-date.jpg"} and names(camera="nikon d70") == {"old.jpg"}
    assert names(camera="iphone", after="2020-01-01") == set()
    oldest_first = [Path(r["path"]).name for r in daemon.search("a red circle", k=10, sort="date")]
    assert oldest_first[:2] == ["old.jpg", "lisbon.jpg"] or oldest_first[:2] == ["old.jpg", "lisbon-copy.jpg"]
    assert oldest_first[2] in ("lisbon.jpg", "lisbon-copy.jpg") and oldest_first[3] == "hostile.jpg"
    newest_first = [Path(r["path"]).name for r in daemon.search("a red circle", k=10, sort="-date")]
    assert newest_first[-1] == "old.jpg" and set(newest_first[:2]) == {"plain.jpg", "zero-date.jpg"}
    bad = daemon.request(op="search", text="a red circle", sort="newest")
    assert not bad["ok"] and bad["error"]["code"] == "bad_request" and "sort" in bad["error"]["message"]

    # The --html page shows the day taken and the camera, escaped (EXIF is whatever the file says).
    page = tmp_path / "results.html"
    done = subprocess.run([sys.executable, "-m", "nasclip.cli.query", "-s", str(daemon.socket), "-k", "10",
                           "--html", str(page), "a red circle"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    text = page.read_text()
    assert "2019-07-14 · Apple iPhone 11" in text and "2004-02-29" in text
    assert "<script>x" not in text and "&lt;script&gt;x&lt;/script&gt; M1" in text
    done = subprocess.run([sys.executable, "-m", "nasclip.cli.query", "-s", str(daemon.socket), "--json",
                           "--camera", "Nikon", "--sort=-date", "a red circle"], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [Path(r["path"]).name for r in json.loads(done.stdout)["results"]] == ["old.jpg"]
    assert daemon.stop() == 0


def test_photos_indexed_before_nasclip_read_metadata_get_it_in_the_background_without_re_encoding(
        tmp_path: Path, daemon_factory) -> None:
    import sqlite3
    import time

    share = tmp_path / "photos"
    red = Scene("red", "circle", "white")
    for i in range(70):  # more than one backfill step (64)
        write(share / f"p{i:03d}.jpg", red, camera("Apple", f"iPhone {i}", f"2018:05:{1 + i % 28:02d} 10:00:00",
                                                    "+08:00"), i)
    daemon: DaemonProcess = daemon_factory({"photos": share})
    daemon.wait_idle()
    assert daemon.stop() == 0
    # As a catalog indexed before schema 3 is after its migration: every photo's metadata unread.
    catalog = Path(daemon.config["state_dir"]) / "catalog.db"
    with sqlite3.connect(catalog) as conn:
        conn.execute("UPDATE files SET taken=NULL, taken_offset=NULL, taken_source=NULL, camera_make=NULL, "
                     "camera_model=NULL, lat=NULL, lon=NULL")
    daemon.start()
    deadline = time.monotonic() + 60
    while True:
        results = daemon.search("a red circle", k=100)
        if all(r["taken"] for r in results) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(results) == 70 and all(r["taken_from"] == "exif" for r in results), results[:3]
    got = by_name(results)
    assert got["p005.jpg"]["taken"] == "2018-05-06T10:00:00+08:00" and got["p005.jpg"]["camera"] == "Apple iPhone 5"
    status = daemon.status()
    assert status["encoded"]["run"] == 0 and status["photos"]["indexed"] == 70, "nothing was encoded again"
    assert daemon.stop() == 0
