"""The status reply (socket op ``status``): its shape, what others may see of it, its one-line summary.

``StatusReply`` is the one definition of the reply: the daemon builds it and
``nasclip status`` prints it (docs/protocol.md describes the same fields).
Keys a daemon of an older version may not send are optional.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypedDict

from ..display import duration, group_digits
from ..query.access import AccessCheck


class ModelStatus(TypedDict):
    id: str
    name: str
    folder: str
    backend: str


class EncodedCounts(TypedDict):
    run: int
    total: int


class IndexStatus(TypedDict):
    type: str
    vectors: int
    bytes_on_disk: int


class Failure(TypedDict):
    share: str
    path: str
    error: str


class TextCache(TypedDict):
    hits: int
    misses: int


class QueryCounts(TypedDict):
    served: int
    errors: int
    busy: int
    text_cache: TextCache


class ServiceStatus(TypedDict):
    config: str | None
    reloaded: float | None
    restart_needed: list[str]
    watchdog_seconds: float | None
    stalled: bool


class _Required(TypedDict):
    version: str
    uptime: float
    model: ModelStatus
    photos: dict[str, int]  # by catalog state: pending, indexed, failed, gone
    encoded: EncodedCounts
    reused: int
    rate: float
    eta_seconds: int | None
    index: IndexStatus
    shares: list[dict[str, Any]]  # Watcher.status(): one entry per share
    recent_failures: list[Failure]
    queries: QueryCounts
    healthy: bool


class OcrReport(TypedDict, total=False):
    """The text pass (nasclip/ocr/stage.py OcrStatus, plus the catalog's counts); only 'enabled' when off."""

    enabled: bool
    available: bool
    reason: str | None
    read: int
    reused: int
    failed: int
    rate: float
    waiting: bool
    photos: dict[str, int]  # by text state: pending, done, failed
    read_total: int


class StatusReply(_Required, total=False):
    model_switch: dict[str, Any] | None  # {"from": [old models], "to", "done", "total", "serving"}
    disk_full: dict[str, Any] | None  # SpaceMonitor.status() plus held_results
    notices: list[str]
    service: ServiceStatus
    metadata_owed: int  # indexed photos whose capture time, camera or place is still to be read
    ocr: OcrReport


def hide_from(status: StatusReply, access: AccessCheck) -> None:
    """Trim status for a user other than root: names they could not list, per-share counts of all photos.

    Failure reports name photos: only those the asker may read are kept.
    An unreadable folder is named only to someone who could list its
    parent. A share's file and folder counts and its settling files
    count everybody's photos (a share may be one person's), so they go.
    """
    status["recent_failures"] = [f for f in status["recent_failures"] if access.may_read(Path(f["path"]))]
    for share in status["shares"]:
        root = Path(share["path"])
        share["unreadable_folders"] = [f for f in share["unreadable_folders"]
                                       if access.may_list((root / f).parent)]
        share.pop("settling", None)
        if share["last_scan"]:
            share["last_scan"] = {k: v for k, v in share["last_scan"].items() if k not in ("files", "folders")}


def status_line(counts: dict[str, int], rate: float, disk_full: str | None, switch: dict[str, Any] | None,
                serving: str, metadata_owed: int = 0) -> str:
    """One line for systemd's STATUS=, e.g. 'indexed 12 034 / 48 210, 18.2 photos/s, about 33 min left'."""
    live = counts["indexed"] + counts["pending"] + counts["failed"]
    parts = [f"indexed {group_digits(counts['indexed'])} / {group_digits(live)}"]
    if disk_full:
        parts.insert(0, disk_full)
    if counts["pending"] and rate > 0:
        parts.append(f"{rate:.1f} photos/s, about {duration(counts['pending'] / rate)} left")
    elif not counts["pending"] and metadata_owed:
        parts.append(f"reading dates and places of {group_digits(metadata_owed)} photos")
    elif not counts["pending"]:
        parts.append("up to date")
    if counts["failed"]:
        parts.append(f"{group_digits(counts['failed'])} failed")
    if switch is not None:
        parts.append(f"new model {switch['to']}: {group_digits(switch['done'])} / {group_digits(switch['total'])} "
                     f"re-encoded, searches use {serving}")
    return ", ".join(parts)


def ocr_line(counts: dict[str, int], rate: float, unavailable: str | None) -> str:
    """The text pass's part of STATUS=, e.g. 'text read 1 204 / 48 210, 0.4 photos/s'."""
    if unavailable:
        return "text in photos not read (no OCR models; see docs/ocr.md)"
    done = counts["done"] + counts["failed"]
    text = f"text read {group_digits(done)} / {group_digits(done + counts['pending'])}"
    if counts["pending"] and rate > 0:
        text += f", {rate:.1f} photos/s"
    return text
