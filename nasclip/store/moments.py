"""A file's ids in the vector index: a photo's is its row id, a video's are its moments'.

A video is several vectors, one per sampled frame ("moment"), each with its
time (catalog schema 6, ``moments``). Their FAISS ids are computed, so that
search maps any id to its file by arithmetic, never by a lookup::

    photo:   id = file_id                                   (below 2**62)
    moment:  id = MOMENT_BASE + (file_id << MOMENT_BITS) + idx

``idx`` is the frame's place in the video's time order (0 first), at most
``config.MAX_VIDEO_FRAMES`` (255), so it fits in its 8 bits; file ids stay
below 2**54 (a catalog would need 18 quadrillion rows to reach it). A photo's
id is unchanged from schema 5, so existing indexes need no migration. Since
the arithmetic fixes every id a file can have, the catalog only needs to say
which ones exist: a ``vectors`` row (model, file) with ``moments`` rows for a
video, without for a photo (or a Live Photo clip, which has none at all).

The SQL here runs inside the Store's transactions (Catalog and recording.py
call it) or on a reader's connection; nothing else in nasclip needs to know
how a video's ids are made.
"""

from __future__ import annotations

import sqlite3
from typing import Iterable

import numpy as np

from ..config import MAX_VIDEO_FRAMES

MOMENT_BITS = 8
MOMENT_BASE = 1 << 62
MOMENT_MASK = (1 << MOMENT_BITS) - 1
assert MAX_VIDEO_FRAMES <= MOMENT_MASK, "a video's frames must be numbered within MOMENT_BITS"
CLIP = "clip"  # files.kind of a Live Photo's clip: done, with no vector of its own
_CHUNK = 900  # SQLite's bound-parameter limit is 999


def moment_id(file_id: int, idx: int) -> int:
    """The FAISS id of a video's idx-th moment."""
    if not 0 <= idx <= MOMENT_MASK or not 0 < file_id < 1 << (62 - MOMENT_BITS):
        raise ValueError(f"no moment id for file {file_id}, frame {idx}")
    return MOMENT_BASE + (file_id << MOMENT_BITS) + idx


def split_id(faiss_id: int) -> tuple[int, int | None]:
    """(file id, moment index) of a FAISS id; the index is None for a photo's own id."""
    if faiss_id >= MOMENT_BASE:
        offset = faiss_id - MOMENT_BASE
        return offset >> MOMENT_BITS, offset & MOMENT_MASK
    return faiss_id, None


def file_ids_of(ids: np.ndarray) -> np.ndarray:
    """The file id of each FAISS id (int64), for many at once."""
    ids = np.asarray(ids, dtype=np.int64)
    return np.where(ids >= MOMENT_BASE, (ids - MOMENT_BASE) >> MOMENT_BITS, ids)


def _chunks(values: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start:start + _CHUNK]


# ---------------------------------------------------------------------- the catalog's side


def index_ids(conn: sqlite3.Connection, file_ids: Iterable[int]) -> list[int]:
    """Every FAISS id these files have in any model's index: their own and their moments' (for removing them)."""
    ids = [int(i) for i in file_ids]
    found = list(ids)
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        found += [moment_id(f, i) for f, i in conn.execute(
            f"SELECT DISTINCT file_id, idx FROM moments WHERE file_id IN ({marks})", chunk)]
    return found


def known_ids(conn: sqlite3.Connection, model_id: str) -> np.ndarray:
    """The FAISS ids the catalog says the model's index holds: photos' row ids and videos' moments (int64)."""
    files = np.array([i for (i,) in conn.execute("SELECT file_id FROM vectors WHERE model_id = ?", (model_id,))],
                     dtype=np.int64)
    frames = conn.execute("SELECT m.file_id, m.idx FROM moments m JOIN vectors v ON v.model_id = m.model_id "
                          "AND v.file_id = m.file_id WHERE m.model_id = ?", (model_id,)).fetchall()
    clips = [i for (i,) in conn.execute(f"SELECT id FROM files INDEXED BY files_clips WHERE kind = '{CLIP}'")]
    photos = files[~np.isin(files, np.array([f for f, _ in frames] + clips, dtype=np.int64))]
    return np.concatenate([photos, np.array([moment_id(f, i) for f, i in frames], dtype=np.int64)])


def held_ids(conn: sqlite3.Connection, model_id: str, file_id: int) -> list[int]:
    """The FAISS ids one file has in the model's index now: [] without a vector, its moments, or its own id."""
    row = conn.execute("SELECT f.kind FROM vectors v JOIN files f ON f.id = v.file_id "
                       "WHERE v.model_id = ? AND v.file_id = ?", (model_id, file_id)).fetchone()
    if row is None or row[0] == CLIP:
        return []
    moments = [moment_id(file_id, i) for (i,) in conn.execute(
        "SELECT idx FROM moments WHERE model_id = ? AND file_id = ? ORDER BY idx", (model_id, file_id))]
    return moments or [file_id]


def moment_times(conn: sqlite3.Connection, model_id: str, file_id: int) -> list[float]:
    """The seconds of a video's moments in the model's index, in index order ([] for a photo)."""
    return [s for (s,) in conn.execute("SELECT seconds FROM moments WHERE model_id = ? AND file_id = ? ORDER BY idx",
                                       (model_id, file_id))]


def write_moments(tx: sqlite3.Connection, model_id: str, file_id: int, times: Iterable[float]) -> list[int]:
    """Replace a file's moments in the model's index by these times (in index order); returns their ids."""
    tx.execute("DELETE FROM moments WHERE model_id = ? AND file_id = ?", (model_id, file_id))
    rows = [(file_id, model_id, idx, float(t)) for idx, t in enumerate(times)]
    tx.executemany("INSERT INTO moments (file_id, model_id, idx, seconds) VALUES (?, ?, ?, ?)", rows)
    return [moment_id(file_id, idx) for _, _, idx, _ in rows]


def forget(tx: sqlite3.Connection, model_id: str, faiss_ids: Iterable[int]) -> set[int]:
    """These ids are missing from the model's index: their files lose its vectors (all moments of a video,
    whichever of them is missing) and so are encoded again. Returns the files."""
    files = {split_id(int(i))[0] for i in faiss_ids}
    rows = [(model_id, f) for f in sorted(files)]
    tx.executemany("DELETE FROM vectors WHERE model_id = ? AND file_id = ?", rows)
    tx.executemany("DELETE FROM moments WHERE model_id = ? AND file_id = ?", rows)
    return files


def seconds_of(conn: sqlite3.Connection, model_id: str, moments: list[tuple[int, int]]) -> dict[tuple[int, int], float]:
    """{(file id, idx): seconds} of these moments of the model (missing ones left out)."""
    found: dict[tuple[int, int], float] = {}
    files = sorted({f for f, _ in moments})
    wanted = set(moments)
    for chunk in _chunks(files):
        marks = ",".join("?" * len(chunk))
        for f, i, s in conn.execute(f"SELECT file_id, idx, seconds FROM moments WHERE model_id = ? "
                                    f"AND file_id IN ({marks})", (model_id, *chunk)):
            if (f, i) in wanted:
                found[(f, i)] = s
    return found
