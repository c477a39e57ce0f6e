"""What a search answers: one ``Hit`` per photo or video, as the protocol shows it.

A hit carries what a person reads beside a photo: its score, when it was
taken (ISO 8601 on the photo's own clock, with the offset where the photo
gives one; the file's time where it says nothing, marked ``taken_from:
"mtime"``), the camera, and where: the place its GPS position names, in
English and Chinese (nasclip/meta/places.py), and the position itself.
A video's hit also says so (``kind: "video"``), the moment that matched
(``time``, seconds) and its length; a photo shown for a RAW+JPEG shot names
the RAW (``original``), a Live Photo's still its clip (``live``). A photo's
keys are otherwise exactly as before videos were indexed: scripts compare them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..media.formats import kind_of
from ..meta.exif import CaptureTime, PlaceRef
from ..meta.places import Places
from ..store.reader import Candidate


@dataclass(frozen=True)
class Hit:
    """One search result."""

    path: str
    share: str
    score: float | None  # None: found by filters alone, not ranked by a description
    size: int
    mtime: float
    taken: str | None = None  # ISO 8601, with the offset where the photo gives one
    taken_from: str | None = None  # 'exif', or 'mtime' (the photo says nothing: the file's time)
    camera: str | None = None
    place: str | None = None  # "Lisbon, Lisboa, Portugal", or "葡萄牙里斯本" for a request in Chinese
    lat: float | None = None
    lon: float | None = None
    id: int | None = None  # the catalog row: the web front end asks for thumbnails by it
    text: str | None = None  # with text_in: the text read in the photo around the first word asked for
    kind: str | None = None  # 'video' for a video; None for a photo (or a RAW): photos carry no kind key
    time: float | None = None  # a video's matching moment, in seconds (None: found by filters alone)
    duration: float | None = None  # a video's length in seconds
    original: str | None = None  # the RAW of a RAW+JPEG shot shown as its JPEG
    live: str | None = None  # the clip of a Live Photo shown as its still

    def as_dict(self, with_id: bool = False) -> dict:
        """The protocol's result object; with_id adds the catalog id (the web names photos by it)."""
        shown = {"path": self.path, "share": self.share,
                 "score": None if self.score is None else round(self.score, 6), "size": self.size,
                 "mtime": self.mtime, "taken": self.taken, "taken_from": self.taken_from, "camera": self.camera,
                 "place": self.place}
        if self.text is not None:
            shown["text"] = self.text
        if self.kind == "video":
            shown.update(kind="video", time=None if self.time is None else round(self.time, 3),
                         duration=None if self.duration is None else round(self.duration, 3))
        if self.original is not None:
            shown["original"] = self.original
        if self.live is not None:
            shown["live"] = self.live
        if with_id:
            shown["id"] = self.id
        return shown


def hit_from(row: Candidate, path: str, score: float | None, places: Places, chinese: bool = False) -> Hit:
    """The hit for a catalog row found at path; its place named in Chinese where asked and known."""
    english, local = _place(row, places)
    video = (row.kind or kind_of(row.relpath)) == "video"  # a new video not indexed yet is one too
    return Hit(path, row.share, score, row.size, row.mtime_ns / 1e9, _taken(row), row.taken_source, _camera(row),
               (local or english) if chinese else english, row.lat, row.lon, row.id,
               kind="video" if video else None, duration=row.duration if video else None)


def score_of(hit: Hit) -> float:
    """A ranked hit's score: every hit a description found has one."""
    assert hit.score is not None, "a hit from the filters alone has no score"
    return hit.score


def when(hit: Hit) -> str:
    """A hit's date taken for sorting: ISO text on the photo's own clock sorts as the dates do."""
    if hit.taken is not None:
        return hit.taken[:19]
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(hit.mtime))


def _taken(row: Candidate) -> str | None:
    if row.taken is None or row.taken_source not in ("exif", "mtime"):
        return None
    taken = CaptureTime(row.taken, row.taken_offset, row.taken_source)  # type: ignore[arg-type]  # checked
    return taken.as_datetime().isoformat(timespec="seconds" if row.taken == int(row.taken) else "milliseconds")


def _camera(row: Candidate) -> str | None:
    parts = [part for part in (row.camera_make, row.camera_model) if part]
    return " ".join(parts) or None


def _place(row: Candidate, places: Places) -> tuple[str | None, str | None]:
    if not row.place_country:  # no position, not looked up yet, or nowhere near a city
        return None, None
    return places.names(PlaceRef(row.place_city, row.place_region, row.place_country))
