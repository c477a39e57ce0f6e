"""The catalog: one SQLite database (WAL) with one row per photo file.

A row's id is the photo's id in every vector index. ``state`` says what the
indexer owes the file: ``pending`` (new or changed), ``indexed`` (has a vector
for the configured model), ``failed`` (cannot be decoded; retried when the
file changes) or ``gone`` (deleted; its vectors are kept a while so that a
move or copy found later reuses them). ``vectors`` records which model's
index holds a vector for which row, and ``vector_log`` holds vectors not yet
in a checkpoint of their index, so nothing encoded is lost to a crash.

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

if TYPE_CHECKING:
    from .space import SpaceMonitor

PENDING, INDEXED, FAILED, GONE = "pending", "indexed", "failed", "gone"

# The migration ladder: MIGRATIONS[n] takes a database from version n to n+1.
# Never edit a step that has shipped; add a new one.
MIGRATIONS: list[str] = [
    # 0 -> 1: the first schema.
    """
    CREATE TABLE files (
        id INTEGER PRIMARY KEY,
        share TEXT NOT NULL,
        relpath BLOB NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        fingerprint TEXT,
        state TEXT NOT NULL CHECK (state IN ('pending', 'indexed', 'failed', 'gone')),
        error TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        retry_at REAL,
        added REAL NOT NULL,
        updated REAL NOT NULL,
        gone_at REAL,
        UNIQUE (share, relpath)
    );
    CREATE INDEX files_state ON files (state, mtime_ns);
    CREATE INDEX files_fingerprint ON files (fingerprint);
    CREATE TABLE vectors (
        file_id INTEGER NOT NULL REFERENCES files (id) ON DELETE CASCADE,
        model_id TEXT NOT NULL,
        PRIMARY KEY (model_id, file_id)
    ) WITHOUT ROWID;
    CREATE INDEX vectors_file ON vectors (file_id);
    CREATE TABLE vector_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        file_id INTEGER NOT NULL,
        model_id TEXT NOT NULL,
        vector BLOB NOT NULL
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 1 -> 2: claiming work must not walk every row waiting for a retry (10,000 empty files
    # made each claim of 8 photos read all of them). New work in mtime order, due retries by time.
    """
    CREATE INDEX files_new ON files (mtime_ns) WHERE state = 'pending' AND retry_at IS NULL;
    CREATE INDEX files_retry ON files (retry_at) WHERE state = 'pending' AND retry_at IS NOT NULL;
    """,
    # 2 -> 3: what the photo says of itself (issue 16), read when it is decoded. taken is the
    # capture time on the photo's own wall clock (seconds since 1970 as if it were UTC),
    # taken_offset its minutes east of UTC where the photo says, taken_source 'exif' or
    # 'mtime' (no capture time in the file); NULL taken_source: not read yet.
    """
    ALTER TABLE files ADD COLUMN taken REAL;
    ALTER TABLE files ADD COLUMN taken_offset INTEGER;
    ALTER TABLE files ADD COLUMN taken_source TEXT;
    ALTER TABLE files ADD COLUMN camera_make TEXT;
    ALTER TABLE files ADD COLUMN camera_model TEXT;
    ALTER TABLE files ADD COLUMN lat REAL;
    ALTER TABLE files ADD COLUMN lon REAL;
    CREATE INDEX files_unread_meta ON files (id) WHERE taken_source IS NULL AND state = 'indexed';
    CREATE INDEX files_taken ON files (share, taken);
    """,
    # 3 -> 4: where a photo's GPS position is, named offline (nasclip/meta/places.py): the nearest
    # city's GeoNames id, its admin1 region code and ISO country code, stored so that a place filter
    # compares columns. place_country '' means looked up with no city in reach; NULL with a lat,
    # not looked up yet (rows of schema 3), which files_unplaced finds for the backfill.
    """
    ALTER TABLE files ADD COLUMN place_city INTEGER;
    ALTER TABLE files ADD COLUMN place_region TEXT;
    ALTER TABLE files ADD COLUMN place_country TEXT;
    CREATE INDEX files_unplaced ON files (id) WHERE lat IS NOT NULL AND place_country IS NULL;
    CREATE INDEX files_place ON files (place_country, place_region, place_city) WHERE place_country != '';
    """,
    # 4 -> 5: text recognised in the photos (issue 17), a second pass after the vector. One ocr row
    # per photo once it is indexed: 'pending' until read, then 'done' (its lines in text, '' for none)
    # or 'failed' (error says why). fingerprint is the content that was read: a copy or twin with the
    # same fingerprint takes the text instead of being read again. Triggers keep it in step whoever
    # writes files: a row that becomes indexed is queued; a file whose size or mtime changes is
    # pending again (an edit is read again; a rename changes neither). ocr_text indexes the folded
    # text (nasclip/ocr/textform.py) with FTS5's trigram tokenizer, rowid = file id: substrings of 3+
    # characters in any script; shorter terms are looked up with instr() on its column.
    """
    CREATE TABLE ocr (
        file_id INTEGER PRIMARY KEY REFERENCES files (id) ON DELETE CASCADE,
        state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
        fingerprint TEXT,
        text TEXT,
        error TEXT,
        updated REAL
    );
    CREATE INDEX ocr_pending ON ocr (file_id) WHERE state = 'pending';
    CREATE INDEX ocr_state ON ocr (state);
    CREATE INDEX ocr_fingerprint ON ocr (fingerprint) WHERE state != 'pending';
    CREATE VIRTUAL TABLE ocr_text USING fts5 (folded, tokenize = 'trigram');
    INSERT INTO ocr (file_id, state) SELECT id, 'pending' FROM files WHERE state = 'indexed';
    CREATE TRIGGER ocr_queue AFTER UPDATE OF state ON files WHEN new.state = 'indexed' BEGIN
        INSERT OR IGNORE INTO ocr (file_id, state) VALUES (new.id, 'pending');
    END;
    CREATE TRIGGER ocr_queue_new AFTER INSERT ON files WHEN new.state = 'indexed' BEGIN
        INSERT OR IGNORE INTO ocr (file_id, state) VALUES (new.id, 'pending');
    END;
    CREATE TRIGGER ocr_changed AFTER UPDATE OF size, mtime_ns ON files
        WHEN new.size IS NOT old.size OR new.mtime_ns IS NOT old.mtime_ns BEGIN
        UPDATE ocr SET state = 'pending', fingerprint = NULL, text = NULL, error = NULL WHERE file_id = new.id;
        DELETE FROM ocr_text WHERE rowid = new.id;
    END;
    CREATE TRIGGER ocr_forget AFTER DELETE ON ocr BEGIN
        DELETE FROM ocr_text WHERE rowid = old.file_id;
    END;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


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
        # from their columns (vectors) as NULLs; integrity_check of that table is right.
        false = [p for p in problems if p.startswith("NULL value in vectors.")]
        if false and [r[0] for r in conn.execute("PRAGMA integrity_check(vectors)")] == ["ok"]:
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
                "INSERT INTO files(share, relpath, size, mtime_ns, state, added, updated) "
                "VALUES (?, ?, ?, ?, 'pending', ?, ?)", (share, raw, size, mtime_ns, now, now))
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
        """Rename one row in place (its vectors stay valid); returns ids of rows it displaced.

        Nothing happens when no row has the old path: the file was not known
        yet, or a folder move already carried it along.
        """
        if (share, old) == (new_share, new) or self.get(share, old) is None:
            return []
        displaced = self._displace(new_share, [encode_path(new)])
        self.conn.execute("UPDATE files SET share=?, relpath=?, updated=? WHERE share=? AND relpath=?",
                          (new_share, encode_path(new), now, share, encode_path(old)))
        return displaced

    def move_below(self, share: str, old_folder: str, new_share: str, new_folder: str, now: float) -> list[int]:
        """Rename every row below old_folder to below new_folder; returns displaced ids."""
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
        """Delete rows occupying these paths (a move overwrote them); returns their ids."""
        ids = []
        for raw in raws:
            row = self.conn.execute("SELECT id FROM files WHERE share=? AND relpath=?", (share, raw)).fetchone()
            if row:
                ids.append(row[0])
        self.delete(ids)
        return ids

    def delete(self, ids: Iterable[int]) -> None:
        """Forget rows entirely (their vectors rows go with them)."""
        self.conn.executemany("DELETE FROM files WHERE id=?", [(i,) for i in ids])

    def has_vector(self, id_: int, model_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM vectors WHERE model_id=? AND file_id=?",
                                 (model_id, id_)).fetchone() is not None

    def vector_ids(self, model_id: str) -> set[int]:
        return {r[0] for r in self.conn.execute("SELECT file_id FROM vectors WHERE model_id=?", (model_id,))}

    def forget_vectors(self, model_id: str, ids: Iterable[int]) -> None:
        """These rows have no vector of the model (lost or damaged): they will be encoded again."""
        self.conn.executemany("DELETE FROM vectors WHERE model_id=? AND file_id=?", [(model_id, int(i)) for i in ids])

    # ------------------------------------------------------------------ vector log

    def models(self) -> set[str]:
        """Every model with a vector recorded or logged."""
        return ({r[0] for r in self.conn.execute("SELECT DISTINCT model_id FROM vectors")}
                | {r[0] for r in self.conn.execute("SELECT DISTINCT model_id FROM vector_log")})

    def logged_vectors(self, model_id: str, after: int = 0) -> dict[int, bytes]:
        """The latest vector per row of a model logged after seq `after` (what a checkpoint already covers)."""
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
