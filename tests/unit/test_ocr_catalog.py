"""Text in photos in the catalog (schema 4): queued, recorded, indexed, re-queued, reused, searched."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from test_store import index_some, unit

from nasclip.ocr.textform import fold, quality, searchable, snippet
from nasclip.query.textsearch import find_text
from nasclip.store.catalog import MIGRATIONS, SCHEMA_VERSION, Catalog
from nasclip.store.changes import TextFailed, TextRead, TextReused
from nasclip.store.ocrtext import READ_COUNTER
from nasclip.store.store import Deleted, Encoded, Moved, Seen, Store

DIM = 16


def read(store: Store, lines: list[str]) -> int:
    """Record lines as the text of the first photo waiting for its text; returns its id."""
    row = store.text_pending(1)[0]
    assert store.record_text([TextRead(row, tuple(lines), searchable(lines))])["read"] == 1
    return row.id


def found(store: Store, *terms: str) -> set[int]:
    return set(find_text(store.reader(), terms).found)


def test_folding_makes_width_case_and_script_variants_equal() -> None:
    assert fold("ＳＴＡＲＢＵＣＫＳ Coffee") == fold("starbucks  coffee") == "starbucks coffee"
    assert fold("臺北 營業時間") == fold("台北营业时间") == "台北营业时间"
    assert fold("Straße ﬁne") == "strasse fine"
    assert fold("星巴克 咖啡 12 杯") == "星巴克咖啡 12 杯"


def test_whole_words_beat_the_start_of_a_word_which_beats_a_part_of_one() -> None:
    text = fold("Total 12.50 STARBUCKS coffeehouse decaf")
    assert quality(text, ["starbucks"]) == 1.0
    assert quality(text, ["coffee"]) == 0.75
    assert quality(text, ["caf"]) == 0.5
    assert quality(text, ["starbucks", "tea"]) == 0.0
    assert quality(fold("欢迎光临星巴克"), ["星巴克"]) == 1.0


def test_a_snippet_starts_at_the_matching_line_and_marks_what_it_leaves_out() -> None:
    lines = ["RECEIPT", "Latte 4.50", "Croissant 3.20", "STARBUCKS COFFEE " + "x" * 100, "Thank you"]
    shown = snippet(lines, fold("starbucks"))
    assert shown.startswith("…STARBUCKS COFFEE") and shown.endswith("…") and len(shown) <= 82
    assert snippet(["Latte 4.50"], "latte") == "Latte 4.50"


def test_an_indexed_photo_waits_for_its_text_and_its_text_is_found_by_any_part(tmp_path: Path) -> None:
    store = Store(tmp_path, "m1", DIM)
    ids = index_some(store, "s", ["receipt.jpg", "sign.jpg"])
    assert {r.id for r in store.text_pending(10)} == set(ids.values())
    assert store.text_counts() == {"pending": 2, "done": 0, "failed": 0}
    receipt = read(store, ["STARBUCKS COFFEE", "合計 NT$150", "臺北市"])
    for terms in (("starbucks",), ("Coffee", "STAR"), ("bucks",), ("合计",), ("台北",), ("北",), ("nt$",),
                  ("ＳＴＡＲ",)):
        assert found(store, *terms) == {receipt}, terms
    assert found(store, "starbucks", "tea") == set() and found(store, "咖") == set()
    assert store.text_counts() == {"pending": 1, "done": 1, "failed": 0}
    assert store.counter(READ_COUNTER) == 1


def test_a_changed_photo_is_read_again_a_moved_one_keeps_its_text_a_deleted_one_takes_it_along(
        tmp_path: Path) -> None:
    store = Store(tmp_path, "m1", DIM)
    ids = index_some(store, "s", ["a.jpg", "b.jpg"])
    assert read(store, ["museum garden"]) == ids["b.jpg"]  # newest rows first
    assert read(store, ["parking exit"]) == ids["a.jpg"]
    store.apply([Moved("s", "a.jpg", "s", "renamed/a.jpg")])
    assert store.text_pending(5) == [] and found(store, "parking") == {ids["a.jpg"]}
    store.apply([Seen("s", "b.jpg", 999, 5_000)])  # edited in place: another size and mtime
    assert found(store, "museum") == set()
    assert store.text_counts()["pending"] == 1
    row = store.catalog.get("s", "b.jpg")
    assert row is not None
    store.record([Encoded(row, "fp-b2", vector=unit(7))])
    assert [r.id for r in store.text_pending(5)] == [ids["b.jpg"]]  # indexed again, then read again
    store.apply([Deleted("s", "renamed/a.jpg")])
    store.purge_gone(older_than=1e12)
    assert store.catalog.conn.execute("SELECT COUNT(*) FROM ocr_text").fetchone()[0] == 0
    assert store.catalog.conn.execute("SELECT COUNT(*) FROM ocr").fetchone()[0] == 1


def test_a_copy_takes_its_twins_text_and_a_stale_result_is_dropped(tmp_path: Path) -> None:
    store = Store(tmp_path, "m1", DIM)
    ids = index_some(store, "s", ["a.jpg"])
    read(store, ["星巴克 STARBUCKS"])
    store.apply([Seen("s", "copy.jpg", 100, 7_000)])
    copy = store.catalog.get("s", "copy.jpg")
    assert copy is not None
    store.record([Encoded(copy, "fp-a.jpg", donor=ids["a.jpg"])])  # the indexer found the twin's vector
    pending = store.text_pending(5)
    assert [r.id for r in pending] == [copy.id] and store.text_donor(pending[0]) == ids["a.jpg"]
    assert store.record_text([TextReused(pending[0], ids["a.jpg"])])["reused"] == 1
    assert found(store, "星巴克") == {ids["a.jpg"], copy.id}
    assert store.counter(READ_COUNTER) == 1  # read once, for both
    # A result for a photo that changed after it was claimed is not recorded.
    store.apply([Seen("s", "late.jpg", 100, 9_000)])
    late = store.catalog.get("s", "late.jpg")
    assert late is not None
    store.record([Encoded(late, "fp-late", vector=unit(3))])
    claimed = store.text_pending(1)[0]
    store.apply([Seen("s", "late.jpg", 101, 9_001)])
    assert store.record_text([TextFailed(claimed, "cannot decode")])["stale"] == 1


def test_the_migration_queues_every_photo_indexed_before_it(tmp_path: Path) -> None:
    path = tmp_path / "catalog.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for step in range(SCHEMA_VERSION - 1):
        conn.executescript(f"BEGIN;\n{MIGRATIONS[step]}\nPRAGMA user_version={step + 1};\nCOMMIT;")
    conn.execute("INSERT INTO files (share, relpath, size, mtime_ns, state, added, updated) "
                 "VALUES ('s', x'612e6a7067', 1, 1, 'indexed', 0, 0), ('s', x'622e6a7067', 1, 1, 'failed', 0, 0)")
    conn.close()
    catalog = Catalog(path)
    assert catalog.conn.execute("SELECT file_id, state FROM ocr").fetchall() == [(1, "pending")]
    catalog.close()


@pytest.mark.parametrize("bad", [["星"], ["st", "x"]])
def test_short_terms_alone_are_looked_up_without_the_trigram_index(tmp_path: Path, bad: list[str]) -> None:
    store = Store(tmp_path, "m1", DIM)
    index_some(store, "s", ["a.jpg"])
    read(store, ["星巴克 STARBUCKS x"])
    assert len(found(store, *bad)) == 1


def test_a_catalog_rebuild_keeps_the_text_read_and_a_photo_whose_text_entry_was_lost_is_read_again(
        tmp_path: Path) -> None:
    from nasclip.store.rebuild import copy_readable

    store = Store(tmp_path / "old", "m1", DIM)
    ids = index_some(store, "s", ["receipt.jpg", "sign.jpg", "blank.jpg"])
    sign = read(store, ["PARKING EXIT", "出口"])
    receipt = read(store, ["STARBUCKS COFFEE"])
    blank = read(store, [])
    assert {sign, receipt, blank} == set(ids.values())
    # The damage: one photo's index entry is gone (as a bad page would take it).
    store.catalog.conn.execute("DELETE FROM ocr_text WHERE rowid = ?", (receipt,))
    store.close()
    src = sqlite3.connect(tmp_path / "old" / "catalog.db")
    new = Catalog(tmp_path / "new.db")
    reports = {r.name: r for r in copy_readable(src, new.conn)}
    assert reports["ocr"].kept == 3 and reports["ocr_text"].kept == 1
    states = dict(new.conn.execute("SELECT file_id, state FROM ocr"))
    assert states == {sign: "done", blank: "done", receipt: "pending"}, "read again, not findable by nothing"
    matched = new.conn.execute("SELECT rowid FROM ocr_text WHERE ocr_text MATCH ?", ('"parking"',)).fetchall()
    assert matched == [(sign,)]
    src.close()
    new.close()
