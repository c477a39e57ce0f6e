"""Which way a filtered search goes (nasclip/query/search.py), in-process with a real store and FAISS index.

A narrow filter (one small album) goes to the catalog at once: one index
scan among its ids. A broad one (most of the library) filters the index's
answers: one scan of the whole index. Either way the results are the best
k photos the filter keeps, as a brute-force ranking says.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_MODEL

from nasclip.indexing.encoder import Encoder
from nasclip.model.spec import load_model_spec
from nasclip.query import search
from nasclip.query.access import Peer
from nasclip.query.protocol import Request, Term
from nasclip.store.store import Encoded, Seen, Store
from nasclip.store.vectors import VectorIndex

ROOT_PEER = Peer(0, 0, 0, frozenset({0}))
FOLDERS = {"big": 1900, "small": 40, "medium": 260}


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory):
    spec = load_model_spec(DEMO_MODEL)
    encoder = Encoder.open(spec, backend="onnx", threads=1, image=False)
    work = tmp_path_factory.mktemp("routes")
    share = work / "photos"
    store = Store(work / "state", spec.id, spec.embedding_dim)
    store.apply([Seen("photos", f"{folder}/{i:05d}.jpg", 1000, 10 ** 18)
                 for folder, count in FOLDERS.items() for i in range(count)])
    rng = np.random.default_rng(3)
    rows = [store.catalog.get("photos", f"{folder}/{i:05d}.jpg") for folder, count in FOLDERS.items()
            for i in range(count)]
    vectors = rng.standard_normal((len(rows), spec.embedding_dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store.record([Encoded(row, f"fp{row.id}", vector=v) for row, v in zip(rows, vectors)])
    searcher = search.Searcher(store, encoder, {"photos": share}, 10 ** 8)
    paths = {row.id: f"{share}/{row.relpath}" for row in rows}
    yield searcher, encoder, share, dict(zip((r.id for r in rows), vectors)), paths
    store.close()
    encoder.close()


def best(vectors: dict, paths: dict, query: np.ndarray, folder: Path, k: int) -> list[str]:
    kept = [(float(v @ query), paths[i]) for i, v in vectors.items() if paths[i].startswith(f"{folder}/")]
    return [p for _, p in sorted(kept, reverse=True)[:k]]


@pytest.mark.parametrize("folder, route", [("small", "catalog"), ("big", "index"), ("medium", "index")])
def test_a_filtered_search_scans_once_by_the_right_route_and_finds_the_best_k(library, monkeypatch, folder: str,
                                                                              route: str) -> None:
    searcher, encoder, share, vectors, paths = library
    scans: list[bool] = []
    real = VectorIndex.search

    def counted(self, queries, k, among=None):
        scans.append(among is not None)
        return real(self, queries, k, among)

    monkeypatch.setattr(VectorIndex, "search", counted)
    request = Request("search", terms=(Term(1.0, text="a red circle"),), k=10, path_prefix=str(share / folder))
    hits, info = searcher.search(request, ROOT_PEER)
    query = encoder.encode_texts(["a red circle"])[0]
    assert [h.path for h in hits] == best(vectors, paths, query, share / folder, 10)
    assert info["filtered_by"] == route
    # small (40 of 2,200 photos) is too few for 512 candidates to hold 10 of its photos:
    # straight to the catalog, one scan among its ids. medium (260) and big: one scan of the index.
    assert scans == [route == "catalog"], scans


def test_date_filters_by_the_catalog_mean_the_date_taken_or_the_mtime_where_it_is_unread(tmp_path: Path) -> None:
    import calendar

    from nasclip.meta.exif import CaptureTime, PhotoMeta

    spec = load_model_spec(DEMO_MODEL)
    encoder = Encoder.open(spec, backend="onnx", threads=1, image=False)
    store = Store(tmp_path / "state", spec.id, spec.embedding_dim)
    try:
        copied = calendar.timegm((2023, 11, 14, 12, 0, 0)) * 10 ** 9  # every file's mtime but a few
        in_2019 = calendar.timegm((2019, 6, 1, 12, 0, 0)) * 10 ** 9
        names = [f"p{i:04d}.jpg" for i in range(1000)]
        mtimes = {name: in_2019 if i < 5 else copied for i, name in enumerate(names)}
        store.apply([Seen("photos", name, 1000, mtimes[name]) for name in names])
        rows = [store.catalog.get("photos", name) for name in names]
        vectors = np.random.default_rng(5).standard_normal((len(rows), spec.embedding_dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        results = []
        for i, (row, vector) in enumerate(zip(rows, vectors)):
            if i < 5:
                meta = None  # indexed before nasclip read metadata: its mtime (2019) stands in
            elif i < 25:  # taken in 2019 (their own clocks), copied in 2023
                meta = PhotoMeta(CaptureTime(calendar.timegm((2019, 3, 1 + i, 9, 0, 0)), 60, "exif"))
            else:
                meta = PhotoMeta(CaptureTime(calendar.timegm((2015, 1, 1, 0, 0, 0)) + i, None, "exif"))
            results.append(Encoded(row, f"fp{row.id}", vector=vector, meta=meta))
        store.record(results)
        searcher = search.Searcher(store, encoder, {"photos": tmp_path / "photos"}, 10 ** 8)
        request = Request("search", terms=(Term(1.0, text="a red circle"),), k=50,
                          after=calendar.timegm((2019, 1, 1, 0, 0, 0)), before=calendar.timegm((2020, 1, 1, 0, 0, 0)))
        hits, info = searcher.search(request, ROOT_PEER)
        assert info["filtered_by"] == "catalog"
        assert sorted(Path(h.path).name for h in hits) == names[:25]
    finally:
        store.close()
        encoder.close()
