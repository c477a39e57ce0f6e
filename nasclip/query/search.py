"""Searches: query terms to a vector, the index to ranked photos and videos a person may see.

Texts are embedded once and cached (LRU); image terms ("more like this") are
likes.py's. Results are filtered by state, share, folder, date and read
permission, and grouped (grouping.py): a video is one result at its best
moment, a RAW+JPEG shot one result. The index is asked for a few more than
``k`` (with filters, for POST_FILTER_LIMIT candidates, examined only as far as
needed) and the search widens while permission checks and grouping leave too
few; a filter that leaves only a small part of the index (one folder, one
month) is instead turned into a list of index ids (a photo's row id, a
video's moments) that the index scans alone, so a narrow filter costs no
more than a broad one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from ..config import Config
from ..errors import ModelError, NasclipError, ProtocolError
from ..indexing.bounded import DecodeLimits, decode_limits
from ..indexing.encoder import Encoder, l2_normalise
from ..media.video import VideoLimits, video_limits
from ..meta.places import Places
from ..model.spec import load_model_spec
from ..shares import Shares
from ..store import catalog as cat
from ..store.reader import Candidate
from ..store.store import Store
from ..store.vectors import VectorIndex
from .access import AccessCheck, Peer
from .batching import SLOT_SHARE, Batcher, default_slots
from .cutoff import Cutoff, find_cutoff, upper_bound
from .filters import Filter
from .grouping import Collector, best_per_file
from .likes import ImageTerms
from .protocol import BAD_REQUEST, Request, Term
from .results import Hit, score_of, when
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
                 max_all: int = 10000, places: Places | None = None, reads_text: bool = False,
                 video: VideoLimits | None = None) -> None:
        self.store = store
        self.encoder = encoder
        self.shares = Shares.of(shares)
        self.max_all = max_all  # most photos an 'all' search returns
        self.places = places or Places()  # place names: the query box, --place, results' places
        self.reads_text = reads_text  # text is read in photos (ocr.enabled): quoted words are looked for there
        # Image terms: limits replaced by a config reload, the decode slots kept.
        self.likes = ImageTerms(store, self.shares, limits or DecodeLimits(max_pixels), video or VideoLimits(),
                                max_decodes)
        self.texts = TextCache()
        # Text-encoder runs and index scans, concurrent queries' together, a few at a time
        # (slots; 0: half the cores): a storm of queries cannot take the cores indexing needs.
        self.work = Batcher(slots or default_slots(), budget=self._budget)
        # Whether indexing has work (the daemon's indexer): query work then keeps to its budget.
        self.indexing_busy: Callable[[], bool] = lambda: False
        self._encoders: dict[str, Encoder] = {encoder.model_id: encoder}
        self._encoders_lock = threading.Lock()

    def _budget(self) -> float | None:
        """Cores query work may use now: its slots' share while indexing has work, else no limit."""
        return SLOT_SHARE * self.work.slots if self.indexing_busy() else None

    def reconfigure(self, config: Config) -> None:
        """A reload's shares and decode limits; the text cache and the --like slots stay."""
        self.shares = self.likes.shares = Shares.of(config.shares)
        self.likes.limits, self.likes.video = decode_limits(config.indexer), video_limits(config)
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

    def query_vector(self, terms: tuple[Term, ...], access: AccessCheck, index: VectorIndex | None = None,
                     encoder: Encoder | None = None, model: str | None = None) -> np.ndarray:
        """The weighted sum of the terms' vectors, unit length (ProtocolError if they cancel out)."""
        encoder = encoder or self.encoder
        index = index or self.store.index
        total = np.zeros(encoder.dim, dtype=np.float32)
        texts = self.text_vectors([term.text for term in terms if term.text], encoder)
        for term in terms:
            vector = texts[term.text] if term.text else \
                self.likes.vector(term.image or "", term.time, access, index, model or encoder.model_id, encoder)
            total += term.weight * vector
        if not np.any(total):
            raise ProtocolError(BAD_REQUEST, "the terms cancel each other out; nothing is left to search for")
        return l2_normalise(total[None])[0]

    # ------------------------------------------------------------------ searching

    def search(self, request: Request, peer: Peer) -> tuple[list[Hit], dict]:
        """The photos and videos peer may see that answer request (the k best, or every match), and details."""
        started = time.perf_counter()
        access = AccessCheck(peer)
        understood = understand(request, self.places, self.reads_text)
        request = understood.request
        filt = Filter(request, self.shares, self._share_path(request.path_prefix), understood.place)
        details: dict = {"understood": understood.description, "interpreted": understood.interpreted}
        # Words to find in the photos' text: only the photos showing all of them are candidates.
        matches = find_text(self.store.reader(), request.text_in) if request.text_in else None
        among = np.array(sorted(matches.found), dtype=np.int64) if matches is not None else None
        both = request.pairs == "both"
        if not request.terms and matches is not None:
            hits, examined = self._by_text(request, self._collector(None, filt, access, both), matches)
            details.update(model=None, filtered_by="text", examined=examined if peer.is_root else len(hits))
        elif not request.terms:
            if not filt.active:
                raise ProtocolError(BAD_REQUEST, "nothing to search for: give a description, a photo or a filter")
            hits = self._listing(request, filt, self._collector(None, filt, access, both))
            details.update(model=None, filtered_by="catalog", examined=len(hits))
        else:
            model, index, encoder = self._model()
            query = self.query_vector(request.terms, access, index, encoder, model)
            details.update(model=model, encode_ms=round((time.perf_counter() - started) * 1000, 2))

            def collect() -> Collector:
                return self._collector(model, filt, access, both)
            if request.all:
                hits, cutoff, examined, visible = self._every_match(index, model, query, filt, collect(), request,
                                                                    among)
                if not peer.is_root:  # a statistic of photos hidden from the asker too
                    cutoff.pop("median", None)
                details.update(cutoff=cutoff, filtered_by="index" if not filt.active else "catalog")
            else:
                hits, examined, visible, route = self._best(index, model, query, filt, collect, request.k, among)
                details["filtered_by"] = route
            if matches is not None:
                hits = self._with_text(hits, matches)
                details["filtered_by"] = "text"
            # Others see only how many candidates they may see were looked at: the full count
            # would tell how many hidden photos a folder (say, bob's) holds.
            details["examined"] = examined if peer.is_root else visible
        if request.sort != "score" and (request.terms or matches is not None):  # in the order they were taken
            hits.sort(key=when, reverse=request.sort == "-date")
        details["took_ms"] = round((time.perf_counter() - started) * 1000, 2)
        return hits, details

    def _collector(self, model: str | None, filt: Filter, access: AccessCheck, both: bool) -> Collector:
        """What one search shows (grouping.py): rows the filters keep and the asker may read."""
        def readable(row: Candidate) -> str | None:
            root = self.shares.root(row.share)
            if root is None:
                return None
            path = f"{root}/{cat.decode_path(row.relpath)}"
            return path if access.peer.is_root or access.may_read(Path(path)) else None

        def shown(row: Candidate) -> str | None:
            root = self.shares.root(row.share)
            if root is None or not filt.keeps_row(row):
                return None
            path = f"{root}/{cat.decode_path(row.relpath)}"
            if not filt.keeps_path(path) or not (access.peer.is_root or access.may_read(Path(path))):
                return None
            return path
        return Collector(self.store.reader(), model, shown, readable, self.places, filt.chinese, both)

    def _best(self, index: VectorIndex, model: str, query: np.ndarray, filt: Filter, collect: Callable[[], Collector],
              k: int, among: np.ndarray | None = None) -> tuple[list[Hit], int, int, str]:
        """The k best visible results the filter keeps (among those ids, if given): (hits, examined, visible, route)."""
        if among is not None:  # the photos showing the words asked for; the other filters apply per row
            hits, examined, visible, _ = self._scan(index, query, k, collect(), among, len(among), len(among))
            return hits, examined, visible, "catalog"
        total = len(index)
        limit = POST_FILTER_LIMIT if filt.active else total
        # A filter that leaves too few photos for POST_FILTER_LIMIT candidates to hold k of
        # them (one album, a month) goes to the catalog at once: asking the index first
        # would cost a scan, and under load its wait, for nothing.
        narrow = self._index_ids(filt, model, int(total * NARROW * k / POST_FILTER_LIMIT)) if filt.active else None
        if narrow is not None:
            hits, examined, visible, _ = self._scan(index, query, k, collect(), narrow, len(narrow), len(narrow))
            return hits, examined, visible, "catalog"
        hits, examined, visible, complete = self._scan(index, query, k, collect(), None, total, limit)
        if complete:
            return hits, examined, visible, "index"
        among = self._index_ids(filt, model)
        assert among is not None  # no limit given
        hits, more, visible, _ = self._scan(index, query, k, collect(), among, len(among), len(among))
        return hits, examined + more, visible, "catalog"

    def _every_match(self, index: VectorIndex, model: str, query: np.ndarray, filt: Filter, collect: Collector,
                     request: Request, among: np.ndarray | None = None) -> tuple[list[Hit], dict, int, int]:
        """Every visible result above the query's own cut-off (cutoff.py): (hits, cut-off, examined, visible).

        The whole filtered collection is scored (one scan), its median taken
        over each file's best score (a video counts once), and the visible
        candidates examined best first down to the upper bound the cut-off can
        lie in, plus one more below it.
        """
        if among is None and filt.active:
            among = self._index_ids(filt, model)
        size = len(among) if among is not None else len(index)
        if size == 0:
            return [], Cutoff(float("inf"), 0).as_dict(), 0, 0
        scores, ids = self._search(index, query, size, among)
        found = [(s, i) for s, i in zip(scores[0].tolist(), ids[0].tolist()) if i >= 0]
        files = best_per_file(found)
        median = float(np.median([s for s, _ in files])) if files else 0.0
        hits: list[Hit] = []
        examined = 0
        chunk = 256
        while examined < len(found):
            hits += collect.accept(found[examined:examined + chunk])
            examined = min(len(found), examined + chunk)
            chunk *= 2
            if len(hits) > 1 and score_of(hits[-1]) < upper_bound(score_of(hits[0]), median):
                break
        cutoff = find_cutoff(np.array([score_of(h) for h in hits]), median)
        cap = min(self.max_all, request.k if request.k_given else self.max_all)
        matched = hits[:min(cutoff.count, cap)]
        return matched, {**cutoff.as_dict(), "median": round(median, 6), "truncated": cutoff.count > cap}, \
            examined, len(hits)

    def _listing(self, request: Request, filt: Filter, collect: Collector) -> list[Hit]:
        """The visible files a filter keeps, newest first (or oldest, with sort date): a search with no description."""
        among = self._candidates(filt)
        assert among is not None
        hits = collect.accept([(0.0, i) for i in among.tolist()])
        hits.sort(key=when, reverse=request.sort != "date")
        cap = min(self.max_all, request.k) if not request.all else min(self.max_all, request.k if request.k_given
                                                                        else self.max_all)
        return [replace(h, score=None) for h in hits[:cap]]

    def _by_text(self, request: Request, collect: Collector, matches: TextMatches) -> tuple[list[Hit], int]:
        """A search by text alone: the visible photos showing every word, best matches first, then the newest."""
        rows = self.store.reader().candidates(matches.found)
        ranked = sorted(((matches.quality(i), i) for i in rows), key=lambda m: (-m[0], -_seconds(rows[m[1]])))
        cap = self.max_all if request.all and not request.k_given else request.k
        hits: list[Hit] = []
        examined, chunk = 0, max(2 * cap, 64)
        while examined < len(ranked) and len(hits) < cap:
            hits += collect.accept(ranked[examined:examined + chunk])
            examined += chunk
        return self._with_text(hits[:cap], matches), min(examined, len(ranked))

    def _with_text(self, hits: list[Hit], matches: TextMatches) -> list[Hit]:
        """The hits, each with the recognised text around the first term."""
        return [replace(hit, text=matches.snippet(hit.id)) if hit.id in matches.found else hit for hit in hits]

    def _scan(self, index: VectorIndex, query: np.ndarray, want: int, collect: Collector, among: np.ndarray | None,
              total: int, limit: int) -> tuple[list[Hit], int, int, bool]:
        """(best hits, candidates examined, of them visible matches, whether the answer is final) for one search.

        Every index search is a full scan, so filtered searches ask for
        ``limit`` candidates at once and examine them in growing chunks only
        as far as needed; a search that must widen beyond that asks for at
        least four times as many. With ``limit`` below ``total`` it gives up
        (not final) as soon as the filters look too narrow to fill k within
        ``limit`` candidates. With exact search, a wider answer starts with
        the narrower one, so no candidate is examined twice; a video's other
        moments and a shot's other half (grouping.py) count as examined and
        make the search widen like any candidate the filters drop.
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
                hits += collect.accept(found[examined:examined + chunk])
                examined = min(len(found), examined + chunk)
                chunk *= 2
                # How many candidates k results would take at the rate filters kept them so far.
                expected = want * examined / max(len(hits), 0.5)
                if limit < total and expected > limit:
                    break
            if len(hits) >= want or (examined == len(found) and (len(found) < fetch or fetch >= total)):
                break
            if fetch >= limit or (limit < total and expected > limit):
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

    def _index_ids(self, filt: Filter, model: str, limit: int | None = None) -> np.ndarray | None:
        """The model's index ids of the rows a filter keeps (a video's moments); None if there are more than limit."""
        reader = self.store.reader()
        ids: list[int] = []
        for selection in filt.selections():
            ids += reader.index_ids(selection, model, None if limit is None else limit - len(ids))
            if limit is not None and len(ids) > limit:
                return None
        return np.array(ids, dtype=np.int64)


def _seconds(row: Candidate) -> float:
    """When a row's photo was taken, as seconds for ordering (its mtime where it does not say)."""
    return row.taken if row.taken is not None else row.mtime_ns / 1e9


def _scan_together(index: VectorIndex, batch: list[tuple[np.ndarray, int]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """One index scan for several queries, each cut to the number of candidates it asked for.

    Exact search ranks the same whatever k is asked, so the first k of a longer answer are the answer for k.
    """
    scores, ids = index.search(np.stack([query for query, _ in batch]), max(fetch for _, fetch in batch))
    return [(scores[i:i + 1, :fetch], ids[i:i + 1, :fetch]) for i, (_, fetch) in enumerate(batch)]
