"""The catalog: one SQLite database (WAL) with one row per file (photo, RAW, video).

A photo's row id is its id in every vector index; a video's moments have ids
computed from it (moments.py). ``state`` says what the indexer owes the file:
``pending`` (new or changed), ``indexed`` (has its vectors for the configured
model), ``failed`` (cannot be decoded; retried when the file changes) or
``gone`` (deleted; its vectors are kept a while so that a move or copy found
later reuses them). ``vectors`` records which model's index holds a file's
vectors, ``moments`` the times of a video's, and ``vector_log`` holds vectors
not yet in a checkpoint of their index, so nothing encoded is lost to a crash.
The schema and its migration ladder are in schema.py.

Paths are stored below their share root as bytes, because file names on a
NAS need not be UTF-8. This module only speaks SQL; ``Store`` is the one
writer that keeps it and the vector indexes in step.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from ..errors import CatalogDamaged, DiskFull, StoreError, is_corrupt, is_disk_full
from ..media.pairs import stem
from . import moments
from .schema import MIGRATIONS, SCHEMA_VERSION  # noqa: F401  (SCHEMA_VERSION: also imported from here)

if TYPE_CHECKING:
    from .space import SpaceMonitor

PENDING, INDEXED, FAILED, GONE = "pending", "indexed", "failed", "gone"


@dataclass(frozen=True)
class FileRow:
    """One catalog row."""

    id: int
    share: str
    relpath: str
    size: int
    mtime_ns: int
    fingerprint: str | None
    state: str
    error: str | None
    attempts: int


def encode_path(relpath: str) -> bytes:
    """Store form of a path below a share root (bytes, lossless for any file name)."""
    return os.fsencode(relpath)


def decode_path(raw: bytes) -> str:
    """Python form of a stored path (surrogate-escaped where not UTF-8)."""
    return os.fsdecode(raw)


def stem_of(relpath: str) -> bytes:
    """What a file shares with the other files of its shot (RAW+JPEG, Live Photo): its name's stem, case folded,
    as stored (bytes, as paths are: a name need not be UTF-8)."""
    return os.fsencode(stem(os.path.basename(relpath)))


def prefix_range(prefix: str) -> tuple[bytes, bytes]:
    """Bounds [low, high) of every relpath strictly below folder prefix."""
    low = encode_path(prefix.rstrip("/") + "/")
    return low, low[:-1] + b"0"  # '0' sorts right after '/'


ROW_COLUMNS = "id, share, relpath, size, mtime_ns, fingerprint, state, error, attempts"
# What the photo says of itself (schema 3) and where that is (schema 4), in the order
# Store._write_meta writes them.
META_COLUMNS = "taken, taken_offset, taken_source, camera_make, camera_model, lat, lon, " \
               "place_city, place_region, place_country"


def row_from(values: tuple) -> FileRow:
    return FileRow(values[0], values[1], decode_path(values[2]), *values[3:])


def damaged_message(path: Path, detail: str) -> str:
    """What to tell the owner of a damaged catalog: which file, and how to recover."""
    return (f"{path}: the catalog is damaged ({detail}). With nasclipd stopped (systemctl stop nasclip), run "
            "`nasclip catalog rebuild`: it keeps every readable row and vector and sets the damaged file "
            "aside (docs/operations.md)")


def translate(path: Path, exc: sqlite3.Error) -> Exception:
    """A full disk or a damaged file as nasclip's own errors; anything else as it was."""
    if is_disk_full(exc):
        return DiskFull(f"cannot write the catalog {path}: no space left on the file system",
                        path=str(path.parent))
    if is_corrupt(exc):
        return CatalogDamaged(damaged_message(path, str(exc)))
    return exc


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection with nasclip's pragmas; read-only ones never take the write lock."""
    try:
        if readonly:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=30)
        else:
            conn = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives process crashes; after a power cut the
            # last transactions may be lost, but the file stays consistent, and
            # lost work is simply redone.
            conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.Error as exc:
        error = translate(path, exc)
        raise error if isinstance(error, StoreError) else StoreError(f"{path}: cannot open the catalog: {exc}") \
            from None
    return conn


def integrity_problems(conn: sqlite3.Connection) -> list[str]:
    """What SQLite's quick_check finds wrong (at most 5 problems); [] for a sound file.

    quick_check reads every page once and checks the b-trees, but skips
    comparing index contents with their tables, which makes integrity_check
    several times slower; it takes about a second per 100 MB on a NAS CPU.
    """
    try:
        problems = [line for (text,) in conn.execute("PRAGMA quick_check(100)") for line in text.splitlines()
                    if not line.startswith("*** in database")]
        if problems == ["ok"]:
            return []
        # SQLite 3.40's quick_check misreads WITHOUT ROWID tables whose key order differs
        # from their columns (vectors, moments) as NULLs; integrity_check of that table is right.
        for table in ("vectors", "moments"):
            false = [p for p in problems if p.startswith(f"NULL value in {table}.")]
            if false and [r[0] for r in conn.execute(f"PRAGMA integrity_check({table})")] == ["ok"]:
                problems = [p for p in problems if p not in false]
    except sqlite3.DatabaseError as exc:
        problems = [str(exc)]
    return problems[:5]


class Catalog:
    """SQL over the catalog database. Not thread-safe: owned by the Store's writer."""

    def __init__(self, path: Path, space: "SpaceMonitor | None" = None) -> None:
        self.path = path
        self.space = space  # told when a write fails for want of space, and when one succeeds again
        self.conn = connect(path)
        # Counts committed write transactions: readers cache what they derive until it moves.
        self.commits = 0
        self._migrate()

    def check(self) -> None:
        """CatalogDamaged unless the file passes SQLite's quick_check (see integrity_problems)."""
        problems = integrity_problems(self.conn)
        if problems:
            raise CatalogDamaged(damaged_message(self.path, "; ".join(problems)[:300]))

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: catalog schema {version} is newer than this nasclip "
                             f"understands ({SCHEMA_VERSION}); upgrade nasclip")
        for step in range(version, SCHEMA_VERSION):
            # One script, one transaction: the schema and its version change together.
            try:
                self.conn.executescript(
                    f"BEGIN IMMEDIATE;\n{MIGRATIONS[step]}\nPRAGMA user_version={step + 1};\nCOMMIT;")
            except sqlite3.Error as exc:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                error = translate(self.path, exc)
                if isinstance(error, StoreError):
                    raise error from None
                raise StoreError(f"{self.path}: migrating the catalog to version {step + 1} failed: {exc}") from None

    def fill_stems(self, batch: int = 10_000) -> int:
        """Give rows of schema 5 their stem (schema 6), a batch per transaction; returns how many."""
        filled = 0
        while True:
            rows = self.conn.execute("SELECT id, relpath FROM files INDEXED BY files_unstemmed WHERE stem IS NULL "
                                     "LIMIT ?", (batch,)).fetchall()
            if not rows:
                return filled
            with self.transaction() as tx:
                tx.executemany("UPDATE files SET stem=? WHERE id=?", [(stem_of(decode_path(raw)), id_)
                                                                      for id_, raw in rows])
            filled += len(rows)

    def close(self) -> None:
        self.conn.close()

    # ------------------------------------------------------------------ transactions

    def transaction(self) -> "_Transaction":
        """Context manager: BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error)."""
        return _Transaction(self)

    # ------------------------------------------------------------------ meta

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        # An unchanged value writes nothing: start-up must not need free space.
        self.conn.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) "
                          "DO UPDATE SET value=excluded.value WHERE value IS NOT excluded.value", (key, value))

    def add_counter(self, key: str, amount: int) -> None:
        self.conn.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) "
                          "DO UPDATE SET value=CAST(value AS INTEGER) + ?", (key, str(amount), amount))

    # ------------------------------------------------------------------ rows

    def get(self, share: str, relpath: str) -> FileRow | None:
        values = self.conn.execute(f"SELECT {ROW_COLUMNS} FROM files WHERE share=? AND relpath=?",
                                   (share, encode_path(relpath))).fetchone()
        return row_from(values) if values else None

    def see(self, share: str, relpath: str, size: int, mtime_ns: int, now: float) -> str:
        """Record that the file exists with this size and mtime.

        Returns what changed: 'new', 'changed', 'returned' (was gone, same
        size and mtime) or 'same'.
        """
        raw = encode_path(relpath)
        row = self.conn.execute("SELECT id, size, mtime_ns, state FROM files WHERE share=? AND relpath=?",
                                (share, raw)).fetchone()
        if row is None:
            self.conn.execute(
                "INSERT INTO files(share, relpath, size, mtime_ns, state, added, updated, stem) "
                "VALUES (?, ?, ?, ?, 'pending', ?, ?, ?)", (share, raw, size, mtime_ns, now, now, stem_of(relpath)))
            return "new"
        id_, old_size, old_mtime, state = row
        if old_size == size and old_mtime == mtime_ns:
            if state == GONE:
                # Back at the same place unchanged (e.g. a share that was away):
                # pending, and the indexer will find its own vector by fingerprint.
                self.conn.execute("UPDATE files SET state='pending', gone_at=NULL, updated=? WHERE id=?",
                                  (now, id_))
                return "returned"
            return "same"
        # A changed file is re-encoded whatever its fingerprint says: an edit in place may keep
        # the size and the bytes a fingerprint looks at. (A copy elsewhere still reuses vectors.)
        self.conn.execute(
            "UPDATE files SET size=?, mtime_ns=?, state='pending', fingerprint=NULL, error=NULL, attempts=0, "
            "retry_at=NULL, gone_at=NULL, updated=? WHERE id=?", (size, mtime_ns, now, id_))
        return "changed"

    def mark_gone(self, share: str, relpath: str, now: float) -> int:
        """A file was deleted; returns 1 if a live row changed."""
        return self.conn.execute(
            "UPDATE files SET state='gone', gone_at=?, updated=? WHERE share=? AND relpath=? AND state!='gone'",
            (now, now, share, encode_path(relpath))).rowcount

    def mark_gone_below(self, share: str, folder: str, now: float) -> int:
        """A folder was deleted (or moved out): every live row below it is gone."""
        low, high = prefix_range(folder)
        if not folder.strip("/"):
            return self.conn.execute("UPDATE files SET state='gone', gone_at=?, updated=? "
                                     "WHERE share=? AND state!='gone'", (now, now, share)).rowcount
        return self.conn.execute(
            "UPDATE files SET state='gone', gone_at=?, updated=? "
            "WHERE share=? AND relpath>=? AND relpath<? AND state!='gone'", (now, now, share, low, high)).rowcount

    def move(self, share: str, old: str, new_share: str, new: str, now: float) -> list[int]:
        """Rename one row in place (its vectors stay valid); returns the index ids of rows it displaced.

        Nothing happens when no row has the old path: the file was not known
        yet, or a folder move already carried it along.
        """
        if (share, old) == (new_share, new) or self.get(share, old) is None:
            return []
        displaced = self._displace(new_share, [encode_path(new)])
        self.conn.execute("UPDATE files SET share=?, relpath=?, stem=?, updated=? WHERE share=? AND relpath=?",
                          (new_share, encode_path(new), stem_of(new), now, share, encode_path(old)))
        return displaced

    def move_below(self, share: str, old_folder: str, new_share: str, new_folder: str, now: float) -> list[int]:
        """Rename every row below old_folder to below new_folder (names, so stems, unchanged); returns the index
        ids of the rows it displaced."""
        if (share, old_folder.strip("/")) == (new_share, new_folder.strip("/")):
            return []
        low, high = prefix_range(old_folder)
        rows = self.conn.execute("SELECT id, relpath FROM files WHERE share=? AND relpath>=? AND relpath<?",
                                 (share, low, high)).fetchall()
        new_low = prefix_range(new_folder)[0]
        renamed = [(id_, new_low + raw[len(low):]) for id_, raw in rows]
        displaced = self._displace(new_share, [raw for _, raw in renamed])
        self.conn.executemany("UPDATE files SET share=?, relpath=?, updated=? WHERE id=?",
                              [(new_share, raw, now, id_) for id_, raw in renamed])
        return displaced

    def _displace(self, share: str, raws: list[bytes]) -> list[int]:
        """Delete rows occupying these paths (a move overwrote them); returns their index ids."""
        ids = []
        for raw in raws:
            row = self.conn.execute("SELECT id FROM files WHERE share=? AND relpath=?", (share, raw)).fetchone()
            if row:
                ids.append(row[0])
        return self.delete(ids)

    def delete(self, ids: Iterable[int]) -> list[int]:
        """Forget rows entirely (their vectors and moments rows go with them); returns the ids their vectors
        have in the indexes (a photo's row id, a video's moments), for the caller to remove."""
        ids = list(ids)
        held = moments.index_ids(self.conn, ids)
        self.conn.executemany("DELETE FROM files WHERE id=?", [(i,) for i in ids])
        return held

    def has_vector(self, id_: int, model_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM vectors WHERE model_id=? AND file_id=?",
                                 (model_id, id_)).fetchone() is not None

    # ------------------------------------------------------------------ vector log

    def models(self) -> set[str]:
        """Every model with a vector recorded or logged."""
        return ({r[0] for r in self.conn.execute("SELECT DISTINCT model_id FROM vectors")}
                | {r[0] for r in self.conn.execute("SELECT DISTINCT model_id FROM vector_log")})

    def logged_vectors(self, model_id: str, after: int = 0) -> dict[int, bytes]:
        """The latest vector per index id (a photo's row, a video's moment) of a model logged after seq `after`
        (what a checkpoint already covers)."""
        logged: dict[int, bytes] = {}
        for file_id, blob in self.conn.execute(
                "SELECT file_id, vector FROM vector_log WHERE model_id=? AND seq>? ORDER BY seq", (model_id, after)):
            logged[file_id] = blob
        return logged

    def log_high(self) -> int:
        """The highest vector-log seq ever handed out (AUTOINCREMENT never reuses one), 0 if none."""
        row = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name='vector_log'").fetchone()
        return int(row[0]) if row else 0

    def trim_log(self, model_id: str, up_to: int) -> None:
        """Forget logged vectors a checkpoint on disk holds."""
        self.conn.execute("DELETE FROM vector_log WHERE model_id=? AND seq<=?", (model_id, up_to))


class _Transaction:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.conn = catalog.conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        self._changes = self.conn.total_changes
        return self.conn

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.Error as error:  # SQLITE_FULL at commit leaves the transaction open
                self._fail(error)
                raise
            self.catalog.commits += 1
            space = self.catalog.space
            if space is not None and self.conn.total_changes != self._changes:
                space.clear("catalog")  # only a write that wrote something shows there is space
            return
        if isinstance(exc, sqlite3.Error):
            self._fail(exc)
        elif self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def _fail(self, error: sqlite3.Error) -> None:
        """Roll back and raise the error as DiskFull or CatalogDamaged where it is one (else return)."""
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite rolled back itself
        translated = translate(self.catalog.path, error)
        if isinstance(translated, DiskFull) and self.catalog.space is not None:
            self.catalog.space.full("catalog", translated)
        if translated is not error:
            raise translated from error


def now() -> float:
    """Wall-clock seconds, the catalog's timestamps."""
    return time.time()
