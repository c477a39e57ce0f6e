"""The catalog's named read queries, checked against the rows a test wrote (a real SQLite catalog)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from nasclip.store.catalog import decode_path, encode_path, prefix_range
from nasclip.store.reader import Selection
from nasclip.store.store import Deleted, Encoded, Failed, Seen, Store

DIM = 8
FOLDERS = ["2019/beach", "2019/beach trip", "2019", "2020/cats", "ümlaut/日本", ""]


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return vector / np.linalg.norm(vector)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, dict[tuple[str, str], dict]]:
    """About 1 500 files in two shares, in every state; returns the store and what was written."""
    store = Store(tmp_path_factory.mktemp("reader"), "m1", DIM)
    rng = random.Random(7)
    truth: dict[tuple[str, str], dict] = {}
    for i in range(1500):
        share = rng.choice(["photos", "family"])
        folder = rng.choice(FOLDERS)
        relpath = f"{folder}/p{i}.jpg" if folder else f"p{i}.jpg"
        truth[(share, relpath)] = {"size": 1000 + i, "mtime_ns": rng.randrange(10**18, 2 * 10**18), "state": "pending"}
    store.apply([Seen(s, r, f["size"], f["mtime_ns"]) for (s, r), f in truth.items()])
    rows = store.pending(len(truth), set())
    assert len(rows) == len(truth)
    results: list[Encoded | Failed] = []
    for n, row in enumerate(rows):
        fate = n % 5
        entry = truth[(row.share, row.relpath)]
        entry["id"] = row.id
        if fate < 3:
            results.append(Encoded(row, f"fp{n % 400}", vector=unit(n)))  # twins share fingerprints
            entry.update(state="indexed", fingerprint=f"fp{n % 400}")
        elif fate == 3:
            results.append(Failed(row, None, f"broken {n}"))
            entry.update(state="failed", error=f"broken {n}")
    store.record(results)
    gone = [key for key, f in truth.items() if f["state"] == "indexed"][:100]
    store.apply([Deleted(s, r) for s, r in gone])
    for key in gone:
        truth[key]["state"] = "gone"
    return store, truth


def test_counts(library: tuple[Store, dict]) -> None:
    store, truth = library
    reader = store.reader()
    states = [f["state"] for f in truth.values()]
    assert reader.counts_by_state() == {s: states.count(s) for s in ("pending", "indexed", "failed", "gone")}
    for share in ("photos", "family", "nowhere"):
        live = [k for k, f in truth.items() if k[0] == share and f["state"] != "gone"]
        assert reader.live_in_share(share) == len(live)
    assert reader.searchable_count() == sum(s in ("indexed", "pending") for s in states)
    assert reader.coverage() == {"m1": sum(1 for f in truth.values() if f["state"] == "indexed")}


@pytest.mark.parametrize("below", ["", "2019", "2019/beach", "ümlaut", "2020/cats", "nothing/here"])
def test_live_rows_below_a_folder(library: tuple[Store, dict], below: str) -> None:
    store, truth = library
    got = store.reader().live_rows("photos", prefix_range(below) if below else None)
    want = {r: (f["size"], f["mtime_ns"]) for (s, r), f in truth.items()
            if s == "photos" and f["state"] != "gone" and (not below or r.startswith(below + "/"))}
    assert {decode_path(raw): v for raw, v in got.items()} == want


def test_searchable_ids_keep_share_folder_and_dates(library: tuple[Store, dict]) -> None:
    store, truth = library
    reader = store.reader()
    times = sorted(f["mtime_ns"] for f in truth.values())
    rng = random.Random(3)
    for _ in range(60):
        share = rng.choice(["photos", "family"])
        below = rng.choice(FOLDERS + ["2019/be"])
        after = rng.choice([None, rng.choice(times)])
        before = rng.choice([None, rng.choice(times)])
        selection = Selection(share, prefix_range(below) if below else None, after, before)
        want = {f["id"] for (s, r), f in truth.items()
                if s == share and f["state"] in ("indexed", "pending")
                and (not below or r.startswith(below + "/"))
                and (after is None or f["mtime_ns"] >= after) and (before is None or f["mtime_ns"] < before)}
        assert set(reader.searchable_ids(selection)) == want, selection


def test_candidates_across_the_parameter_limit(library: tuple[Store, dict]) -> None:
    store, truth = library
    ids = [f["id"] for f in truth.values()] + [10**9]  # more than one chunk, and one that does not exist
    got = store.reader().candidates(ids)
    assert len(got) == len(truth)
    for (share, relpath), f in truth.items():
        row = got[f["id"]]
        assert (row.share, decode_path(row.relpath), row.size, row.mtime_ns, row.state) == \
            (share, relpath, f["size"], f["mtime_ns"], f["state"])


def test_indexed_id_needs_the_same_size_and_mtime(library: tuple[Store, dict]) -> None:
    store, truth = library
    reader = store.reader()
    for (share, relpath), f in list(truth.items())[:200]:
        raw = encode_path(relpath)
        expected = f["id"] if f["state"] == "indexed" else None
        assert reader.indexed_id(share, raw, f["size"], f["mtime_ns"]) == expected
        assert reader.indexed_id(share, raw, f["size"] + 1, f["mtime_ns"]) is None
        assert reader.indexed_id(share, raw, f["size"], f["mtime_ns"] + 1) is None


def test_failures_newest_first_and_due_rows(library: tuple[Store, dict]) -> None:
    store, truth = library
    reader = store.reader()
    failed = reader.recent_failures(10_000)
    assert sorted((s, decode_path(p), e) for s, p, e in failed) == sorted(
        (s, r, f["error"]) for (s, r), f in truth.items() if f["state"] == "failed")
    assert reader.recent_failures(3) == failed[:3]
    pending = [f for f in truth.values() if f["state"] == "pending"]
    due = reader.due(50, set(), now=0.0)
    assert [r.mtime_ns for r in due] == sorted((f["mtime_ns"] for f in pending), reverse=True)[:50]
    skipped = {due[0].id, due[1].id}
    assert [r.id for r in reader.due(48, skipped, now=0.0)] == [r.id for r in due[2:]]


def test_donor_is_the_row_itself_or_a_twin(library: tuple[Store, dict]) -> None:
    store, truth = library
    reader = store.reader()
    indexed = [f for f in truth.values() if f["state"] == "indexed"]
    pending = [f for f in truth.values() if f["state"] == "pending"]
    for f in indexed[:50]:
        assert reader.donor("m1", f["id"], f["fingerprint"]) == f["id"]
    # Deleted rows keep their vectors until purged: a photo deleted and copied back reuses one.
    twins = {g["id"] for g in truth.values() if g.get("fingerprint") == "fp7"}
    for f in pending[:50]:
        assert reader.donor("m1", f["id"], "fp7") in twins
        assert reader.donor("m1", f["id"], "no such fingerprint") is None
        assert reader.donor("m2", f["id"], "fp7") is None
