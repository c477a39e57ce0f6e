"""Issue 18, must-show 2: the real daemon indexes RAW, JPEG XL, Live Photos and motion photos, and shows pairs once.

The RAWs are DNGs written here (tests/raws.py; no other RAW format can be made
offline): one with the camera's JPEG preview beside a JPEG of the same shot
(same folder, the stem in another case), one without a preview (demosaiced)
and alone. An iPhone Live Photo is a HEIC and a short MOV carrying Apple's
Live Photo identifier: one photo, its clip neither sampled nor a result; a
Live Photo whose clip arrives before its still becomes one too; a longer MOV
that only shares a JPEG's name is a video. A Google motion photo is one photo.
Access is checked on each half of a pair: a user who may not read the JPEG is
shown the RAW.
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import DaemonProcess, wait_until
from raws import write_dng
from test_media_formats import google_xmp, with_xmp
from users import daemon_for_users, open_folder, request_as
from videos import CODECS, Codec, write_video

from nasclip.cli import query
from tools.scenes import Scene, jpeg_bytes, render

NOBODY = 65534
SHOT, SOLO, JXL = Scene("red", "circle", "white"), Scene("blue", "triangle", "yellow"), Scene("green", "star", "black")
LIVE, MOTION, LONG = Scene("orange", "square", "blue"), Scene("purple", "circle", "yellow"), \
    Scene("white", "star", "red")
LATE = Scene("yellow", "triangle", "purple")


def heic(path: Path, scene: Scene, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    render(scene, random.Random(seed), 800, 600).save(path, format="HEIF", quality=85)
    return path


def live_clip(path: Path, scene: Scene, seconds: float = 3.0, identifier: str | None = "5C1D-LIVE") -> Path:
    tags = {"com.apple.quicktime.content.identifier": identifier} if identifier else {}
    picture = render(scene, random.Random(9), 320, 240)
    return write_video(path, [(picture, seconds)], Codec("libx264", "mov", ".mov"), metadata=tags)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory):
    base = open_folder("nasclip-raw-")  # nobody searches it
    share = base / "photos"
    rng = random.Random(2)
    shot = render(SHOT, rng, 1200, 800)
    files = {
        "raw": write_dng(mkdir(share / "2023" / "IMG_0042.DNG"), shot, preview=shot, taken="2023:06:01 14:05:06"),
        "jpeg": share / "2023" / "img_0042.jpg",
        "solo": write_dng(mkdir(share / "solo" / "DSC_0007.dng"), render(SOLO, rng, 640, 480), make="Nikon",
                          model="Z 6", taken="2022:02:03 04:05:06"),
        "jxl": share / "export" / "star.jxl",
        "still": heic(share / "iphone" / "IMG_0100.HEIC", LIVE, 3),
        "clip": live_clip(share / "iphone" / "IMG_0100.MOV", LIVE),
        "named": share / "iphone" / "IMG_0200.JPG",
        "video": write_video(share / "iphone" / "IMG_0200.MOV", [(render(LONG, rng, 320, 240), 8.0)],
                             CODECS["h264-mp4"]),
        "motion": share / "android" / "PXL_0001.MP.jpg",
        "late_clip": live_clip(share / "late" / "IMG_0300.MOV", LATE, identifier=None),
    }
    files["jpeg"].write_bytes(jpeg_bytes(shot, rng))
    mkdir(files["jxl"])
    render(JXL, rng, 800, 600).save(files["jxl"], "JXL", quality=90)
    files["named"].write_bytes(jpeg_bytes(render(Scene("black", "square", "white"), rng, 640, 480), rng))
    mp4 = write_video(base / "motion.mp4", [(render(MOTION, rng, 320, 240), 1.0)], CODECS["h264-mp4"]).read_bytes()
    still = jpeg_bytes(render(MOTION, rng, 1600, 1200), rng)
    mkdir(files["motion"]).write_bytes(with_xmp(still, google_xmp(len(mp4))) + mp4)
    for path in share.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    files["jpeg"].chmod(0o600)  # nobody may read the JPEG of the shot, only its RAW
    daemon = daemon_for_users(tmp_path_factory.mktemp("raw"), {"photos": share}, base / "run").start()
    daemon.wait_idle(timeout=120)
    # The still of a Live Photo whose clip came first: the clip, indexed as a video, goes back to be judged.
    files["late"] = heic(share / "late" / "IMG_0300.HEIC", LATE, 4)
    files["late"].chmod(0o644)
    yield {"daemon": daemon, "share": share, "files": files, "base": base}
    if daemon.proc is not None:
        daemon.stop()
    shutil.rmtree(base, ignore_errors=True)


def mkdir(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def kinds(daemon: DaemonProcess) -> dict[str, str | None]:
    state = Path(daemon.config["state_dir"])
    with sqlite3.connect(f"file:{state / 'catalog.db'}?mode=ro", uri=True) as db:
        return {Path(r[0].decode()).name: r[1] for r in db.execute("SELECT relpath, kind FROM files")}


def paths(hits: list[dict]) -> list[str]:
    return [h["path"] for h in hits]


def test_a_raw_and_its_jpeg_are_one_result_naming_the_raw_unless_both_are_asked_for(library, capsys) -> None:
    daemon: DaemonProcess = library["daemon"]
    files = library["files"]
    hits = daemon.search(SHOT.english, k=3)
    assert hits[0]["path"] == str(files["jpeg"]) and hits[0]["original"] == str(files["raw"])
    assert str(files["raw"]) not in paths(hits)
    assert all("original" not in h for h in hits[1:])
    both = daemon.search(SHOT.english, k=3, pairs="both")
    assert set(paths(both)[:2]) == {str(files["jpeg"]), str(files["raw"])} and not any("original" in h for h in both)
    assert query.main(["--socket", str(daemon.socket), "--both", "--json", "-k", "2", SHOT.english]) == 0
    shown = json.loads(capsys.readouterr().out)["results"]
    assert {r["path"] for r in shown} == {str(files["jpeg"]), str(files["raw"])}


def test_a_user_who_may_not_read_the_jpeg_of_a_shot_is_shown_its_raw(library) -> None:
    daemon: DaemonProcess = library["daemon"]
    files = library["files"]

    hits = request_as(NOBODY, NOBODY, daemon.socket, op="search", text=SHOT.english, k=3)["results"]
    assert hits[0]["path"] == str(files["raw"]) and "original" not in hits[0]
    assert str(files["jpeg"]) not in paths(hits)


def test_a_raw_alone_is_found_with_its_own_capture_time_and_camera(library) -> None:
    hit = library["daemon"].search(SOLO.english, k=1)[0]
    assert hit["path"] == str(library["files"]["solo"])
    assert hit["taken"] == "2022-02-03T04:05:06" and hit["camera"] == "Nikon Z 6"
    assert set(hit) == {"path", "share", "score", "size", "mtime", "taken", "taken_from", "camera", "place"}


def test_a_jpeg_xl_photo_is_found(library) -> None:
    assert library["daemon"].search(JXL.english, k=1)[0]["path"] == str(library["files"]["jxl"])


def test_a_live_photo_is_one_photo_its_clip_neither_sampled_nor_shown(library) -> None:
    daemon: DaemonProcess = library["daemon"]
    files = library["files"]
    hits = daemon.search(LIVE.english, k=20)
    assert hits[0]["path"] == str(files["still"]) and hits[0]["live"] == str(files["clip"])
    everything = paths(daemon.search("a photo", k=100))
    assert str(files["clip"]) not in everything and str(files["still"]) in everything
    assert "sampling video photos/iphone/IMG_0100.MOV" not in daemon.log()
    assert kinds(daemon)["IMG_0100.MOV"] == "clip"
    # A MOV that only shares a photo's name (8 s, no Live Photo identifier) is a video of its own.
    video = daemon.search(LONG.english, k=1)[0]
    assert video["path"] == str(files["video"]) and video["kind"] == "video"
    assert "live" not in daemon.search("a black square", k=1, path_prefix=str(files["named"].parent))[0]


def test_a_live_photo_whose_clip_came_first_becomes_one_photo(library) -> None:
    daemon: DaemonProcess = library["daemon"]
    files = library["files"]
    assert daemon.request(op="scan")["ok"]
    wait_until(lambda: kinds(daemon).get("IMG_0300.MOV") == "clip", 30, interval=0.2,
               what="the early clip to be judged again once its still is indexed")
    hits = daemon.search(LATE.english, k=20)
    assert str(files["late_clip"]) not in paths(hits)
    assert hits[0]["path"] == str(files["late"]) and hits[0]["live"] == str(files["late_clip"])


def test_a_motion_photo_is_one_photo(library) -> None:
    daemon: DaemonProcess = library["daemon"]
    hits = daemon.search(MOTION.english, k=3)
    assert hits[0]["path"] == str(library["files"]["motion"]) and "kind" not in hits[0]
    status = daemon.status()
    assert status["photos"]["failed"] == 0, daemon.request(op="failed")

