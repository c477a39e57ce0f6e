"""The text pass (nasclip/ocr/stage.py), one loop() at a time: real store, real photos, real PP-OCRv4."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from test_store import unit

from nasclip.cli.admin import _print_ocr
from nasclip.config import IndexerConfig, OcrConfig
from nasclip.errors import ModelError
from nasclip.ocr import detect, models
from nasclip.ocr import engine as engine_module
from nasclip.ocr.engine import OcrEngine
from nasclip.ocr.stage import UNAVAILABLE_POLL, YIELD_POLL, OcrStage
from nasclip.query.textsearch import find_text
from nasclip.service.status import ocr_line
from nasclip.shares import Shares
from nasclip.store.store import Encoded, Seen, Store

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
DIM = 16


@pytest.fixture(scope="module")
def engine() -> OcrEngine:
    return OcrEngine.open(OcrConfig())


class Counting:
    """Wraps an engine part to count its calls (the real part does the work)."""

    def __init__(self, part: object) -> None:
        self.part = part
        self.calls = 0

    def __call__(self, *args: object) -> object:
        self.calls += 1
        return self.part(*args)  # type: ignore[operator]


def photo(path: Path, lines: list[str]) -> Path:
    image = Image.new("RGB", (640, 480), (200, 210, 190))
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((40, 60 + 60 * i), line, font=ImageFont.truetype(FONT, 32), fill=(20, 20, 30))
    image.save(path, quality=90)
    return path


def indexed(store: Store, share: Path, names: list[str]) -> None:
    """Catalog rows for the files, indexed as the CLIP pass would leave them."""
    stats = {name: (share / name).stat() for name in names}
    store.apply([Seen("s", name, st.st_size, st.st_mtime_ns) for name, st in stats.items()])
    rows = store.pending(10, set())
    store.record([Encoded(row, f"fp-{row.relpath}", vector=unit(row.id)) for row in rows])


def stage_for(store: Store, share: Path, engine: OcrEngine, busy: list[bool] | None = None) -> OcrStage:
    return OcrStage(store, OcrConfig(), IndexerConfig(), Shares.of({"s": share}),
                    clip_busy=lambda: bool(busy and busy[0]), engine=engine)


def test_a_photo_with_text_is_read_and_found_and_one_without_skips_the_recogniser(tmp_path: Path,
                                                                                  engine: OcrEngine,
                                                                                  monkeypatch) -> None:
    share = tmp_path / "photos"
    share.mkdir()
    photo(share / "receipt.jpg", ["STARBUCKS COFFEE", "Latte 4.50"])
    photo(share / "meadow.jpg", [])
    store = Store(tmp_path / "state", "m1", DIM)
    indexed(store, share, ["receipt.jpg", "meadow.jpg"])
    recognizer = Counting(engine.recognizer)
    monkeypatch.setattr(engine, "recognizer", recognizer)
    stage = stage_for(store, share, engine)
    assert stage.loop() == 1 and stage.loop() == 1 and stage.loop() == 0
    assert recognizer.calls == 1  # the meadow showed no text: detection only
    matches = find_text(store.reader(), ("starbucks", "4.50"))
    assert len(matches.found) == 1
    assert matches.snippet(next(iter(matches.found))) == "STARBUCKS COFFEE Latte 4.50"
    assert store.text_counts() == {"pending": 0, "done": 2, "failed": 0}
    assert stage.status()["read"] == 2 and stage.status()["available"]


def test_nothing_is_read_while_photos_wait_to_be_indexed(tmp_path: Path, engine: OcrEngine) -> None:
    share = tmp_path / "photos"
    share.mkdir()
    photo(share / "a.jpg", ["EXIT"])
    store = Store(tmp_path / "state", "m1", DIM)
    indexed(store, share, ["a.jpg"])
    busy = [True]
    stage = stage_for(store, share, engine, busy)
    assert stage.step() == YIELD_POLL and stage.status()["waiting"]
    assert store.text_counts()["pending"] == 1
    busy[0] = False
    assert stage.step() == 0.0 and store.text_counts()["done"] == 1


def test_a_copy_takes_the_text_without_being_read_and_a_damaged_photo_fails_with_its_reason(
        tmp_path: Path, engine: OcrEngine, monkeypatch) -> None:
    share = tmp_path / "photos"
    share.mkdir()
    photo(share / "a.jpg", ["PLATFORM 9"])
    store = Store(tmp_path / "state", "m1", DIM)
    indexed(store, share, ["a.jpg"])
    stage = stage_for(store, share, engine)
    assert stage.loop() == 1
    (share / "copy.jpg").write_bytes((share / "a.jpg").read_bytes())
    (share / "bad.jpg").write_bytes(b"neither a JPEG nor any photo at all" * 10)
    store.apply([Seen("s", n, (share / n).stat().st_size, (share / n).stat().st_mtime_ns) for n in
                 ("copy.jpg", "bad.jpg")])
    rows = {r.relpath: r for r in store.pending(10, set())}
    store.record([Encoded(rows["copy.jpg"], "fp-a.jpg", donor=store.catalog.get("s", "a.jpg").id),  # type: ignore
                  Encoded(rows["bad.jpg"], "fp-bad", vector=unit(9))])
    detector = Counting(engine.detector)
    monkeypatch.setattr(engine, "detector", detector)
    assert stage.loop() == 1 and stage.loop() == 1 and stage.loop() == 0
    assert detector.calls == 0  # the copy took its twin's text; the damaged one never decoded
    assert len(find_text(store.reader(), ("platform",)).found) == 2
    failed = store.catalog.conn.execute("SELECT error FROM ocr WHERE state='failed'").fetchall()
    assert len(failed) == 1 and "not an image" in failed[0][0]


def test_a_photo_changed_since_it_was_indexed_is_left_for_later_not_failed(tmp_path: Path,
                                                                            engine: OcrEngine) -> None:
    share = tmp_path / "photos"
    share.mkdir()
    photo(share / "a.jpg", ["OPEN"])
    store = Store(tmp_path / "state", "m1", DIM)
    indexed(store, share, ["a.jpg"])
    photo(share / "a.jpg", ["CLOSED", "for a while"])  # rewritten; the watcher has not told the catalog yet
    stage = stage_for(store, share, engine)
    assert stage.loop() == 1 and stage.loop() == 0  # looked at, then left alone until LATER
    assert store.text_counts() == {"pending": 1, "done": 0, "failed": 0}


def test_without_the_models_it_says_how_to_get_them_once_and_idles(tmp_path: Path, monkeypatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(engine_module, "locate", lambda: models.locate(tmp_path))
    store = Store(tmp_path / "state", "m1", DIM)
    stage = OcrStage(store, OcrConfig(), IndexerConfig(), Shares.of({"s": tmp_path}), clip_busy=lambda: False)
    with caplog.at_level(logging.WARNING, "nasclip.ocr"):
        assert stage.step() == UNAVAILABLE_POLL and stage.step() == UNAVAILABLE_POLL
    assert [r.getMessage() for r in caplog.records].count(caplog.records[0].getMessage()) == 1
    assert "rapidocr-onnxruntime" in caplog.records[0].getMessage()
    assert stage.unavailable and "ocr.enabled: false" in stage.unavailable and not stage.status()["available"]
    with pytest.raises(ModelError, match="are missing"):
        models.locate(tmp_path)


def test_the_status_line_and_nasclip_status_tell_how_far_the_text_pass_is(capsys) -> None:
    assert ocr_line({"pending": 37_012, "done": 1_200, "failed": 4}, 0.45, None) == \
        "text read 1 204 / 38 216, 0.5 photos/s"
    assert ocr_line({"pending": 0, "done": 9, "failed": 0}, 0.0, None) == "text read 9 / 9"
    assert "no OCR models" in ocr_line({"pending": 3, "done": 0, "failed": 0}, 0.0, "missing")
    _print_ocr({"enabled": True, "available": True, "photos": {"pending": 5, "done": 2, "failed": 1},
                "waiting": True, "read": 2, "reused": 1, "rate": 0.0})
    _print_ocr({"enabled": False})
    _print_ocr({"enabled": True, "available": False, "reason": "install rapidocr-onnxruntime"})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("text     2 photos read, 5 pending, 1 failed (waiting while photos are indexed); "
                        "2 read this run, 1 copies took their twin's text")
    assert lines[1] == "text     not read (ocr.enabled: false)"
    assert lines[2] == "text     NOT READ: install rapidocr-onnxruntime"


def test_an_unexpected_error_fails_that_photo_and_the_pass_goes_on(tmp_path: Path, engine: OcrEngine,
                                                                    monkeypatch) -> None:
    share = tmp_path / "photos"
    share.mkdir()
    photo(share / "a.jpg", ["ONE"])
    photo(share / "b.jpg", ["TWO"])
    store = Store(tmp_path / "state", "m1", DIM)
    indexed(store, share, ["a.jpg", "b.jpg"])
    stage = stage_for(store, share, engine)
    real = engine.read
    calls: list[int] = []

    def flaky(image: Image.Image, scale: float = 1.0) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("a crop no step expected")
        return real(image, scale)
    monkeypatch.setattr(engine, "read", flaky)
    assert stage.loop() == 1 and stage.loop() == 1
    assert store.text_counts() == {"pending": 0, "done": 1, "failed": 1}
    error = store.catalog.conn.execute("SELECT error FROM ocr WHERE state='failed'").fetchone()[0]
    assert error == "unexpected error: ValueError: a crop no step expected"


@pytest.mark.parametrize("length", [32, 1024, 1056, 1504, 2016, 4000])
def test_detection_tiles_cover_each_side_once_with_room_around_every_seam(length: int) -> None:
    tiles = detect.spans(length)
    assert tiles[0][2] == 0 and tiles[-1][3] == length and all(a[3] == b[2] for a, b in zip(tiles, tiles[1:]))
    assert all(0 <= start and end <= length and end - start <= detect.TILE for start, end, _, _ in tiles)
    assert all(start < keep_from and keep_to < end for start, end, keep_from, keep_to in tiles[1:-1])
    assert all(a[1] - b[0] >= detect.OVERLAP for a, b in zip(tiles, tiles[1:]))


def test_a_line_across_a_tile_seam_is_found_as_it_is_in_one_piece(engine: OcrEngine, monkeypatch) -> None:
    image = Image.new("RGB", (1600, 400), (235, 235, 225))
    ImageDraw.Draw(image).text((300, 150), "PLATFORM 9 THREE QUARTERS", font=ImageFont.truetype(FONT, 64),
                               fill=(10, 10, 10))
    tiled = engine.read(image).texts
    monkeypatch.setattr(detect, "TILE", 4096)
    assert engine.read(image).texts == tiled == ["PLATFORM 9 THREE QUARTERS"]


def test_a_raw_is_read_through_its_preview_and_a_video_is_done_without_being_opened(
        tmp_path: Path, engine: OcrEngine, monkeypatch) -> None:
    from raws import write_dng

    share = tmp_path / "photos"
    share.mkdir()
    picture = Image.new("RGB", (1280, 960), (200, 210, 190))
    ImageDraw.Draw(picture).text((80, 200), "HARBOUR MASTER", font=ImageFont.truetype(FONT, 64), fill=(20, 20, 30))
    write_dng(share / "IMG_0007.DNG", picture, preview=picture)
    store = Store(tmp_path / "state", "m1", DIM)
    indexed(store, share, ["IMG_0007.DNG"])
    store.apply([Seen("s", "holiday.mp4", 1000, 1000)])  # never written: the pass must not open it
    video = store.pending(10, set())[0]
    store.record([Encoded(video, "fp-video", vector=np.stack([unit(1), unit(2)]), times=(0.0, 3.0), duration=4.0)])
    assert store.text_counts()["pending"] == 1  # videos are not queued for text...
    store.catalog.conn.execute("INSERT INTO ocr (file_id, state) VALUES (?, 'pending')", (video.id,))
    detector = Counting(engine.detector)  # ...and one that reaches the pass anyway is never decoded
    monkeypatch.setattr(engine, "detector", detector)
    stage = stage_for(store, share, engine)
    assert stage.loop() == 1 and detector.calls == 0
    assert stage.loop() == 1 and detector.calls >= 1 and stage.loop() == 0
    assert store.text_counts() == {"pending": 0, "done": 2, "failed": 0}
    found = find_text(store.reader(), ("harbour",)).found
    assert set(found) == {store.catalog.get("s", "IMG_0007.DNG").id}  # type: ignore[union-attr]
