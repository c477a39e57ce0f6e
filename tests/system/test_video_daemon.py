"""Issue 18, must-shows 1 and 3: the real daemon indexes videos and finds each scene at its moment.

The videos are made here (tests/videos.py): scenes of the demo model's shapes
in known segments, in five codec/container pairs (MPEG-TS among them, whose
key frames are not indexed), a rotated phone video with its QuickTime tags,
a truncated one and an empty one. A description of each segment must find
its video at a time inside that segment, through the socket (``kind``,
``time``, ``duration``) and nasclip-query's human output (``path @ mm:ss``);
the broken files fail with their reasons while the daemon goes on; a user
who may not read a video never sees it; moves keep a video's moments, a
byte copy takes them without sampling, a deletion removes them. Then a kill
-9 while a long video is being sampled: after the restart it is sampled once
and its moments are complete, each in the index once.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import sqlite3
import time
from pathlib import Path

import faiss
import numpy as np
import pytest
from conftest import DaemonProcess, wait_until, write_scene
from users import daemon_for_users, open_folder, request_as
from videos import CODECS, Codec, Segment, scene_segments, segment_video, write_video

from nasclip.cli import query
from nasclip.store import checkpoint, moments
from tools.scenes import Scene, render

NOBODY = 65534
# Cuts fall between one-second key frames; the 1.5 s segment is shorter than the 3 s grid.
LENGTHS = [4.2, 3.1, 1.5, 4.6, 3.6]
VIDEO_CODECS = ["h264-mp4", "vp9-webm", "mpeg4-mkv", "h264-mts", "mjpeg-avi"]
PHOTO_KEYS = {"path", "share", "score", "size", "mtime", "taken", "taken_from", "camera", "place"}
OLD = time.time() - 2 * 86400  # the broken files are not still arriving: they fail for good


def old(path: Path) -> Path:
    os.utime(path, (OLD, OLD))
    return path


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory):
    """A share of videos (and one photo) under a folder every user may enter, and the daemon indexing it."""
    base = open_folder("nasclip-videos-")  # nobody searches it
    share = base / "videos"
    rng = random.Random(18)
    segments: dict[Path, list[Segment]] = {}
    for name in VIDEO_CODECS:
        codec = CODECS[name]
        parts = scene_segments(LENGTHS, rng)
        path = segment_video(share / "clips" / name / f"video{codec.suffix}", parts, codec, rng)
        segments[path] = parts
    upright = render(Scene("green", "triangle", "white"), rng, 180, 320)  # portrait, as the phone was held
    tags = {"com.apple.quicktime.creationdate": "2023-06-01T14:05:06+0200", "com.apple.quicktime.make": "Apple",
            "com.apple.quicktime.model": "iPhone 13", "com.apple.quicktime.location.ISO6709": "+48.8584+002.2945/"}
    phone = write_video(share / "phone" / "IMG_0001.MOV", [(upright, 4.0)], Codec("libx264", "mov", ".mov"),
                        size=(180, 320), rotation=-90, metadata=tags)
    secret_scene = Scene("yellow", "square", "blue")
    secret = segment_video(share / "private" / "secret.mp4", [Segment(secret_scene, 0.0, 3.0)], CODECS["h264-mp4"],
                           rng)
    public = segment_video(share / "public" / "shared.mp4", [Segment(secret_scene, 0.0, 3.0)], CODECS["h264-mp4"],
                           rng)
    write_scene(share / "public" / "photo.jpg", Scene("red", "circle", "white"), seed=4)
    whole = (share / "clips" / "h264-mp4" / "video.mp4").read_bytes()
    (share / "broken").mkdir()
    (share / "broken" / "cut.mp4").write_bytes(whole[:len(whole) // 2])
    (share / "broken" / "empty.mov").touch()
    old(share / "broken" / "cut.mp4")
    old(share / "broken" / "empty.mov")
    for path in share.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    secret.chmod(0o600)
    daemon = daemon_for_users(tmp_path_factory.mktemp("videos"), {"videos": share}, base / "run",
                              index={"checkpoint_seconds": 1, "keep_deleted": 1.0}).start()
    status = daemon.wait_idle(timeout=120)
    yield {"daemon": daemon, "share": share, "segments": segments, "phone": phone, "secret": secret,
           "public": public, "secret_scene": secret_scene, "status": status}
    if daemon.proc is not None:
        daemon.stop()
    shutil.rmtree(base, ignore_errors=True)


def test_each_segment_of_each_video_is_found_at_a_moment_inside_it(library) -> None:
    daemon: DaemonProcess = library["daemon"]
    for path, parts in library["segments"].items():
        for segment in parts:
            hits = daemon.search(segment.scene.english, k=3, path_prefix=str(path.parent))
            assert hits and hits[0]["path"] == str(path), (segment, hits)
            found = hits[0]
            assert found["kind"] == "video" and segment.holds(found["time"]), \
                f"{path.parent.name}: '{segment.scene.english}' found at {found['time']}, outside " \
                f"{segment.start:.1f}-{segment.end:.1f} s"
            assert abs(found["duration"] - sum(LENGTHS)) < 0.3
    # Unfiltered too: every video is one result, at most once, and the photo keeps its keys exactly.
    everything = daemon.search("a red circle", k=50)
    assert len({h["path"] for h in everything}) == len(everything)
    photo = next(h for h in everything if h["path"].endswith("photo.jpg"))
    assert set(photo) == PHOTO_KEYS
    assert all(set(h) == PHOTO_KEYS | {"kind", "time", "duration"} for h in everything if h is not photo)


def test_the_human_output_shows_a_video_at_its_moment(library, capsys: pytest.CaptureFixture) -> None:
    path, parts = next(iter(library["segments"].items()))
    segment = parts[3]
    code = query.main(["--socket", str(library["daemon"].socket), "--in", str(path.parent), "-k", "1",
                       segment.scene.english])
    out = capsys.readouterr().out
    assert code == 0
    shown = re.search(r"video\.mp4 @ (\d\d):(\d\d)$", out.strip())
    assert shown, out
    assert int(segment.start) <= int(shown[1]) * 60 + int(shown[2]) <= segment.end, out


def test_like_a_moment_of_a_video_finds_that_moment_stored_or_decoded(library, capsys: pytest.CaptureFixture,
                                                                     tmp_path: Path) -> None:
    daemon: DaemonProcess = library["daemon"]
    path, parts = list(library["segments"].items())[3]  # the MPEG-TS: its key frames are found by reading
    segment = parts[3]
    middle = (segment.start + segment.end) / 2
    stored = daemon.request(op="search", terms=[{"image": str(path), "time": middle}], k=1,
                            path_prefix=str(path.parent))["results"][0]
    assert stored["path"] == str(path) and segment.holds(stored["time"]) and stored["score"] > 0.999
    outside = tmp_path / f"not-indexed{path.suffix}"  # not in a share: its frame is decoded
    shutil.copyfile(path, outside)
    assert query.main(["--socket", str(daemon.socket), "--json", "-k", "1", "--in", str(path.parent),
                       "--like", f"{outside}@{int(middle) // 60}:{middle % 60:04.1f}"]) == 0
    decoded = json.loads(capsys.readouterr().out)["results"][0]
    assert decoded["path"] == str(path) and segment.holds(decoded["time"]), decoded
    page = tmp_path / "page.html"
    assert query.main(["--socket", str(daemon.socket), "--html", str(page), "-k", "1", "--in", str(path.parent),
                       segment.scene.english]) == 0
    html = page.read_text()
    assert f"#t={decoded['time']:.1f}" in html and "data:image/jpeg;base64," in html, html[-2000:]


def test_a_rotated_phone_video_is_found_with_its_capture_time_place_and_camera(library) -> None:
    phone: Path = library["phone"]
    hits = library["daemon"].search("a green triangle", k=1, path_prefix=str(phone.parent))
    assert [h["path"] for h in hits] == [str(phone)]
    hit = hits[0]
    assert hit["taken"] == "2023-06-01T14:05:06+02:00" and hit["taken_from"] == "exif"
    assert hit["camera"] == "Apple iPhone 13" and 0 <= hit["time"] < 4.0
    taken = library["daemon"].search("a green triangle", k=5, after="2023-06-01", before="2023-06-02")
    assert [h["path"] for h in taken] == [str(phone)]


def test_truncated_and_empty_videos_fail_with_their_reasons_and_the_daemon_runs_on(library) -> None:
    daemon: DaemonProcess = library["daemon"]
    failed = {Path(f["path"]).name: f["error"] for f in daemon.request(op="failed")["failed"]}
    assert set(failed) == {"cut.mp4", "empty.mov"}, failed
    assert "truncated" in failed["cut.mp4"] and "empty" in failed["empty.mov"]
    assert library["status"]["photos"]["failed"] == 2
    assert daemon.request(op="ping")["ok"]


def test_a_user_who_may_not_read_a_video_never_sees_it(library) -> None:
    daemon: DaemonProcess = library["daemon"]
    scene: Scene = library["secret_scene"]
    as_root = [h["path"] for h in daemon.search(scene.english, k=50)]
    assert str(library["secret"]) in as_root and str(library["public"]) in as_root

    seen = [h["path"] for h in request_as(NOBODY, NOBODY, daemon.socket, op="search", text=scene.english,
                                          k=50)["results"]]
    assert str(library["public"]) in seen and str(library["secret"]) not in seen


def sampled(daemon: DaemonProcess, name: str) -> int:
    return daemon.log().count(f"sampled video {name}:")


def test_moves_keep_a_video_s_moments_copies_reuse_them_and_deletions_remove_them(library) -> None:
    daemon: DaemonProcess = library["daemon"]
    share: Path = library["share"]
    segments = library["segments"]
    moved_from = share / "clips" / "h264-mp4" / "video.mp4"
    copied = share / "clips" / "vp9-webm" / "video.webm"
    deleted = share / "clips" / "mpeg4-mkv" / "video.mkv"
    before = daemon.status()
    text = segments[copied][1].scene.english
    original = daemon.search(text, k=1, path_prefix=str(copied.parent))[0]

    (share / "moved").mkdir()
    (share / "copies").mkdir()
    os.rename(moved_from.parent, share / "moved" / "h264-mp4")
    shutil.copyfile(copied, share / "copies" / "copy.webm")
    deleted.unlink()
    moved = share / "moved" / "h264-mp4" / "video.mp4"

    def settled() -> bool:
        paths = {h["path"] for h in daemon.search("a photo", k=50)}
        return str(moved) in paths and str(share / "copies" / "copy.webm") in paths and str(deleted) not in paths
    wait_until(settled, 60, interval=0.3, what="the move, copy and deletion to be seen")
    after = daemon.wait_idle()
    assert after["encoded"]["total"] == before["encoded"]["total"], "a moved or copied video was sampled again"
    assert sampled(daemon, "videos/copies/copy.webm") == 0 and sampled(daemon, "videos/moved/h264-mp4/video.mp4") == 0
    segment = segments[moved_from][0]
    hit = daemon.search(segment.scene.english, k=1, path_prefix=str(moved.parent))[0]
    assert hit["path"] == str(moved) and segment.holds(hit["time"])
    copy = daemon.search(text, k=1, path_prefix=str(share / "copies"))[0]
    assert copy["time"] == original["time"] and copy["score"] == pytest.approx(original["score"], abs=1e-5)

    # Once the deleted video is purged, the index holds exactly what the catalog says, each id once.
    wait_until(lambda: daemon.status()["photos"]["gone"] == 0, 30, what="the deleted video to be purged")
    assert daemon.stop() == 0
    state = Path(daemon.config["state_dir"])
    assert_index_matches_catalog(state)


def assert_index_matches_catalog(state: Path) -> dict[int, int]:
    """The newest checkpoint holds each catalog id once and nothing else; returns {video row: its moment count}."""
    db = sqlite3.connect(f"file:{state / 'catalog.db'}?mode=ro", uri=True)
    (model,) = db.execute("SELECT DISTINCT model_id FROM vectors").fetchone()
    known = moments.known_ids(db, model)
    counts = dict(db.execute("SELECT file_id, COUNT(*) FROM moments GROUP BY file_id").fetchall())
    db.close()
    index, _ = checkpoint.read(next((state / "index").glob("*.faiss")))
    ids = faiss.vector_to_array(index.id_map)
    assert len(ids) == len(np.unique(ids)), "an id is in the index twice"
    assert sorted(ids.tolist()) == sorted(known.tolist())
    return counts


def test_a_kill_while_a_long_video_is_sampled_costs_only_that_sampling(tmp_path: Path, daemon_factory) -> None:
    share = tmp_path / "videos"
    rng = random.Random(3)
    # 98 s of 720p, every frame a key frame: sampling it densely decodes 191 key frames (~3 s here).
    long = segment_video(share / "long.mp4", scene_segments([14.0] * 7, rng),
                         Codec("libx264", "mp4", ".mp4", {"preset": "ultrafast"}), rng, size=(1280, 720), fps=2,
                         gop=1, noise=3)
    write_scene(share / "photo.jpg", Scene("blue", "circle", "white"), seed=2)
    daemon = daemon_factory({"videos": share}, start=False, video={"frame_interval": 0.5, "max_frames": 255})
    daemon.start()
    wait_until(lambda: "sampling video videos/long.mp4" in daemon.log(), 60, interval=0.02,
               what="the long video's sampling to start")
    time.sleep(0.5)
    daemon.kill()
    assert sampled(daemon, "videos/long.mp4") == 0, "the kill came after the sampling: make the video longer"
    daemon.start()
    daemon.wait_idle(timeout=120)
    segment = scene_segments([14.0] * 7, random.Random(3))[5]
    hit = daemon.search(segment.scene.english, k=1)[0]
    assert hit["path"] == str(long) and hit["kind"] == "video"
    assert daemon.stop() == 0
    log = daemon.log()
    assert log.count("sampling video videos/long.mp4") == 2  # the killed sampling, and the one after the restart
    kept = [int(n) for n in re.findall(r"sampled video videos/long\.mp4: (\d+) frames kept", log)]
    assert len(kept) == 1, "the video was sampled more than once"
    counts = assert_index_matches_catalog(Path(daemon.config["state_dir"]))
    assert list(counts.values()) == kept, (counts, kept)
