"""Searching by the text in photos: text_in in the protocol and the client, ranking, filters, snippets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_MODEL

from nasclip.cli.query import build_parser, build_request, html_page
from nasclip.errors import ProtocolError
from nasclip.indexing.encoder import Encoder
from nasclip.model.spec import load_model_spec
from nasclip.ocr.textform import searchable
from nasclip.query.access import Peer
from nasclip.query.protocol import Request, Term, parse_request
from nasclip.query.results import when
from nasclip.query.search import Searcher
from nasclip.store.changes import TextRead
from nasclip.store.store import Encoded, Seen, Store

ROOT_PEER = Peer(0, 0, 0, frozenset({0}))
# name: (mtime in seconds, recognised lines)
PHOTOS = {
    "2021/receipt.jpg": (1_600_000_000, ["STARBUCKS COFFEE", "Latte 4.50", "台北市信義區"]),
    "2023/mug.jpg": (1_700_000_000, ["starbucksreserve"]),
    "2024/sign.jpg": (1_710_000_000, ["Starbucks", "Drive Thru"]),
    "2024/menu.jpg": (1_720_000_000, ["Tea 3.00", "星巴克咖啡"]),
}


def parse(**fields: object) -> Request:
    return parse_request(json.dumps({"op": "search", **fields}).encode(), 1000)


def test_text_in_alone_is_a_search_and_bad_forms_are_refused() -> None:
    assert parse(text_in=["starbucks", "台北"]).text_in == ("starbucks", "台北")
    assert parse(text_in=["x"], text="a cup").terms == (Term(1.0, text="a cup"),)
    for bad in ([], "starbucks", [""], [" "], [3], ["a"] * 17, ["x" * 300]):
        with pytest.raises(ProtocolError, match="text_in"):
            parse(text_in=bad)
    with pytest.raises(ProtocolError, match="'text_in'"):
        parse()


def test_the_client_sends_every_word_of_text_in_and_needs_no_description() -> None:
    parser = build_parser()
    request = build_request(parser.parse_args(["--text-in", "Starbucks 4.50", "--text-in", "星巴克"]), parser)
    assert request == {"op": "search", "k": 10, "text_in": ["Starbucks", "4.50", "星巴克"]}
    request = build_request(parser.parse_args(["receipt", "--text-in", "latte"]), parser)
    assert request["q"] == "receipt" and request["text_in"] == ["latte"]


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory):
    spec = load_model_spec(DEMO_MODEL)
    encoder = Encoder.open(spec, backend="onnx", threads=1, image=False)
    work = tmp_path_factory.mktemp("text")
    share = work / "photos"
    store = Store(work / "state", spec.id, spec.embedding_dim)
    store.apply([Seen("photos", name, 1000, mtime * 10 ** 9) for name, (mtime, _) in PHOTOS.items()])
    rows = {r.relpath: r for r in store.pending(10, set())}
    rng = np.random.default_rng(5)
    store.record([Encoded(row, f"fp{row.id}", vector=rng.standard_normal(spec.embedding_dim).astype(np.float32))
                  for row in rows.values()])
    for row in store.text_pending(10):
        lines = PHOTOS[row.relpath][1]
        store.record_text([TextRead(row, tuple(lines), searchable(lines))])
    yield Searcher(store, encoder, {"photos": share}, 10 ** 8), share
    store.close()
    encoder.close()


def names(hits: list, share: Path) -> list[str]:
    return [h.path[len(str(share)) + 1:] for h in hits]


def test_a_text_search_ranks_whole_words_first_then_the_newest(library) -> None:
    searcher, share = library
    hits, timing = searcher.search(Request("search", text_in=("STARBUCKS",), k=10), ROOT_PEER)
    # Whole words (sign 2024, receipt 2021), newest first; then the start of a word (mug).
    assert names(hits, share) == ["2024/sign.jpg", "2021/receipt.jpg", "2023/mug.jpg"]
    assert [h.score for h in hits] == [1.0, 1.0, 0.75] and timing["filtered_by"] == "text"
    assert hits[1].text == "STARBUCKS COFFEE Latte 4.50 台北市信義區"
    assert hits[1].as_dict()["text"] == hits[1].text


def test_filters_folding_and_short_chinese_terms_apply_to_text_searches(library) -> None:
    searcher, share = library
    search = searcher.search
    assert names(search(Request("search", text_in=("臺北",)), ROOT_PEER)[0], share) == ["2021/receipt.jpg"]
    assert names(search(Request("search", text_in=("咖",)), ROOT_PEER)[0], share) == ["2024/menu.jpg"]
    assert names(search(Request("search", text_in=("starbucks",), path_prefix=f"{share}/2024"), ROOT_PEER)[0],
                 share) == ["2024/sign.jpg"]
    assert names(search(Request("search", text_in=("starbucks",), k=1, sort="date"), ROOT_PEER)[0],
                 share) == ["2024/sign.jpg"]
    assert search(Request("search", text_in=("starbucks", "tea")), ROOT_PEER)[0] == []
    oldest = search(Request("search", text_in=("starbucks",), sort="date"), ROOT_PEER)[0]
    assert len(oldest) > 1 and [when(h) for h in oldest] == sorted(when(h) for h in oldest)


def test_a_description_ranks_only_the_photos_showing_the_words(library) -> None:
    searcher, share = library
    hits, timing = searcher.search(Request("search", terms=(Term(1.0, text="a red circle"),),
                                           text_in=("starbucks",), k=10), ROOT_PEER)
    assert sorted(names(hits, share)) == ["2021/receipt.jpg", "2023/mug.jpg", "2024/sign.jpg"]
    assert all(h.text for h in hits) and timing["filtered_by"] == "text"
    assert hits == sorted(hits, key=lambda h: -h.score)


def test_the_html_page_escapes_the_text_read_in_a_photo() -> None:
    page = html_page("t", [{"path": "/p/a.jpg", "score": 1.0, "mtime": 0, "text": "<script>alert(1)</script>"}])
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
