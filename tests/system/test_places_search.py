"""Issue 16: where and when, in the filters, the query box and the output (real daemon, real EXIF).

Photos whose EXIF capture dates and GPS positions say other things than
their files' mtimes (the day they were copied to the NAS): --place in
English and Chinese, operators in the query box, plain years and place
names, the line saying how a query was understood, places in every output
form, a search by filters alone, malformed positions that leave the photo
indexed, and places named in the background for rows stored before places
were (schema 3), with nothing re-encoded.
"""

from __future__ import annotations

import json
import os
import random
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, DaemonProcess, wait_until, write_config
from PIL import Image

from tools.scenes import Scene, render

COPIED = 1_700_000_000  # 2023-11-14: the day the photos were copied to the NAS
RED = Scene("red", "circle", "white")


def dms(value: float) -> tuple[float, float, float]:
    value = abs(value)
    degrees, minutes = int(value), int(value * 60) % 60
    return float(degrees), float(minutes), round((value * 3600) % 60, 2)


def write(path: Path, make: str, date: str, at: tuple[float, float] | None, seed: int) -> None:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = make, f"{make} 1"
    exif.get_ifd(0x8769)[0x9003] = date
    if at is not None:
        gps = exif.get_ifd(0x8825)
        gps[1], gps[2] = ("N" if at[0] >= 0 else "S"), dms(at[0])
        gps[3], gps[4] = ("E" if at[1] >= 0 else "W"), dms(at[1])
    path.parent.mkdir(parents=True, exist_ok=True)
    render(RED, random.Random(seed)).save(path, "JPEG", quality=90, exif=exif)
    os.utime(path, (COPIED, COPIED))


PHOTOS = {
    "lisbon.jpg": ("Apple", "2019:07:14 18:30:05", (38.7139, -9.1394)),
    "porto.jpg": ("Canon", "2019:08:02 10:00:00", (41.1496, -8.6109)),
    "beijing.jpg": ("Xiaomi", "2020:05:01 09:00:00", (39.9042, 116.4074)),
    "paris.jpg": ("Canon", "2018:06:01 12:00:00", (48.8566, 2.3522)),
    "atlantic.jpg": ("Apple", "2019:06:20 12:00:00", (30.0, -40.0)),  # the open sea: no place
    "no-gps.jpg": ("Apple", "2019:03:03 12:00:00", None),
}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    base = tmp_path_factory.mktemp("places")
    share = base / "photos"
    for seed, (name, (make, date, at)) in enumerate(PHOTOS.items()):
        write(share / name, make, date, at, seed)
    # An impossible latitude: the position is unknown, the photo is indexed like any other.
    exif = Image.Exif()
    exif.get_ifd(0x8825).update({1: "N", 2: (95.0, 0.0, 0.0), 3: "E", 4: (10.0, 0.0, 0.0)})
    render(RED, random.Random(99)).save(share / "bad-gps.jpg", "JPEG", exif=exif)
    process = DaemonProcess(write_config(base / "nasclip.yaml", {"photos": share})).start()
    assert process.wait_idle()["photos"]["indexed"] == len(PHOTOS) + 1
    yield process, share
    process.stop()


def query(daemon: DaemonProcess, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nasclip.cli.query", "-s", str(daemon.socket), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60, env={**os.environ, **(env or {})})


def names(daemon: DaemonProcess, *args: str) -> set[str]:
    done = query(daemon, "--json", "-k", "50", *args)
    assert done.returncode == 0, done.stderr
    return {Path(r["path"]).name for r in json.loads(done.stdout)["results"]}


def test_results_name_the_place_in_english_or_chinese(daemon) -> None:
    process, _ = daemon
    got = {Path(r["path"]).name: r for r in process.search("a red circle", k=20)}
    assert got["lisbon.jpg"]["place"] == "Lisbon, Lisboa, Portugal"
    assert got["beijing.jpg"]["place"] == "Beijing, China"
    assert got["paris.jpg"]["place"].startswith("Paris, ") and got["paris.jpg"]["place"].endswith("France")
    for name in ("atlantic.jpg", "no-gps.jpg", "bad-gps.jpg"):
        assert got[name]["place"] is None, got[name]
    zh = {Path(r["path"]).name: r for r in process.search("a red circle", k=20, lang="zh")}
    assert zh["lisbon.jpg"]["place"] == "葡萄牙里斯本" and zh["beijing.jpg"]["place"] == "中国北京市"


@pytest.mark.parametrize("place, expected", [
    ("Lisbon", {"lisbon.jpg"}), ("Portugal", {"lisbon.jpg", "porto.jpg"}), ("里斯本", {"lisbon.jpg"}),
    ("葡萄牙", {"lisbon.jpg", "porto.jpg"}), ("北京", {"beijing.jpg"}), ("China", {"beijing.jpg"}),
    ("Paris", {"paris.jpg"}), ("France", {"paris.jpg"}), ("Porto", {"porto.jpg"}),
])
def test_place_filters_by_city_region_or_country_in_either_language(daemon, place, expected) -> None:
    assert names(daemon[0], "--place", place, "a red circle") == expected


def test_an_unknown_place_is_refused_by_name(daemon) -> None:
    done = query(daemon[0], "--place", "Atlantis-under-the-Sea", "a red circle")
    assert done.returncode == 1 and "no place named 'Atlantis-under-the-Sea'" in done.stderr


def test_operators_and_plain_words_become_filters(daemon) -> None:
    process, _ = daemon
    assert names(process, "a red circle place:Portugal after:2019-08") == {"porto.jpg"}
    assert names(process, "a red circle taken:2019-07") == {"lisbon.jpg"}
    assert names(process, "a red circle before:2019-01 camera:canon") == {"paris.jpg"}
    assert names(process, 'a red circle near:"Lisbon, Portugal"') == {"lisbon.jpg"}
    assert names(process, "a red circle", "Lisbon", "2019") == {"lisbon.jpg"}
    assert names(process, "2019年 葡萄牙 红色的圆形") == {"lisbon.jpg", "porto.jpg"}
    assert names(process, "a red circle 2019") == {"lisbon.jpg", "porto.jpg", "atlantic.jpg", "no-gps.jpg"}
    # Quoted, the words are only words: nothing is filtered.
    assert len(names(process, '"a red circle Lisbon 2019"')) == len(PHOTOS) + 1


def test_the_first_line_says_how_the_query_was_understood(daemon) -> None:
    process, _ = daemon
    done = query(process, "a red circle in Lisbon 2019")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "'a red circle', taken in 2019, near Lisbon, Portugal (1 photo)"
    assert lines[1].split()[2:4] == ["2019-07-14", str(daemon[1] / "lisbon.jpg")]
    assert "(Lisbon, Lisboa, Portugal · Apple 1)" in lines[1]
    done = query(process, "2019年 里斯本 红色的圆形")
    assert done.stdout.splitlines()[0] == "“红色的圆形”，拍摄于2019年，在葡萄牙里斯本附近 (1 photo)"
    reply = process.request(op="search", q="a red circle Lisbon 2019")
    assert reply["understood"] == "'a red circle', taken in 2019, near Lisbon, Portugal" and reply["interpreted"]
    # A plain description needs no first line, but photos that say when they were taken show the day.
    plain = query(process, "-k", "3", "a red circle").stdout.splitlines()
    assert len(plain) == 3 and all(re.fullmatch(r"\s*\d  -?\d\.\d{3}  \d{4}-\d\d-\d\d  /.+", line) for line in plain)


def test_filters_alone_list_the_photos_newest_first(daemon) -> None:
    process, _ = daemon
    reply = process.request(op="search", q="place:Portugal")
    assert reply["ok"], reply
    assert [Path(r["path"]).name for r in reply["results"]] == ["porto.jpg", "lisbon.jpg"]
    assert all(r["score"] is None for r in reply["results"])
    oldest = process.request(op="search", q="taken:2019", sort="date")
    assert [Path(r["path"]).name for r in oldest["results"]] == ["no-gps.jpg", "atlantic.jpg", "lisbon.jpg",
                                                                  "porto.jpg"]
    done = query(process, "--sort=-date", "a red circle", "place:Portugal")
    assert [Path(line.split()[3]).name for line in done.stdout.splitlines()[1:]] == ["porto.jpg", "lisbon.jpg"]


def test_html_shows_the_place(daemon, tmp_path) -> None:
    page = tmp_path / "out.html"
    done = query(daemon[0], "--html", str(page), "a red circle Lisbon")
    assert done.returncode == 0, done.stderr
    text = page.read_text()
    assert "Lisbon, Lisboa, Portugal" in text and "2019-07-14" in text


def test_places_of_rows_stored_before_places_are_named_in_the_background(daemon) -> None:
    process, _ = daemon
    process.stop()
    catalog = Path(process.config["state_dir"]) / "catalog.db"
    with sqlite3.connect(catalog) as db:  # as schema 3 left them: positions, no places
        db.execute("UPDATE files SET place_city=NULL, place_region=NULL, place_country=NULL")
    process.start()
    wait_until(lambda: names(process, "--place", "Portugal", "a red circle") == {"lisbon.jpg", "porto.jpg"},
               60, interval=0.3, what="places to be named again")
    assert process.status()["encoded"]["run"] == 0, "nothing was re-encoded"
    with sqlite3.connect(catalog) as db:
        nowhere = db.execute("SELECT place_country FROM files WHERE relpath=?", (b"atlantic.jpg",)).fetchone()
    assert nowhere == ("",), "the open sea is looked up once and marked as nowhere"
