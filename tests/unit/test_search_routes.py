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
