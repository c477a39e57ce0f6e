"""From the index's answers to results: each file once, a video at its best moment, a RAW+JPEG shot as one.

The index answers with ids, best first: a photo's row id, or one of a
video's moments (nasclip/store/moments.py). A ``Collector`` takes them for one
search, chunk by chunk as the search widens, and keeps what the asker sees:

* **Videos**: the first (best) moment of a file stands for the file; its
  later moments are dropped. The hit says the moment's time.
* **RAW+JPEG**: a RAW whose still (JPEG or HEIC of the same stem in the same
  folder, nasclip/media/pairs.py) the asker sees, within the search's
  filters, is shown as that still, with the RAW's score and the RAW named
  as its ``original``; a still is shown with its RAW named the same way,
  and the other half of the shot is not shown again. Where the asker may
  not see the still (another folder's permissions are not a concern: a
  pair is one folder, but the still's own mode or ACL may differ), or the
  filters leave it out, the RAW is shown alone. ``both`` turns this off:
  each file is its own result, and no ``original`` is named.
* **Live Photos**: a clip (``kind`` 'clip', decided when it was indexed)
  is never a result; its still names it as ``live``, where the asker may
  read it.

Every name shown is checked for the asker on its own file: ``shown`` (the
filters and read access) decides what is a result, ``readable`` (read
access alone) what a result may name.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Callable

from ..media.formats import RAW_EXTENSIONS, STILL_EXTENSIONS, extension
from ..media.pairs import LIVE_CLIP_EXTENSIONS
from ..meta.places import Places
from ..store.moments import CLIP, split_id
from ..store.reader import SEARCHABLE, Candidate, CatalogReader, Partner
from .results import Hit, hit_from

Check = Callable[[Candidate], "str | None"]  # the path to show a row at, or None when it may not be shown


def best_per_file(found: list[tuple[float, int]]) -> list[tuple[float, int]]:
    """The index's (score, id) answers with each file's first (best) one only, as (score, file id)."""
    seen: set[int] = set()
    kept = []
    for score, faiss_id in found:
        file_id = split_id(faiss_id)[0]
        if file_id not in seen:
            seen.add(file_id)
            kept.append((score, file_id))
    return kept


class Collector:
    """One search's results, taken from candidates best first (module doc); not shared between searches."""

    def __init__(self, reader: CatalogReader, model: str | None, shown: Check, readable: Check, places: Places,
                 chinese: bool = False, both: bool = False) -> None:
        self.reader = reader
        self.model = model  # whose moments the ids name (None: ids are row ids, found by filters alone)
        self.shown = shown
        self.readable = readable
        self.places = places
        self.chinese = chinese
        self.both = both
        self.seen: set[int] = set()  # files looked at (shown, or not to be shown)

    def accept(self, candidates: list[tuple[float, int]]) -> list[Hit]:
        """The new results among these (score, index id) candidates, in their order."""
        wanted: list[tuple[float, int, int | None]] = []
        chunk: set[int] = set()
        for score, faiss_id in candidates:
            file_id, idx = split_id(faiss_id)
            if file_id not in self.seen and file_id not in chunk:
                chunk.add(file_id)
                wanted.append((score, file_id, idx))
        if not wanted:
            return []
        rows = self.reader.candidates(f for _, f, _ in wanted)
        partners = self._partners([rows[f] for _, f, _ in wanted if f in rows])
        moments = [(f, i) for _, f, i in wanted if i is not None]
        seconds = self.reader.moment_seconds(self.model, moments) if moments and self.model else {}
        hits = []
        for score, file_id, idx in wanted:
            if file_id in self.seen:
                continue  # shown meanwhile, as the other half of its shot
            self.seen.add(file_id)
            row = rows.get(file_id)
            # A pending row is a changed file whose old vectors still answer until it is encoded again.
            if row is None or row.state not in SEARCHABLE or row.kind == CLIP:
                continue
            hit = self._hit(row, score, partners)
            if hit is not None:
                hits.append(replace(hit, time=seconds.get((file_id, idx))) if idx is not None else hit)
        return hits

    def _hit(self, row: Candidate, score: float, partners: dict[int, list[Candidate]]) -> Hit | None:
        """The result a row gives (itself, or the still of its shot), or None if nothing of it may be shown."""
        mine = partners.get(row.id, [])
        if not self.both and extension(row.relpath) in RAW_EXTENSIONS:
            for still in (p for p in mine if extension(p.relpath) in STILL_EXTENSIONS):
                path = self.shown(still) if still.state in SEARCHABLE and still.kind != CLIP else None
                if path is not None and still.id not in self.seen:
                    self.seen.add(still.id)
                    return self._annotated(still, path, score, partners.get(still.id, []))
                if path is not None:
                    return None  # the shot was shown already, as its still
        path = self.shown(row)
        if path is None:
            return None
        return self._annotated(row, path, score, mine)

    def _annotated(self, row: Candidate, path: str, score: float, mine: list[Candidate]) -> Hit:
        """The hit of a shown row, naming its RAW original and its Live Photo clip where the asker may read them."""
        hit = hit_from(row, path, score, self.places, self.chinese)
        if extension(row.relpath) not in STILL_EXTENSIONS:
            return hit
        if not self.both:
            for raw in (p for p in mine if extension(p.relpath) in RAW_EXTENSIONS):
                self.seen.add(raw.id)  # the shot is this result: its RAW is not shown again
                named = self.readable(raw)
                if named is not None and hit.original is None:
                    hit = replace(hit, original=named)
        for clip in (p for p in mine if p.kind == CLIP and extension(p.relpath) in LIVE_CLIP_EXTENSIONS):
            named = self.readable(clip)
            if named is not None:
                return replace(hit, live=named)
        return hit

    def _partners(self, rows: list[Candidate]) -> dict[int, list[Candidate]]:
        """{row id: the other files of its shot} for RAWs and stills among rows (same share, folder and stem)."""
        pairable = [r for r in rows if r.stem is not None
                    and extension(r.relpath) in RAW_EXTENSIONS + STILL_EXTENSIONS]
        found: dict[int, list[Candidate]] = {}
        if not pairable:
            return found
        by_share: dict[str, list[Candidate]] = {}
        for row in pairable:
            by_share.setdefault(row.share, []).append(row)
        matches: dict[int, list[Partner]] = {}
        for share, members in by_share.items():
            stems = self.reader.partners(share, (r.stem for r in members if r.stem))
            for row in members:
                folder = os.path.dirname(row.relpath)
                matches[row.id] = [p for p in stems.get(row.stem or b"", []) if p.id != row.id
                                   and os.path.dirname(p.relpath) == folder]
        others = self.reader.candidates({p.id for ps in matches.values() for p in ps})
        for row_id, ps in matches.items():
            found[row_id] = sorted((others[p.id] for p in ps if p.id in others), key=lambda c: c.relpath)
        for row_id, mine in list(found.items()):  # a still shown for a RAW names the RAW and the clip too
            for other in mine:
                if other.id not in found and extension(other.relpath) in STILL_EXTENSIONS:
                    found[other.id] = [r for r in mine if r.id != other.id] + [r for r in rows if r.id == row_id]
        return found

