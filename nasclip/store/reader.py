"""The catalog's read side: every query the rest of nasclip asks, by name.

Searches, the scanner, status and the model switch read the catalog through
a ``CatalogReader`` (one read-only connection per thread, from
``Store.reader()``), never through SQL of their own. Keeping every query here
means a schema change is one package's business, and each query can be read
beside the index that serves it (catalog.py).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Iterable

from ..meta.exif import Position
from . import moments
from .catalog import FAILED, GONE, INDEXED, PENDING, ROW_COLUMNS, FileRow, row_from

# SQLite's default limit on bound parameters is 999; stay under it.
_CHUNK = 900
# A state that still answers searches: a pending row is a changed photo whose
# old vector answers until it is re-encoded.
SEARCHABLE = (INDEXED, PENDING)
_SEARCHABLE_SQL = f"state IN ('{INDEXED}', '{PENDING}')"

@dataclass(frozen=True)
class Candidate:
    """What a search needs of a row to filter it and show it."""

    id: int
    share: str
    relpath: bytes  # as stored (encode_path)
    size: int
    mtime_ns: int
    state: str
    taken: float | None = None  # capture time on the photo's wall clock (catalog.py, schema 3)
    taken_offset: int | None = None
    taken_source: str | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    lat: float | None = None
    lon: float | None = None
    place_city: int | None = None  # where (schema 4): GeoNames city id, admin1 code, country code
    place_region: str | None = None
    place_country: str | None = None
    kind: str | None = None  # what was indexed (schema 6): photo, raw, video, clip; None: a photo of schema 5
    duration: float | None = None  # a video's length in seconds
    stem: bytes | None = None  # shared with the other files of its shot (catalog.stem_of)


# The columns of a Candidate, in its order.
_CANDIDATE_COLUMNS = ("id, share, relpath, size, mtime_ns, state, taken, taken_offset, taken_source, camera_make, "
                      "camera_model, lat, lon, place_city, place_region, place_country, kind, duration, stem")


@dataclass(frozen=True)
class Partner:
    """A file with the same stem in the same share as another (the caller checks the folder)."""

    id: int
    relpath: bytes
    state: str
    kind: str | None


@dataclass(frozen=True)
class PlaceFilter:
    """Photos in one place: a city (by GeoNames id), a region (country + admin1 code) or a whole country."""

    country: str
    region: str | None = None
    city: int | None = None

    def keeps(self, city: int | None, region: str | None, country: str | None) -> bool:
        if self.city is not None:
            return city == self.city
        return country == self.country and (self.region is None or region == self.region)


@dataclass(frozen=True)
class Selection:
    """Rows of one share, optionally below a folder (a stored-path range) and taken within dates.

    The dates are instants (after_ns, before_ns) and the same instants on the
    NAS's wall clock (after_wall, before_wall, seconds as if UTC): a photo's
    capture time is compared on its own wall clock (catalog.py, schema 3), a
    photo whose metadata is not read yet by its mtime.
    """

    share: str
    relpath_range: tuple[bytes, bytes] | None = None
    after_ns: int | None = None
    before_ns: int | None = None
    after_wall: float | None = None
    before_wall: float | None = None
    place: PlaceFilter | None = None


class CatalogReader:
    """Named read-only queries on one connection (not shared between threads)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    # ------------------------------------------------------------------ counts

    def counts_by_state(self) -> dict[str, int]:
        counts = {PENDING: 0, INDEXED: 0, FAILED: 0, GONE: 0}
        for state, n in self.conn.execute("SELECT state, COUNT(*) FROM files GROUP BY state"):
            counts[state] = n
        return counts

    def live_in_share(self, share: str) -> int:
        """Rows of a share that are not gone."""
        return int(self.conn.execute(f"SELECT COUNT(*) FROM files WHERE share=? AND state!='{GONE}'",
                                     (share,)).fetchone()[0])

    def searchable_count(self) -> int:
        return int(self.conn.execute(f"SELECT COUNT(*) FROM files WHERE {_SEARCHABLE_SQL}").fetchone()[0])

    # ------------------------------------------------------------------ models

    def coverage(self) -> dict[str, int]:
        """Searchable photos with a vector, per model."""
        return {model: n for model, n in self.conn.execute(
            "SELECT v.model_id, COUNT(*) FROM vectors v JOIN files f ON f.id=v.file_id "
            f"WHERE f.{_SEARCHABLE_SQL} GROUP BY v.model_id")}

    def any_without_vector(self, model_id: str) -> bool:
        """Whether some searchable photo has no vector of this model yet."""
        return self.conn.execute(
            f"SELECT 1 FROM files WHERE {_SEARCHABLE_SQL} AND id NOT IN "
            "(SELECT file_id FROM vectors WHERE model_id=?) LIMIT 1", (model_id,)).fetchone() is not None

    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    # ------------------------------------------------------------------ files

    def live_rows(self, share: str, relpath_range: tuple[bytes, bytes] | None = None
                  ) -> dict[bytes, tuple[int, int]]:
        """(size, mtime_ns) of a share's rows that are not gone, keyed by stored path."""
        sql = f"SELECT relpath, size, mtime_ns FROM files WHERE share=? AND state!='{GONE}'"
        args: tuple = (share,)
        if relpath_range is not None:
            sql += " AND relpath>=? AND relpath<?"
            args += relpath_range
        return {raw: (size, mtime_ns) for raw, size, mtime_ns in self.conn.execute(sql, args)}

    def indexed_id(self, share: str, relpath: bytes, size: int, mtime_ns: int) -> int | None:
        """The id of an indexed row for exactly this file (same size and mtime), if there is one."""
        row = self.conn.execute(
            f"SELECT id FROM files WHERE share=? AND relpath=? AND state='{INDEXED}' AND size=? AND mtime_ns=?",
            (share, relpath, size, mtime_ns)).fetchone()
        return int(row[0]) if row is not None else None

    def searchable_ids(self, selection: Selection, limit: int | None = None) -> list[int]:
        """Ids of the searchable rows a selection keeps (at most limit + 1 of them, if given)."""
        where, args = _where(selection)
        if limit is not None:
            where += " LIMIT ?"
            args += (limit + 1,)
        return [r[0] for r in self.conn.execute(f"SELECT id FROM files WHERE {where}", args)]

    def index_ids(self, selection: Selection, model_id: str, limit: int | None = None) -> list[int]:
        """The ids in the model's index of the searchable rows a selection keeps: a photo's row id, a video's
        moments (moments.py); at most limit + 1 of them, if given. Videos are few: they are looked up apart."""
        where, args = _where(selection)
        cap = f" LIMIT {int(limit) + 1}" if limit is not None else ""
        ids = [r[0] for r in self.conn.execute(
            f"SELECT id FROM files WHERE {where} AND kind IS NOT 'video'{cap}", args)]
        if limit is not None and len(ids) > limit:
            return ids
        video, video_args = _where(selection, "f.")
        ids += [moments.moment_id(f, i) for f, i in self.conn.execute(
            f"SELECT f.id, m.idx FROM files f INDEXED BY files_videos JOIN moments m ON m.model_id = ? "
            f"AND m.file_id = f.id WHERE f.kind = 'video' AND {video}{cap}", (model_id, *video_args))]
        return ids

    def candidates(self, ids: Iterable[int]) -> dict[int, Candidate]:
        """The rows with these ids (missing ones are left out)."""
        id_list = list(ids)
        rows: dict[int, Candidate] = {}
        for start in range(0, len(id_list), _CHUNK):
            chunk = id_list[start:start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for row in self.conn.execute(f"SELECT {_CANDIDATE_COLUMNS} FROM files WHERE id IN ({marks})", chunk):
                rows[row[0]] = Candidate(*row)
        return rows

    def searchable(self, file_id: int) -> Candidate | None:
        """The row with this id if it answers searches (indexed, or pending with its old vector); else None."""
        row = self.conn.execute(f"SELECT {_CANDIDATE_COLUMNS} FROM files WHERE id=? AND {_SEARCHABLE_SQL}",
                                (file_id,)).fetchone()
        return Candidate(*row) if row is not None else None

    def unread_meta(self, limit: int) -> list[FileRow]:
        """Indexed rows whose photo's metadata was never read (indexed before schema 3), lowest ids first."""
        rows = self.conn.execute(
            f"SELECT {ROW_COLUMNS} FROM files INDEXED BY files_unread_meta WHERE taken_source IS NULL "
            f"AND state='{INDEXED}' ORDER BY id LIMIT ?", (limit,)).fetchall()
        return [row_from(r) for r in rows]

    def unplaced(self, limit: int) -> list[tuple[int, Position]]:
        """Rows with a GPS position whose place was never looked up (schema 3 rows), lowest ids first."""
        rows = self.conn.execute("SELECT id, lat, lon FROM files INDEXED BY files_unplaced WHERE lat IS NOT NULL "
                                 "AND place_country IS NULL ORDER BY id LIMIT ?", (limit,)).fetchall()
        return [(row_id, Position(lat, lon)) for row_id, lat, lon in rows]

    def metadata_owed(self) -> int:
        """Indexed photos whose metadata or place is still to be read (the background backfill's work)."""
        unread = self.conn.execute(f"SELECT COUNT(*) FROM files INDEXED BY files_unread_meta WHERE "
                                   f"taken_source IS NULL AND state='{INDEXED}'").fetchone()[0]
        unplaced = self.conn.execute("SELECT COUNT(*) FROM files INDEXED BY files_unplaced WHERE lat IS NOT NULL "
                                     "AND place_country IS NULL").fetchone()[0]
        return int(unread) + int(unplaced)

    def due(self, limit: int, skip: set[int], now: float) -> list[FileRow]:
        """Pending rows to index: new photos newest first, then retries that are due (see Store.pending)."""
        wanted = limit + len(skip)
        rows = self.conn.execute(
            f"SELECT {ROW_COLUMNS} FROM files INDEXED BY files_new WHERE state='{PENDING}' AND retry_at IS NULL "
            "ORDER BY mtime_ns DESC LIMIT ?", (wanted,)).fetchall()
        if len(rows) < wanted:
            rows += self.conn.execute(
                f"SELECT {ROW_COLUMNS} FROM files INDEXED BY files_retry WHERE state='{PENDING}' "
                "AND retry_at IS NOT NULL AND retry_at<=? ORDER BY retry_at LIMIT ?",
                (now, wanted - len(rows))).fetchall()
        return [r for r in map(row_from, rows) if r.id not in skip][:limit]

    def donor(self, model_id: str, file_id: int, fingerprint: str) -> int | None:
        """The row itself when its fingerprint and vector still hold, else a twin with the same fingerprint.

        A Live Photo's clip has no vector to lend (schema 6): it is neither its own donor nor a twin's.
        """
        if self.conn.execute("SELECT 1 FROM files f JOIN vectors v ON v.file_id=f.id AND v.model_id=? "
                             f"WHERE f.id=? AND f.fingerprint=? AND f.kind IS NOT '{moments.CLIP}'",
                             (model_id, file_id, fingerprint)).fetchone():
            return file_id
        found = self.conn.execute(
            "SELECT f.id FROM files f JOIN vectors v ON v.file_id=f.id AND v.model_id=? "
            f"WHERE f.fingerprint=? AND f.id!=? AND f.kind IS NOT '{moments.CLIP}' LIMIT 1",
            (model_id, fingerprint, file_id)).fetchone()
        return int(found[0]) if found else None

    # ------------------------------------------------------------------ text in photos (schema 4)

    def text_due(self, limit: int) -> list[FileRow]:
        """Indexed rows whose text waits to be read, highest ids (the newest photos) first."""
        columns = ", ".join(f"f.{c.strip()}" for c in ROW_COLUMNS.split(","))
        rows = self.conn.execute(
            f"SELECT {columns} FROM ocr o INDEXED BY ocr_pending JOIN files f ON f.id = o.file_id "
            f"WHERE o.state = 'pending' AND f.state = '{INDEXED}' ORDER BY o.file_id DESC LIMIT ?", (limit,)).fetchall()
        return [row_from(r) for r in rows]

    def text_donor(self, file_id: int, fingerprint: str) -> int | None:
        """Another row whose photo had the same content when its text was read (or failed)."""
        found = self.conn.execute("SELECT file_id FROM ocr WHERE fingerprint = ? AND state != 'pending' "
                                  "AND file_id != ? LIMIT 1", (fingerprint, file_id)).fetchone()
        return int(found[0]) if found else None

    def text_counts(self) -> dict[str, int]:
        """Rows by text state. Counts the ocr_state index alone: deleted photos not yet purged are in it."""
        counts = {"pending": 0, "done": 0, "failed": 0}
        for state, n in self.conn.execute("SELECT state, COUNT(*) FROM ocr GROUP BY state"):
            counts[state] = n
        return counts

    def text_matches(self, terms: list[str], limit: int) -> list[tuple[int, str, str]]:
        """(id, folded text, recognised lines) of photos whose folded text holds every folded term.

        Terms of 3+ characters go to the trigram index as quoted phrases
        (substrings in any script); shorter ones are checked with instr() on
        the indexed text, which alone (no long term to narrow it) reads it all.
        """
        where, args = [], []
        long = [t for t in terms if len(t) >= 3]
        if long:
            where.append("ocr_text MATCH ?")
            args.append(" AND ".join('"' + t.replace('"', '""') + '"' for t in long))
        for term in terms:
            if len(term) < 3:
                where.append("instr(t.folded, ?) > 0")
                args.append(term)
        if not where:
            return []
        return [(int(i), folded, text or "") for i, folded, text in self.conn.execute(
            f"SELECT t.rowid, t.folded, o.text FROM ocr_text t JOIN ocr o ON o.file_id = t.rowid "
            f"WHERE {' AND '.join(where)} LIMIT ?", (*args, limit))]

    # ------------------------------------------------------------------ videos and pairs (schema 6)

    def moment_seconds(self, model_id: str, found: list[tuple[int, int]]) -> dict[tuple[int, int], float]:
        """{(file id, moment index): seconds} of these moments of the model's index."""
        return moments.seconds_of(self.conn, model_id, found)

    def moment_times(self, model_id: str, file_id: int) -> list[float]:
        """The seconds of a video's moments in the model's index, in index order ([] for a photo)."""
        return moments.moment_times(self.conn, model_id, file_id)

    def partners(self, share: str, stems: Iterable[bytes]) -> dict[bytes, list[Partner]]:
        """{stem: rows of the share with that stem}, gone ones left out (the caller checks the folders)."""
        wanted = sorted(set(stems))
        found: dict[bytes, list[Partner]] = {}
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start:start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for stem, id_, relpath, state, kind in self.conn.execute(
                    f"SELECT stem, id, relpath, state, kind FROM files WHERE share=? AND stem IN ({marks}) "
                    f"AND state!='{GONE}'", (share, *chunk)):
                found.setdefault(stem, []).append(Partner(id_, relpath, state, kind))
        return found

    def file_id(self, share: str, relpath: bytes) -> int | None:
        """The id of the row at this stored path, whatever its state."""
        row = self.conn.execute("SELECT id FROM files WHERE share=? AND relpath=?", (share, relpath)).fetchone()
        return int(row[0]) if row is not None else None

    def recent_failures(self, limit: int) -> list[tuple[str, bytes, str]]:
        """(share, stored path, reason) of the photos that failed most recently."""
        return [(s, p, e) for s, p, e in self.conn.execute(
            f"SELECT share, relpath, error FROM files WHERE state='{FAILED}' ORDER BY updated DESC LIMIT ?",
            (limit,))]


def _where(selection: Selection, prefix: str = "") -> tuple[str, tuple]:
    """The WHERE clause (and its arguments) of the searchable rows a selection keeps; prefix: the files alias."""
    f = prefix
    where = f"{f}share=? AND {f}{_SEARCHABLE_SQL}"
    args: tuple = (selection.share,)
    if selection.relpath_range is not None:
        where += f" AND {f}relpath>=? AND {f}relpath<?"
        args += selection.relpath_range
    if selection.after_ns is not None:
        where += f" AND ({f}taken>=? OR ({f}taken IS NULL AND {f}mtime_ns>=?))"
        args += (selection.after_wall, selection.after_ns)
    if selection.before_ns is not None:
        where += f" AND ({f}taken<? OR ({f}taken IS NULL AND {f}mtime_ns<?))"
        args += (selection.before_wall, selection.before_ns)
    place = selection.place
    if place is not None:
        if place.city is not None:
            where += f" AND {f}place_city=?"
            args += (place.city,)
        else:
            where += f" AND {f}place_country=?" + (f" AND {f}place_region=?" if place.region is not None else "")
            args += (place.country,) + ((place.region,) if place.region is not None else ())
    return where, args
