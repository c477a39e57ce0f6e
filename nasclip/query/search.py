"""Searches: query terms to a vector, the index to ranked photos a person may see.

Texts are embedded once and cached (LRU). An image term ("more like this")
uses the photo's stored vector when it is indexed and unchanged, else
encodes it. Results are filtered by state, share, folder, date and read
permission. The index is asked for a few more than ``k`` (with filters,
for POST_FILTER_LIMIT candidates, examined only as far as needed) and the
search widens while permission checks drop too many; a filter that leaves
only a small part of the index (one folder, one month) is instead turned
into a list of catalog ids that the index scans alone, so a narrow filter
costs no more than a broad one.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Mapping

import numpy as np

from ..config import Config
from ..errors import DecodeError, ModelError, NasclipError, PathRefused, ProtocolError
from ..fsopen import open_nofollow
from ..indexing.encoder import Encoder, l2_normalise
from ..indexing.imaging import DecodeLimits, decode_limits, load_tensor, open_bounded
from ..meta.places import Places
from ..model.spec import load_model_spec
from ..shares import Shares
from ..store import catalog as cat
from ..store.reader import SEARCHABLE, Candidate
from ..store.store import Store
from ..store.vectors import VectorIndex
from .access import AccessCheck, Peer
from .acl import R, X
from .batching import Batcher, default_slots
from .cutoff import Cutoff, find_cutoff, upper_bound
from .filters import Filter
from .protocol import BAD_REQUEST, BUSY, FORBIDDEN, NOT_FOUND, Request, Term
from .results import Hit, hit_from, score_of, when
from .textbatch import encode_texts
from .textsearch import TextMatches, find_text
from .understand import understand

log = logging.getLogger("nasclip.search")

# A share/folder/date filter is applied to the index's answers while k
# results would take at most this many candidates; a narrower filter is
# handed to the catalog, whose ids the index then scans alone.
POST_FILTER_LIMIT = 512
# A filter keeping at most this many times the photos POST_FILTER_LIMIT candidates would
# need to hold k of its photos goes to the catalog at once (below, the index would not do).
NARROW = 2.0
TEXT_CACHE_SIZE = 4096
DECODE_WAIT = 1.0  # seconds a --like query waits for a decode slot before it is told 'busy'


class TextCache:
    """A small thread-safe LRU of text embeddings."""

    def __init__(self, size: int = TEXT_CACHE_SIZE) -> None:
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
        vector.setflags(write=False)  # shared by every later request
        with self._lock:
            self._items[text] = vector
            self._items.move_to_end(text)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


class Searcher:
    """Answers search requests against one store; safe to share across threads.

    Searches use the store's serving model: during a model switch that is
    the old model until the new one covers more photos, so its encoder is
    opened here (once) from the folder the store remembers for it.
    """

    def __init__(self, store: Store, encoder: Encoder, shares: Shares | Mapping[str, Path], max_pixels: int,
                 *, limits: DecodeLimits | None = None, max_decodes: int = 2, slots: int = 0,
                 max_all: int = 10000, places: Places | None = None, reads_text: bool = False) -> None:
        self.store = store
        self.encoder = encoder
        self.shares = Shares.of(shares)
        self.limits = limits or DecodeLimits(max_pixels)  # replaced by a config reload
        self.max_decodes = max_decodes
        self.max_all = max_all  # most photos an 'all' search returns
        self.places = places or Places()  # place names: the query box, --place, results' places
        self.reads_text = reads_text  # text is read in photos (ocr.enabled): quoted words are looked for there
        self._decodes = threading.BoundedSemaphore(max_decodes)
        self.texts = TextCache()
        # Text-encoder runs and index scans, concurrent queries' together, a few at a time
        # (slots; 0: half the cores): a storm of queries cannot take the cores indexing needs.
        self.work = Batcher(slots or default_slots())
        self._encoders: dict[str, Encoder] = {encoder.model_id: encoder}
        self._encoders_lock = threading.Lock()

    def reconfigure(self, config: Config) -> None:
        """A reload's shares and decode limits; the text cache and the --like slots stay."""
        self.shares = Shares.of(config.shares)
        self.limits = decode_limits(config.indexer)
        self.max_all = config.query.max_all

    def close(self) -> None:
        """Close encoders opened for an old model (the target encoder belongs to the caller)."""
        with self._encoders_lock:
            for encoder in self._encoders.values():
                if encoder is not self.encoder:
                    encoder.close()
            self._encoders = {self.encoder.model_id: self.encoder}

    def _model(self) -> tuple[str, VectorIndex, Encoder]:
        """(model id, index, encoder) that answer searches now."""
        model = self.store.serving_model()
        index = self.store.indexes.get(model)
        encoder = self._encoders.get(model) if index is not None else self.encoder
        if encoder is None:
            encoder = self._open_old(model)
        if encoder is None or index is None:
            return self.encoder.model_id, self.store.index, self.encoder
        return model, index, encoder

    def _open_old(self, model: str) -> Encoder | None:
        with self._encoders_lock:
            if model in self._encoders:
                return self._encoders[model]
            folder = self.store.model_folder(model)
            try:
                if folder is None:
                    raise ModelError(f"no folder is recorded for model {model}")
                encoder = Encoder.open(load_model_spec(folder), backend="onnx", threads=1)
                if encoder.model_id != model:
                    raise ModelError(f"{folder} now holds model {encoder.model_id}, not {model}")
            except NasclipError as exc:
                log.warning("searching with the new model %s while photos are re-encoded, because the "
                            "old model %s cannot be loaded: %s", self.encoder.model_id, model, exc)
                encoder = None
            self._encoders[model] = encoder  # type: ignore[assignment]  # None: tried, do not retry
            return encoder

    # ------------------------------------------------------------------ query vectors

    def text_vectors(self, texts: list[str], encoder: Encoder | None = None) -> dict[str, np.ndarray]:
        """{text: vector}: from the cache, the others encoded in one submission to the batcher."""
        encoder = encoder or self.encoder
        # Keyed by what the tokenizer sees: "red  car" and "red car" share an entry
        # (so do "紅色" and "红色" for a t2s model), "red\x85car" does not (ftfy reads an ellipsis).
        keys = {text: f"{encoder.model_id}\0{encoder.text_key(text)}" for text in texts}
        found: dict[str, np.ndarray] = {}
        for text, key in keys.items():
            vector = self.texts.get(key)
            if vector is not None:
                found[text] = vector
        missing = [text for text in keys if text not in found]
        if missing:
            for text, vector in zip(missing, encode_texts(self.work, encoder, missing)):
                self.texts.put(keys[text], vector)
                found[text] = vector
        return found

    def _share_path(self, folder: str | None) -> str | None:
        return None if folder is None else self.shares.spelled(folder)

    def image_vector(self, image: str, access: AccessCheck, index: VectorIndex | None = None,
                     encoder: Encoder | None = None) -> np.ndarray:
        """The vector of a photo the peer may read: stored if indexed and unchanged, else encoded.

        The photo is opened by a walk that follows no symbolic link and
        checks the peer's search permission on each folder it really
        opened, then its read permission on the opened file: a link (or one
        swapped in during the walk) cannot make nasclipd read someone
        else's photo. nasclip-query resolves links as the asking user first.
        """
        index = index or self.store.index
        encoder = encoder or self.encoder
        if not image.startswith("/"):
            raise ProtocolError(BAD_REQUEST, f"image path must be absolute: {image}")
        refused = ProtocolError(FORBIDDEN, f"cannot use {image}: it does not exist or you may not read it")

        def enter(fd: int, st: os.stat_result) -> None:
            if not access.allows(fd, st, X):
                raise refused
        # O_NONBLOCK keeps a FIFO from holding a worker.
        try:
            fd = open_nofollow(image, flags=os.O_RDONLY | os.O_NONBLOCK, on_folder=enter)
        except PathRefused as exc:
            if access.peer.is_root:
                raise ProtocolError(BAD_REQUEST, f"cannot use {image}: {exc}") from None
            raise refused from None
        except FileNotFoundError:
            if access.peer.is_root:
                raise ProtocolError(NOT_FOUND, f"no such photo: {image}") from None
            raise refused from None
        except OSError as exc:
            if access.peer.is_root:
                raise ProtocolError(BAD_REQUEST, f"cannot open {image}: {exc.strerror}") from None
            raise refused from None
        try:
            st = os.fstat(fd)
            if not access.allows(fd, st, R):
                raise refused
            if not stat.S_ISREG(st.st_mode):
                raise ProtocolError(BAD_REQUEST, f"cannot use {image}: not a regular file")
            if st.st_size == 0:  # also every /proc file, which cannot be read like a photo
                raise ProtocolError(BAD_REQUEST, f"cannot use {image}: the file is empty")
            located = self.shares.locate(Path(self.shares.spelled(image)))
            if located is not None:
                found = self.store.reader().indexed_id(located[0], cat.encode_path(located[1]), st.st_size,
                                                       st.st_mtime_ns)
                stored = index.get(found) if found is not None else None
                if stored is not None:
                    return stored
            try:
                tensor = self._decode(fd, st.st_size, encoder)
            except DecodeError as exc:
                raise ProtocolError(BAD_REQUEST, f"cannot use {image} as a query: {exc}") from None
            except OSError as exc:  # e.g. a file that cannot seek
                raise ProtocolError(BAD_REQUEST, f"cannot use {image} as a query: {exc.strerror or exc}") from None
        finally:
            os.close(fd)
        return encoder.encode_images(tensor[None])[0]

    def _decode(self, fd: int, size: int, encoder: Encoder) -> np.ndarray:
        """A query photo's tensor, within the decode limits and the --like slots."""
        limits = self.limits
        handle = open_bounded(fd, size, limits)  # an oversized file is refused before it takes a slot
        # Each slot may hold hundreds of MB of pixels for a moment: a few users
        # must not be able to make the daemon as large as they like.
        if not self._decodes.acquire(timeout=DECODE_WAIT):
            raise ProtocolError(BUSY, f"{self.max_decodes} --like photos are being decoded "
                                      "(query.max_image_decodes); try again in a moment")
        try:
            return load_tensor(handle, encoder.spec.image, limits.max_pixels)
        finally:
            self._decodes.release()

    def query_vector(self, terms: tuple[Term, ...], access: AccessCheck, index: VectorIndex | None = None,
                     encoder: Encoder | None = None) -> np.ndarray:
        encoder = encoder or self.encoder
        total = np.zeros(encoder.dim, dtype=np.float32)
        texts = self.text_vectors([term.text for term in terms if term.text], encoder)
        for term in terms:
            vector = texts[term.text] if term.text else self.image_vector(term.image or "", access, index, encoder)
            total += term.weight * vector
        if not np.any(total):
            raise ProtocolError(BAD_REQUEST, "the terms cancel each other out; nothing is left to search for")
        return l2_normalise(total[None])[0]

    # ------------------------------------------------------------------ searching

    def search(self, request: Request, peer: Peer) -> tuple[list[Hit], dict]:
        """The photos peer may see that answer request (the k best, or every match), and details of the search."""
        started = time.perf_counter()
        access = AccessCheck(peer)
        understood = understand(request, self.places, self.reads_text)
        request = understood.request
        filt = Filter(request, self.shares, self._share_path(request.path_prefix), understood.place)
        details: dict = {"understood": understood.description, "interpreted": understood.interpreted}
        # Words to find in the photos' text: only the photos showing all of them are candidates.
        matches = find_text(self.store.reader(), request.text_in) if request.text_in else None
        among = np.array(sorted(matches.found), dtype=np.int64) if matches is not None else None
        if not request.terms and matches is not None:
            hits, examined = self._by_text(request, filt, access, matches)
            details.update(model=None, filtered_by="text", examined=examined if peer.is_root else len(hits))
        elif not request.terms:
            if not filt.active:
                raise ProtocolError(BAD_REQUEST, "nothing to search for: give a description, a photo or a filter")
            hits = self._listing(request, filt, access)
            details.update(model=None, filtered_by="catalog", examined=len(hits))
        else:
            model, index, encoder = self._model()
            query = self.query_vector(request.terms, access, index, encoder)
            details.update(model=model, encode_ms=round((time.perf_counter() - started) * 1000, 2))
            if request.all:
                hits, cutoff, examined, visible = self._every_match(index, query, filt, access, request, among)
                if not peer.is_root:  # a statistic of photos hidden from the asker too
                    cutoff.pop("median", None)
                details.update(cutoff=cutoff, filtered_by="index" if not filt.active else "catalog")
            else:
                hits, examined, visible, route = self._best(index, query, filt, access, request.k, among)
                details["filtered_by"] = route
            if matches is not None:
                hits = self._with_text(hits, matches)
                details["filtered_by"] = "text"
            # Others see only how many candidates they may see were looked at: the full count
            # would tell how many hidden photos a folder (say, bob's) holds.
            details["examined"] = examined if peer.is_root else visible
        if request.sort != "score" and request.terms:  # the matches, in the order they were taken
            hits.sort(key=when, reverse=request.sort == "-date")
        details["took_ms"] = round((time.perf_counter() - started) * 1000, 2)
        return hits, details

    def _best(self, index: VectorIndex, query: np.ndarray, filt: Filter, access: AccessCheck, k: int,
              among: np.ndarray | None = None) -> tuple[list[Hit], int, int, str]:
        """The k best visible photos the filter keeps (among those ids, if given): (hits, examined, visible, route)."""
        if among is not None:  # the photos showing the words asked for; the other filters apply per row
            hits, examined, visible, _ = self._scan(index, query, k, filt, access, among, len(among), len(among))
            return hits, examined, visible, "catalog"
        total = len(index)
        limit = POST_FILTER_LIMIT if filt.active else total
        # A filter that leaves too few photos for POST_FILTER_LIMIT candidates to hold k of
        # them (one album, a month) goes to the catalog at once: asking the index first
        # would cost a scan, and under load its wait, for nothing.
        narrow = self._candidates(filt, int(total * NARROW * k / POST_FILTER_LIMIT)) if filt.active else None
        if narrow is not None:
            hits, examined, visible, _ = self._scan(index, query, k, filt, access, narrow, len(narrow), len(narrow))
            return hits, examined, visible, "catalog"
        hits, examined, visible, complete = self._scan(index, query, k, filt, access, None, total, limit)
        if complete:
            return hits, examined, visible, "index"
        among = self._candidates(filt)
        assert among is not None  # no limit given
        hits, more, visible, _ = self._scan(index, query, k, filt, access, among, len(among), len(among))
        return hits, examined + more, visible, "catalog"

    def _every_match(self, index: VectorIndex, query: np.ndarray, filt: Filter, access: AccessCheck,
                     request: Request, among: np.ndarray | None = None) -> tuple[list[Hit], dict, int, int]:
        """Every visible photo above the query's own cut-off (cutoff.py): (hits, cut-off, examined, visible).

        The whole filtered collection is scored (one scan), its median taken,
        and the visible candidates examined best first down to the upper
        bound the cut-off can lie in, plus one more below it.
        """
        if among is None and filt.active:
            among = self._candidates(filt)
        size = len(among) if among is not None else len(index)
        if size == 0:
            return [], Cutoff(float("inf"), 0).as_dict(), 0, 0
        scores, ids = self._search(index, query, size, among)
        found = [(s, i) for s, i in zip(scores[0].tolist(), ids[0].tolist()) if i >= 0]
        median = float(np.median([s for s, _ in found])) if found else 0.0
        hits: list[Hit] = []
        examined = 0
        chunk = 256
        while examined < len(found):
            hits += self._accept(found[examined:examined + chunk], filt, access)
            examined = min(len(found), examined + chunk)
            chunk *= 2
            if len(hits) > 1 and score_of(hits[-1]) < upper_bound(score_of(hits[0]), median):
                break
        cutoff = find_cutoff(np.array([score_of(h) for h in hits]), median)
        cap = min(self.max_all, request.k if request.k_given else self.max_all)
        matched = hits[:min(cutoff.count, cap)]
        return matched, {**cutoff.as_dict(), "median": round(median, 6), "truncated": cutoff.count > cap}, \
            examined, len(hits)

    def _listing(self, request: Request, filt: Filter, access: AccessCheck) -> list[Hit]:
        """The visible photos a filter keeps, newest first (or oldest, with sort date): a search with no description."""
        among = self._candidates(filt)
        assert among is not None
        hits = self._accept([(0.0, i) for i in among.tolist()], filt, access)
        hits.sort(key=when, reverse=request.sort != "date")
        cap = min(self.max_all, request.k) if not request.all else min(self.max_all, request.k if request.k_given
                                                                        else self.max_all)
        return [replace(h, score=None) for h in hits[:cap]]

    def _by_text(self, request: Request, filt: Filter, access: AccessCheck,
                 matches: TextMatches) -> tuple[list[Hit], int]:
        """A search by text alone: the visible photos showing every word, best matches first, then the newest."""
        rows = self.store.reader().candidates(matches.found)
        ranked = sorted(((matches.quality(i), i) for i in rows), key=lambda m: (-m[0], -_seconds(rows[m[1]])))
        cap = self.max_all if request.all and not request.k_given else request.k
        hits: list[Hit] = []
        examined, chunk = 0, max(2 * cap, 64)
        while examined < len(ranked) and len(hits) < cap:
            hits += self._accept(ranked[examined:examined + chunk], filt, access)
            examined += chunk
        return self._with_text(hits[:cap], matches), min(examined, len(ranked))

    def _with_text(self, hits: list[Hit], matches: TextMatches) -> list[Hit]:
        """The hits, each with the recognised text around the first term."""
        return [replace(hit, text=matches.snippet(hit.id)) if hit.id in matches.found else hit for hit in hits]

    def _scan(self, index: VectorIndex, query: np.ndarray, want: int, filt: Filter, access: AccessCheck,
              among: np.ndarray | None, total: int, limit: int) -> tuple[list[Hit], int, int, bool]:
        """(best hits, candidates examined, of them visible matches, whether the answer is final) for one search.

        Every index search is a full scan, so filtered searches ask for
        ``limit`` candidates at once and examine them in growing chunks only
        as far as needed; a search that must widen beyond that asks for at
        least four times as many. With ``limit`` below ``total`` it gives up
        (not final) as soon as the filters look too narrow to fill k within
        ``limit`` candidates. With exact search, a wider answer starts with
        the narrower one, so no candidate is examined twice.
        """
        hits: list[Hit] = []
        examined = 0
        fetch = min(total, limit if limit < total else max(want * 2, 32))
        while fetch > 0:
            scores, ids = self._search(index, query, fetch, among)
            found = [(s, i) for s, i in zip(scores[0].tolist(), ids[0].tolist()) if i >= 0]
            chunk = max(want * 2, 32)
            expected = 0.0
            while examined < len(found) and len(hits) < want:
                hits += self._accept(found[examined:examined + chunk], filt, access)
                examined = min(len(found), examined + chunk)
                chunk *= 2
                # How many candidates k results would take at the rate filters kept them so far.
                expected = want * examined / max(len(hits), 0.5)
                if limit < total and expected > limit:
                    break
            if len(hits) >= want or (examined == len(found) and (len(found) < fetch or fetch >= total)):
                break
            if fetch >= limit or expected > limit:
                hits.sort(key=lambda h: -score_of(h))
                return hits[:want], examined, len(hits), False
            fetch = min(total, limit, max(fetch * 4, int(expected * 1.25)))
        hits.sort(key=lambda h: -score_of(h))
        return hits[:want], examined, len(hits), True

    def _search(self, index: VectorIndex, query: np.ndarray, fetch: int,
                among: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """index.search through the work batcher: unfiltered scans of one index run together."""
        if among is not None:  # its own selector: a scan of its own
            return self.work.submit(None, [query], lambda batch: [index.search(batch[0], fetch, among)])[0]
        return self.work.submit(index, [(query, fetch)], lambda batch: _scan_together(index, batch))[0]

    def _candidates(self, filt: Filter, limit: int | None = None) -> np.ndarray | None:
        """Ids of the catalog rows a share/folder/date filter keeps; None if there are more than limit."""
        reader = self.store.reader()
        ids: list[int] = []
        for selection in filt.selections():
            ids += reader.searchable_ids(selection, None if limit is None else limit - len(ids))
            if limit is not None and len(ids) > limit:
                return None
        return np.array(ids, dtype=np.int64)

    def _accept(self, candidates: list[tuple[float, int]], filt: Filter, access: AccessCheck) -> list[Hit]:
        if not candidates:
            return []
        rows = self.store.reader().candidates(i for _, i in candidates)
        hits = []
        for score, id_ in candidates:
            row = rows.get(id_)
            # A pending row is a changed photo whose old vector still answers until it is re-encoded.
            if row is None or row.state not in SEARCHABLE:
                continue
            root = self.shares.root(row.share)
            if root is None or not filt.keeps_row(row):
                continue
            path = f"{root}/{cat.decode_path(row.relpath)}"
            if not filt.keeps_path(path) or not (access.peer.is_root or access.may_read(Path(path))):
                continue
            hits.append(hit_from(row, path, score, self.places, filt.chinese))
        return hits


def _seconds(row: Candidate) -> float:
    """When a row's photo was taken, as seconds for ordering (its mtime where it does not say)."""
    return row.taken if row.taken is not None else row.mtime_ns / 1e9


def _scan_together(index: VectorIndex, batch: list[tuple[np.ndarray, int]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """One index scan for several queries, each cut to the number of candidates it asked for.

    Exact search ranks the same whatever k is asked, so the first k of a longer answer are the answer for k.
    """
    scores, ids = index.search(np.stack([query for query, _ in batch]), max(fetch for _, fetch in batch))
    return [(scores[i:i + 1, :fetch], ids[i:i + 1, :fetch]) for i, (_, fetch) in enumerate(batch)]
