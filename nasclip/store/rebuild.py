"""`nasclip catalog rebuild`: copy every readable row of a damaged catalog into a new one.

A catalog with a damaged page (a flipped bit on disk, a bad sector) makes
SQLite fail every statement that touches that page. Most of the file is
usually fine, so this copies table by table, by key range, into a fresh
catalog of the current schema: a range that cannot be read is split in
halves until the unreadable rows are isolated and skipped; rows keep their
ids, so the vectors in the index checkpoint still belong to them (a video's
moments are copied with them); the text read in photos (the ``ocr`` rows and
their ``ocr_text`` index entries) comes along, and a photo whose text entry was
lost is simply read again. Rows that fail the schema's constraints (garbled, or
a ``vectors`` row whose photo was lost) are skipped as well. The damaged file is kept beside the new one as
``catalog.db.damaged-<timestamp>``. Photos whose rows were lost are found
again by the next scan and encoded afresh; every other vector is kept.

Runs only while no daemon holds the state directory (statedir.StateLock).
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..config import CATALOG_FILE
from ..errors import StoreError
from .catalog import SCHEMA_VERSION, Catalog, connect
from .statedir import StateLock
from .vectors import fsync_dir

WINDOW = 10_000  # keys per query: bounded memory at a million rows
INT64 = (-(1 << 63), (1 << 63) - 1)
# Copied in this order: files first, the rows the others point at.
ROWID_TABLES = ("files", "vector_log", "meta")


@dataclass
class TableReport:
    """How one table came through."""

    name: str
    kept: int = 0
    unreadable: int = 0  # keys (rowids) that could not be read
    rejected: int = 0    # rows read but refused by the schema (garbled, or pointing at a lost photo)
    total: int | None = None  # what the damaged table said it held, when it could still count

    def line(self) -> str:
        text = f"{self.name}: kept {self.kept}" + (f" of {self.total} rows" if self.total is not None else " rows")
        lost = [f"{n} {what}" for n, what in ((self.unreadable, "unreadable"), (self.rejected, "rejected")) if n]
        return text + (f" ({', '.join(lost)})" if lost else "")


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def _bounds(src: sqlite3.Connection, sql: str, args: tuple = ()) -> tuple[int, int]:
    """(min, max) of a key, or the whole int64 range if the ends cannot be read."""
    try:
        low, high = src.execute(sql, args).fetchone()
    except sqlite3.DatabaseError:
        return INT64
    return (low, high) if low is not None else (0, -1)


def _readable(src: sqlite3.Connection, sql: str, args: tuple, low: int, high: int,
              report: TableReport) -> Iterator[list[tuple]]:
    """Rows of sql (ending in 'BETWEEN ? AND ?') in [low, high], window by window, around damage."""
    stack = [(start, min(high, start + WINDOW - 1)) for start in range(low, high + 1, WINDOW)] \
        if (low, high) != INT64 else [INT64]
    stack.reverse()
    while stack:
        lo, hi = stack.pop()
        try:
            rows = src.execute(sql, (*args, lo, hi)).fetchall()
        except sqlite3.DatabaseError:
            if lo == hi:
                report.unreadable += 1
                continue
            mid = (lo + hi) // 2
            stack += [(mid + 1, hi), (lo, mid)]
            continue
        if rows:
            yield rows


def _insert(dst: sqlite3.Connection, table: str, columns: list[str], rows: list[tuple], report: TableReport,
            verb: str = "INSERT") -> None:
    sql = f"{verb} INTO {table}({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    dst.execute("BEGIN")
    try:
        dst.executemany(sql, rows)
        report.kept += len(rows)
    except sqlite3.Error:  # a bad row among them: one by one
        dst.execute("ROLLBACK")
        dst.execute("BEGIN")
        for row in rows:
            try:
                dst.execute(sql, row)
                report.kept += 1
            except (sqlite3.IntegrityError, sqlite3.InterfaceError, OverflowError):
                report.rejected += 1
    dst.execute("COMMIT")


def _tables(src: sqlite3.Connection) -> set[str]:
    try:
        return {r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError:
        return set()


def _count(src: sqlite3.Connection, table: str) -> int | None:
    try:
        return src.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    except sqlite3.DatabaseError:
        return None


def copy_readable(src: sqlite3.Connection, dst: sqlite3.Connection) -> list[TableReport]:
    """Copy what can be read from src into the empty catalog dst; one report per table."""
    reports = []
    for table in ROWID_TABLES:
        report = TableReport(table, total=_count(src, table))
        # files.id and vector_log.seq are the rowid under another name: copying them keeps ids.
        columns = [c for c in _columns(src, table) if c in _columns(dst, table)]
        low, high = _bounds(src, f"SELECT min(rowid), max(rowid) FROM {table}")
        select = f"SELECT {', '.join(columns)} FROM {table} WHERE rowid BETWEEN ? AND ?"
        for rows in _readable(src, select, (), low, high, report):
            _insert(dst, table, columns, rows, report)
        reports.append(report)
    # vectors is WITHOUT ROWID, keyed (model_id, file_id): by model, then by file id.
    report = TableReport("vectors", total=_count(src, "vectors"))
    models = {r[0] for r in dst.execute("SELECT DISTINCT model_id FROM vector_log")}
    models |= {r[0].split(":", 1)[1] for r in dst.execute("SELECT key FROM meta WHERE key LIKE 'model_dim:%'")}
    try:
        models |= {r[0] for r in src.execute("SELECT DISTINCT model_id FROM vectors")}
    except sqlite3.DatabaseError:
        pass
    low, high = dst.execute("SELECT min(id), max(id) FROM files").fetchone()
    for model in sorted(models):
        if low is None:
            break
        for rows in _readable(src, "SELECT file_id, model_id FROM vectors WHERE model_id=? AND file_id BETWEEN ? AND ?",
                              (model,), low, high, report):
            _insert(dst, "vectors", ["file_id", "model_id"], rows, report)
    reports.append(report)
    # moments (schema 6) is WITHOUT ROWID too, keyed (model_id, file_id, idx): a video's frames stay with it.
    report = TableReport("moments", total=_count(src, "moments"))
    if "moments" in _tables(src):
        for model in sorted(models):
            if low is None:
                break
            for rows in _readable(src, "SELECT file_id, model_id, idx, seconds FROM moments WHERE model_id=? "
                                       "AND file_id BETWEEN ? AND ?", (model,), low, high, report):
                _insert(dst, "moments", ["file_id", "model_id", "idx", "seconds"], rows, report)
        reports.append(report)
    reports += _copy_text(src, dst)
    return reports


def _copy_text(src: sqlite3.Connection, dst: sqlite3.Connection) -> list[TableReport]:
    """The text read in photos: ocr rows over the pending ones the files' trigger queued, then their index.

    A photo whose text was read but whose ocr_text entry could not be copied
    goes back to pending: read again, rather than findable by nothing.
    """
    if "ocr" not in _tables(src):
        return []  # a catalog from before the text pass (schema 4 and older)
    reports = []
    text = TableReport("ocr", total=_count(src, "ocr"))
    columns = [c for c in _columns(src, "ocr") if c in _columns(dst, "ocr")]
    low, high = _bounds(src, "SELECT min(file_id), max(file_id) FROM ocr")
    select = f"SELECT {', '.join(columns)} FROM ocr WHERE file_id BETWEEN ? AND ?"
    for rows in _readable(src, select, (), low, high, text):
        _insert(dst, "ocr", columns, rows, text, verb="INSERT OR REPLACE")
    reports.append(text)
    index = TableReport("ocr_text", total=_count(src, "ocr_text"))
    low, high = _bounds(src, "SELECT min(rowid), max(rowid) FROM ocr_text")
    for rows in _readable(src, "SELECT rowid, folded FROM ocr_text WHERE rowid BETWEEN ? AND ?", (), low, high, index):
        kept = [row for row in rows if dst.execute("SELECT 1 FROM ocr WHERE file_id=? AND state='done'",
                                                  (row[0],)).fetchone()]
        index.rejected += len(rows) - len(kept)
        _insert(dst, "ocr_text", ["rowid", "folded"], kept, index)
    reports.append(index)
    dst.execute("UPDATE ocr SET state='pending', fingerprint=NULL, text=NULL WHERE state='done' AND text != '' "
                "AND file_id NOT IN (SELECT rowid FROM ocr_text)")
    return reports


def rebuild(state_dir: Path) -> tuple[list[TableReport], Path]:
    """Rebuild state_dir/catalog.db from what is readable; returns the reports and where the damaged file went."""
    path = state_dir / CATALOG_FILE
    if not path.exists():
        raise StoreError(f"{path} does not exist: there is nothing to rebuild")
    lock = StateLock.acquire(state_dir, what="nasclip catalog rebuild")
    try:
        src = connect(path, readonly=True)
        try:
            version = src.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: not even the schema can be read ({exc}); move it aside and start nasclip "
                             "afresh (every photo is then encoded again)") from None
        if version > SCHEMA_VERSION:
            raise StoreError(f"{path}: catalog schema {version} is newer than this nasclip; upgrade it first")
        new = state_dir / f".catalog.db.rebuilding-{os.getpid()}"
        for leftover in (new, Path(f"{new}-wal"), Path(f"{new}-shm")):
            leftover.unlink(missing_ok=True)
        old_umask = os.umask(0o077)
        try:
            catalog = Catalog(new)
            reports = copy_readable(src, catalog.conn)
            if catalog.conn.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                raise StoreError(f"{new}: the rebuilt catalog fails its own integrity check; nothing was replaced")
            catalog.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            catalog.close()
        finally:
            os.umask(old_umask)
            src.close()
        with open(new, "rb+") as handle:
            os.fsync(handle.fileno())
        owner = path.stat()
        if os.geteuid() == 0:  # run as root for a nasclip-owned state: the daemon must own the new file
            os.chown(new, owner.st_uid, owner.st_gid)
        aside = state_dir / f"catalog.db.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
        os.replace(path, aside)
        wal = Path(f"{path}-wal")
        if wal.exists() and wal.stat().st_size:  # committed pages of the damaged file: they go with it
            os.replace(wal, f"{aside}-wal")
        wal.unlink(missing_ok=True)
        Path(f"{path}-shm").unlink(missing_ok=True)  # an index of the WAL, rebuilt by whoever opens it
        os.replace(new, path)
        Path(f"{new}-wal").unlink(missing_ok=True)
        Path(f"{new}-shm").unlink(missing_ok=True)
        fsync_dir(state_dir)
        return reports, aside
    finally:
        lock.release()
