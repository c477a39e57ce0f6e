"""The text pass's writes: what ``Store.record_text`` commits (catalog schema 4, catalog.py).

Each result is written only if its photo is still the one that was claimed
(same size, mtime and fingerprint, still indexed) and still waits for its
text; anything else is stale and dropped (the triggers of schema 4 have
queued it again if it changed). The text, the state change and the text
index entry commit in one transaction, so a photo whose text was recorded
is never read again, whenever the daemon is killed.
"""

from __future__ import annotations

import sqlite3
from typing import Iterable

from .catalog import INDEXED
from .changes import TextFailed, TextRead, TextResult, TextReused

READ_COUNTER = "ocr_read_total"  # photos read by the OCR engine whose text was recorded, ever


def _current(tx: sqlite3.Connection, result: TextResult) -> bool:
    row = result.row
    found = tx.execute("SELECT f.size, f.mtime_ns, f.state, f.fingerprint, o.state FROM files f "
                       "JOIN ocr o ON o.file_id = f.id WHERE f.id = ?", (row.id,)).fetchone()
    return found == (row.size, row.mtime_ns, INDEXED, row.fingerprint, "pending")


def record(tx: sqlite3.Connection, results: Iterable[TextResult], now: float) -> dict[str, int]:
    """Write the results inside the caller's transaction; returns counts of what happened."""
    summary = {"read": 0, "reused": 0, "failed": 0, "stale": 0}
    for result in results:
        row = result.row
        if not _current(tx, result):
            summary["stale"] += 1
            continue
        tx.execute("DELETE FROM ocr_text WHERE rowid = ?", (row.id,))
        if isinstance(result, TextRead):
            tx.execute("UPDATE ocr SET state = 'done', fingerprint = ?, text = ?, error = NULL, updated = ? "
                       "WHERE file_id = ?", (row.fingerprint, "\n".join(result.lines), now, row.id))
            if result.searchable:
                tx.execute("INSERT INTO ocr_text (rowid, folded) VALUES (?, ?)", (row.id, result.searchable))
            summary["read"] += 1
        elif isinstance(result, TextFailed):
            tx.execute("UPDATE ocr SET state = 'failed', fingerprint = ?, text = NULL, error = ?, updated = ? "
                       "WHERE file_id = ?", (row.fingerprint, result.error, now, row.id))
            summary["failed"] += 1
        else:
            summary[_reuse(tx, result, now)] += 1
    if summary["read"]:
        tx.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) "
                   "DO UPDATE SET value = CAST(value AS INTEGER) + ?",
                   (READ_COUNTER, str(summary["read"]), summary["read"]))
    return summary


def _reuse(tx: sqlite3.Connection, result: TextReused, now: float) -> str:
    """Copy a twin's text (or failure) and its text index entry; 'stale' if the twin no longer has it."""
    row = result.row
    donor = tx.execute("SELECT state, text, error FROM ocr WHERE file_id = ? AND state != 'pending' "
                       "AND fingerprint = ?", (result.donor, row.fingerprint)).fetchone()
    if donor is None:  # purged or changed meanwhile: the photo is read itself
        return "stale"
    tx.execute("UPDATE ocr SET state = ?, fingerprint = ?, text = ?, error = ?, updated = ? WHERE file_id = ?",
               (donor[0], row.fingerprint, donor[1], donor[2], now, row.id))
    tx.execute("INSERT INTO ocr_text (rowid, folded) SELECT ?, folded FROM ocr_text WHERE rowid = ?",
               (row.id, result.donor))
    return "reused"
