"""Issue 18: a video is one result at its best moment, a RAW+JPEG shot one result, a Live Photo's clip none.

In-process, with a real store, FAISS index and the demo model's text encoder;
the expected answers come from a brute-force ranking of the stored vectors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_MODEL

from nasclip.indexing.encoder import Encoder
from nasclip.meta.exif import PhotoMeta
from nasclip.model.spec import load_model_spec
from nasclip.query import search
from nasclip.query.access import Peer
from nasclip.query.grouping import best_per_file
from nasclip.query.protocol import Request, Term
from nasclip.store.moments import moment_id
from nasclip.store.store import Encoded, LiveClip, Seen, Store

ROOT_PEER = Peer(0, 0, 0, frozenset({0}))
QUERY = "a red circle"


def test_best_per_file_keeps_each_file_s_first_answer_in_order() -> None:
    found = [(0.9, moment_id(5, 3)), (0.8, 7), (0.7, moment_id(5, 0)), (0.6, moment_id(9, 1)), (0.5, 7),
             (0.4, moment_id(9, 0))]
    assert best_per_file(found) == [(0.9, 5), (0.8, 7), (0.6, 9)]


@pytest.fixture(scope="module")
def encoder():
    opened = Encoder.open(load_model_spec(DEMO_MODEL), backend="onnx", threads=1, image=False)
    yield opened
    opened.close()


def unit_rows(rng: np.random.Generator, count: int, dim: int, towards: np.ndarray | None = None,
              pull: float = 0.0) -> np.ndarray:
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    if towards is not None:
        vectors = vectors + pull * towards
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def index_files(store: Store, files: dict[str, np.ndarray], times: dict[str, tuple[float, ...]] | None = None,
                metas: dict[str, PhotoMeta] | None = None) -> dict[str, int]:
    """Seen + Encoded for each file: a photo's one vector, a video's one per time. Returns name -> row id."""
    store.apply([Seen("s", name, 1000 + i, 10 ** 18 + i) for i, name in enumerate(files)])
    rows = {r.relpath: r for r in store.pending(len(files) + 10, set())}
    results = []
    for name, vectors in files.items():
        moments = (times or {}).get(name)
        results.append(Encoded(rows[name], f"fp-{rows[name].id}", vector=vectors if moments else vectors[0],
                               times=moments, duration=moments[-1] + 1.0 if moments else None,
                               meta=(metas or {}).get(name)))
    store.record(results)
    return {name: rows[name].id for name in files}


@pytest.fixture
def setup(tmp_path: Path, encoder: Encoder):
    spec = encoder.spec
    store = Store(tmp_path / "state", spec.id, spec.embedding_dim)
    share = tmp_path / "share"
    searcher = search.Searcher(store, encoder, {"s": share}, 10 ** 8)
    query = encoder.encode_texts([QUERY])[0]
    yield store, searcher, share, query
    store.close()


def ask(searcher: search.Searcher, **fields) -> list:
    request = Request("search", terms=(Term(1.0, text=QUERY),), **fields)
    return searcher.search(request, ROOT_PEER)[0]


def test_each_video_is_one_result_at_its_best_moment_even_when_its_moments_fill_the_first_answers(setup) -> None:
    store, searcher, share, query = setup
    rng = np.random.default_rng(18)
    dim = len(query)
    files: dict[str, np.ndarray] = {}
    times: dict[str, tuple[float, ...]] = {}
    for v in range(6):  # six videos whose 120 moments all lie close to the query: they fill every first answer
        files[f"v{v}.mp4"] = unit_rows(rng, 120, dim, query, pull=3.0 + v * 0.1)
        times[f"v{v}.mp4"] = tuple(2.0 * i for i in range(120))
    for p in range(40):
        files[f"p{p:02d}.jpg"] = unit_rows(rng, 1, dim, query, pull=1.0)
    ids = index_files(store, files, times)
    best = sorted(((float(np.max(vectors @ query)), name) for name, vectors in files.items()), reverse=True)
    for k in (3, 10, 20):
        hits = ask(searcher, k=k)
        assert [Path(h.path).name for h in hits] == [name for _, name in best[:k]]
        for hit in hits:
            name = Path(hit.path).name
            if name in times:
                at = int(np.argmax(files[name] @ query))
                assert hit.kind == "video" and hit.time == times[name][at] and hit.duration == times[name][-1] + 1
                assert hit.id == ids[name]
                assert hit.as_dict()["kind"] == "video" and hit.as_dict()["time"] == times[name][at]
            else:
                assert hit.kind is None and set(hit.as_dict()) == {
                    "path", "share", "score", "size", "mtime", "taken", "taken_from", "camera", "place"}
    # A narrow filter (one folder's worth) goes to the catalog: a video's moments are among its ids.
    assert [Path(h.path).name for h in ask(searcher, k=2, path_prefix=str(share))] == [n for _, n in best[:2]]


def test_every_match_counts_a_video_once(setup) -> None:
    store, searcher, share, query = setup
    rng = np.random.default_rng(5)
    dim = len(query)
    files = {"match.mp4": unit_rows(rng, 50, dim, query, pull=4.0), "near.jpg": unit_rows(rng, 1, dim, query, 4.0)}
    files |= {f"other{i:03d}.jpg": unit_rows(rng, 1, dim) for i in range(200)}
    index_files(store, files, {"match.mp4": tuple(float(i) for i in range(50))})
    hits = ask(searcher, all=True, k_given=False)
    names = [Path(h.path).name for h in hits]
    assert len(names) == len(set(names)) and {"match.mp4", "near.jpg"} <= set(names)
    assert len(names) < 10


def test_a_raw_and_its_jpeg_are_one_result_unless_both_are_asked_for(setup) -> None:
    store, searcher, share, query = setup
    rng = np.random.default_rng(7)
    dim = len(query)
    shot = unit_rows(rng, 1, dim, query, pull=4.0)
    files = {"2023/IMG_0042.CR3": shot, "2023/img_0042.jpg": unit_rows(rng, 1, dim, query, 3.9),
             "2023/IMG_0043.NEF": unit_rows(rng, 1, dim, query, 3.0),  # a RAW with no JPEG
             "elsewhere/IMG_0042.JPG": unit_rows(rng, 1, dim, query, 2.0)}  # same stem, another folder
    files |= {f"x{i}.jpg": unit_rows(rng, 1, dim) for i in range(30)}
    metas = {"2023/IMG_0042.CR3": PhotoMeta(make="Canon", model="EOS R5")}
    index_files(store, files, metas=metas)
    hits = ask(searcher, k=4)
    assert [Path(h.path).relative_to(share).as_posix() for h in hits[:3]] == [
        "2023/img_0042.jpg", "2023/IMG_0043.NEF", "elsewhere/IMG_0042.JPG"]
    assert hits[0].original == str(share / "2023/IMG_0042.CR3") and hits[0].score == pytest.approx(
        float(shot[0] @ query), abs=1e-5)  # the shot's better score, its RAW's
    assert hits[1].original is None and hits[2].original is None
    assert hits[0].as_dict()["original"].endswith("IMG_0042.CR3") and "original" not in hits[1].as_dict()
    both = ask(searcher, k=4, pairs="both")
    assert [Path(h.path).name for h in both[:2]] == ["IMG_0042.CR3", "img_0042.jpg"]
    assert all(h.original is None for h in both)
    # Only the RAW says it was taken with a Canon: only the RAW is in the filtered set, and is shown.
    canon = ask(searcher, k=4, camera="canon")
    assert [Path(h.path).name for h in canon] == ["IMG_0042.CR3"] and canon[0].original is None


def test_a_live_photo_clip_is_never_a_result_and_its_still_names_it(setup) -> None:
    store, searcher, share, query = setup
    rng = np.random.default_rng(9)
    dim = len(query)
    ids = index_files(store, {"IMG_0100.HEIC": unit_rows(rng, 1, dim, query, 4.0),
                              "IMG_0101.mov": unit_rows(rng, 3, dim, query, 4.0)},
                      {"IMG_0101.mov": (0.0, 1.0, 2.0)})
    store.apply([Seen("s", "IMG_0100.MOV", 5000, 10 ** 18)])
    clip = next(r for r in store.pending(10, set()) if r.relpath == "IMG_0100.MOV")
    store.record([LiveClip(clip, "fp-clip", "IMG_0100.HEIC", duration=2.8)])
    hits = ask(searcher, k=10)
    assert [Path(h.path).name for h in hits] == ["IMG_0100.HEIC", "IMG_0101.mov"] or \
        [Path(h.path).name for h in hits] == ["IMG_0101.mov", "IMG_0100.HEIC"]
    still = next(h for h in hits if h.id == ids["IMG_0100.HEIC"])
    assert still.live == str(share / "IMG_0100.MOV") and still.as_dict()["live"] == still.live
    listed = searcher.search(Request("search", share="s", k=10), ROOT_PEER)[0]
    assert sorted(Path(h.path).name for h in listed) == ["IMG_0100.HEIC", "IMG_0101.mov"]
    video = next(h for h in listed if h.kind == "video")
    assert video.time is None and video.duration == 3.0 and video.as_dict()["time"] is None


def test_a_pair_whose_names_are_not_utf8_is_one_result_too(setup) -> None:
    import os

    store, searcher, share, query = setup
    rng = np.random.default_rng(11)
    dim = len(query)
    raw, jpeg = os.fsdecode(b"caf\xe9 IMG_7.NEF"), os.fsdecode(b"CAF\xe9 img_7.jpg")
    index_files(store, {raw: unit_rows(rng, 1, dim, query, 4.0), jpeg: unit_rows(rng, 1, dim, query, 3.5)})
    hits = ask(searcher, k=5)
    assert [h.path for h in hits] == [f"{share}/{jpeg}"] and hits[0].original == f"{share}/{raw}"
