"""A search's filters: share, folder, date taken, camera and place, checked per result or turned into SQL.

Dates are instants (the request's ``after``/``before``); a photo's capture
time is its own wall clock (catalog.py, schema 3), so the limits are compared
as the NAS's clock shows them, and a photo whose metadata is not read yet by
its mtime. A place is a city, region or country the gazetteer named
(``PlaceFilter``), compared with the three place columns a photo's position
was given at index time (schema 4): no geometry at query time.
"""

from __future__ import annotations

import time

from ..shares import Shares
from ..store import catalog as cat
from ..store.reader import Candidate, PlaceFilter, Selection
from .protocol import Request


def wall_clock(instant: float | None) -> float | None:
    """An instant as the NAS's wall clock shows it, in seconds since 1970 as if that clock were UTC."""
    if instant is None:
        return None
    try:
        return instant + time.localtime(instant).tm_gmtoff
    except (OverflowError, OSError, ValueError):  # beyond what the platform's localtime takes
        return instant


class Filter:
    """A request's limits, checked per result (``keeps_row``, ``keeps_path``) or as catalog selections."""

    def __init__(self, request: Request, shares: Shares, prefix: str | None, place: PlaceFilter | None) -> None:
        self.share = request.share
        self.prefix = None if prefix in (None, "/") else prefix
        self.after_ns = int(request.after * 1e9) if request.after is not None else None
        self.before_ns = int(request.before * 1e9) if request.before is not None else None
        # A capture time is the photo's own wall clock: the limits, as the NAS's clock shows them.
        self.after_wall = wall_clock(request.after)
        self.before_wall = wall_clock(request.before)
        self.camera = request.camera.casefold().split() if request.camera else []
        self.place = place
        self.shares = shares
        self.chinese = request.lang == "zh"  # not a limit: the language the hits it keeps name places in

    @property
    def active(self) -> bool:
        return bool(self.share or self.prefix or self.after_ns is not None or self.before_ns is not None
                    or self.camera or self.place)

    def keeps_row(self, row: Candidate) -> bool:
        """The share, date, camera and place parts of the filter (cheap: no path built yet)."""
        if self.share and row.share != self.share:
            return False
        if self.camera:  # every word, anywhere in make and model: "iphone", "canon r5"
            name = f"{row.camera_make or ''} {row.camera_model or ''}".casefold()
            if not all(word in name for word in self.camera):
                return False
        if self.place is not None and not self.place.keeps(row.place_city, row.place_region, row.place_country):
            return False
        if row.taken is None:  # metadata not read yet: the file's time
            return ((self.after_ns is None or row.mtime_ns >= self.after_ns)
                    and (self.before_ns is None or row.mtime_ns < self.before_ns))
        return ((self.after_wall is None or row.taken >= self.after_wall)
                and (self.before_wall is None or row.taken < self.before_wall))

    def keeps_path(self, path: str) -> bool:
        return not self.prefix or path.startswith(self.prefix + "/")

    def selections(self) -> list[Selection]:
        """One catalog selection per share the filter can match."""
        parts = []
        for share, root in self.shares.items():
            if self.share and share != self.share:
                continue
            relpath_range = None
            if self.prefix:
                root_text = str(root)
                if self.prefix.startswith(root_text + "/"):
                    relpath_range = cat.prefix_range(self.prefix[len(root_text) + 1:])
                elif not (root_text == self.prefix or root_text.startswith(self.prefix + "/")):
                    continue  # the folder is in no part of this share
            parts.append(Selection(share, relpath_range, self.after_ns, self.before_ns, self.after_wall,
                                   self.before_wall, self.place))
        return parts
