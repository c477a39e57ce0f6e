"""Searches: query terms to a vector, the index to ranked photos a person may see.

Texts are embedded once and cached (LRU). An image term ("more like this")
uses the photo's stored vector when it is indexed, else encodes it. Results
are filtered by state, share, folder, date and read permission; when filters
drop too many, the search widens until it has k results or has seen the
whole index.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import catalog as cat
from .access import AccessCheck, Peer
from .encoder import Encoder, l2_normalise
from .errors import DecodeError, ProtocolError
from .imaging import load_tensor
from .protocol import BAD_REQUEST, FORBIDDEN, NOT_FOUND, Request, Term
from .store import Store

log = logging.getLogger("nasclip.search")


@dataclass(frozen=True)
class Hit:
    """One search result."""

    path: str
    share: str
    score: float
    size: int
    mtime: float

    def as_dict(self) -> dict:
        return {"path": self.path, "share": self.share, "score": round(self.score, 6),
                "size": self.size, "mtime": self.mtime}


class TextCache:
    """A small thread-safe LRU of text embeddings."""

    def __init__(self, size: int = 2048) -> None:
        self.size = size
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, text: str) -> np.ndarray | None:
        with self._lock:
            vector = self._items.get(text)
            if vector is not None:
                self._items.move_to_end(text)
                self.hits += 1
            else:
                self.misses += 1
            return vector

    def put(self, text: str, vector: np.ndarray) -> None:
        with self._lock:
            self._items[text] = vector
            self._items.move_to_end(text)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


class Searcher:
    """Answers search requests against one store with one model."""

    def __init__(self, store: Store, encoder: Encoder, share_roots: dict[str, Path], max_pixels: int) -> None:
        self.store = store
        self.encoder = encoder
        self.share_roots = dict(share_roots)
        self.max_pixels = max_pixels
        self.texts = TextCache()

    def text_vector(self, text: str) -> np.ndarray:
        vector = self.texts.get(text)
        if vector is None:
            vector = self.encoder.encode_texts([text])[0]
            self.texts.put(text, vector)
        return vector

    def _locate(self, path: Path) -> tuple[str, Path, str] | None:
        """(share, root, relpath) of an absolute path inside a share."""
        for share, root in self.share_roots.items():
            try:
                rel = path.relative_to(root)
            except ValueError:
                continue
            return share, root, rel.as_posix()
        return None

    def image_vector(self, image: str, access: AccessCheck) -> np.ndarray:
        path = Path(image)
        if not path.is_absolute():
            raise ProtocolError(BAD_REQUEST, f"image path must be absolute: {image}")
        located = self._locate(path)
        root = located[1] if located else path.parent
        if not path.exists():
            raise ProtocolError(NOT_FOUND, f"no such photo: {image}")
        if not access.may_read(path, root):
            raise ProtocolError(FORBIDDEN, f"you may not read {image}")
        if located is not None:
            row = self.store.reader().execute(
                "SELECT id FROM files WHERE share=? AND relpath=? AND state='indexed'",
                (located[0], cat.encode_path(located[2]))).fetchone()
            if row is not None:
                stored = self.store.index.get(row[0])
                if stored is not None:
                    return stored
        try:
            tensor = load_tensor(path, self.encoder.spec.image, self.max_pixels)
        except DecodeError as exc:
            raise ProtocolError(BAD_REQUEST, f"cannot use {image} as a query: {exc}") from None
        return self.encoder.encode_images(tensor[None])[0]

    def query_vector(self, terms: tuple[Term, ...], access: AccessCheck) -> np.ndarray:
        total = np.zeros(self.encoder.dim, dtype=np.float32)
        for term in terms:
            vector = self.text_vector(term.text) if term.text else self.image_vector(term.image or "", access)
            total += term.weight * vector
        return l2_normalise(total[None])[0]

    def search(self, request: Request, peer: Peer) -> tuple[list[Hit], dict]:
        """The best request.k photos peer may see, and timing details."""
        started = time.perf_counter()
        access = AccessCheck(peer)
        query = self.query_vector(request.terms, access)
        encoded = time.perf_counter()
        total = len(self.store.index)
        want = request.k
        hits: list[Hit] = []
        fetch = min(total, max(want * 3, 32))
        seen = 0
        while fetch > 0:
            scores, ids = self.store.index.search(query, fetch)
            hits = self._accept(scores[0], ids[0], request, access)
            seen = fetch
            if len(hits) >= want or fetch >= total:
                break
            fetch = min(total, fetch * 4)
        took = time.perf_counter() - started
        return hits[:want], {"took_ms": round(took * 1000, 2), "encode_ms": round((encoded - started) * 1000, 2),
                             "examined": seen}

    def _accept(self, scores: np.ndarray, ids: np.ndarray, request: Request, access: AccessCheck) -> list[Hit]:
        valid = [(float(s), int(i)) for s, i in zip(scores, ids) if i >= 0]
        if not valid:
            return []
        rows: dict[int, tuple] = {}
        conn = self.store.reader()
        id_list = [i for _, i in valid]
        for start in range(0, len(id_list), 900):  # SQLite's bound-parameter limit
            chunk = id_list[start:start + 900]
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(f"SELECT id, share, relpath, size, mtime_ns, state FROM files "
                                    f"WHERE id IN ({marks})", chunk):
                rows[row[0]] = row
        prefix = request.path_prefix.rstrip("/") if request.path_prefix else None
        hits = []
        for score, id_ in valid:
            row = rows.get(id_)
            if row is None or row[5] not in (cat.INDEXED, cat.PENDING):
                continue
            share, relpath, size, mtime_ns = row[1], cat.decode_path(row[2]), row[3], row[4]
            root = self.share_roots.get(share)
            if root is None or (request.share and share != request.share):
                continue
            path = root / relpath
            text = str(path)
            if prefix and not (text == prefix or text.startswith(prefix + "/")):
                continue
            mtime = mtime_ns / 1e9
            if (request.after is not None and mtime < request.after) or \
                    (request.before is not None and mtime >= request.before):
                continue
            if not access.may_read(path, root):
                continue
            hits.append(Hit(text, share, score, size, mtime))
        return hits
