"""Offline places: a photo's position to the nearest city with its region and country, and place names to filters.

``gazetteer()`` builds the process's one ``Gazetteer`` on first use (about a
second; gazetteer.py says from which packages), then:

* ``reverse(lat, lon)`` -> ``Located`` (city, region, country, distance) or None
  when no city of the set lies within ``MAX_KM``. Nearest is by great-circle
  distance to the city's point: near a border the nearest city can be across
  it, and a suburb is its own city when GeoNames lists it (Amadora, not Lisbon).
* ``lookup(name)`` -> every city, region and country that name denotes, in
  English or Chinese (simplified or traditional), any case or accents,
  largest population first: "Paris" gives Paris, France before Paris, Texas;
  "Lisbon" gives the Lisbon region, then the city. Whether the first is clear
  enough to act on is the caller's decision (placenames explains the keys).
* ``Place.covers(city, country, admin1)`` says whether a photo stored with
  those three values (from its ``Located``) is in a place: a city by GeoNames
  id, a region by country and admin1 code, a country by its code. So a filter
  stores three columns per photo and compares them, with no geometry.
* ``city(id)``, ``region(country, admin1)``, ``country(code)`` give back the
  names for what was stored.

``MAX_KM`` is 50: far enough that a photo on a walk outside any town of 5000
still gets the nearest one, near enough that the open sea, deserts and ice get
no place at all rather than a misleading one (Null Island, 0,0, is ~570 km
from land). Lookups use a grid of 1° cells over the cities (numpy, no KD-tree
dependency): a reverse lookup reads the few cells within ``max_km``.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .exif import NOWHERE, PlaceRef, Position
from .gazetteer import Place, Tables, load, load_cached
from .placenames import query_keys

__all__ = ["Gazetteer", "Located", "MAX_KM", "Place", "PlaceRef", "Places", "gazetteer"]

log = logging.getLogger("nasclip.meta")

MAX_KM = 50.0
DENSITY = 5000.0  # people per km² in a city's reach (a dense European or Asian city's core)
EARTH_KM = 6371.0088  # mean radius
_KINDS = {"country": 0, "region": 1, "city": 2}  # ties in population: the wider place first


@dataclass(frozen=True)
class Located:
    """Where a position is: the nearest city, its region and country (when the data has them), and how far."""

    city: Place
    region: Place | None
    country: Place | None
    distance_km: float


class Gazetteer:
    """Reverse and forward place lookups over one set of tables; safe to share between threads."""

    def __init__(self, tables: Tables) -> None:
        self.tables = tables
        self._by_id = {city.geonameid: city for city in tables.cities}
        lat = np.array([c.lat for c in tables.cities], dtype=np.float64)
        lon = np.array([c.lon for c in tables.cities], dtype=np.float64)
        # Cities sorted by 1° cell (row = latitude band, column = longitude): a run of
        # columns in one band is one contiguous slice of the sorted arrays.
        rows = np.clip(np.floor(lat) + 90, 0, 179).astype(np.int64)
        cols = np.clip(np.floor(lon) + 180, 0, 359).astype(np.int64)
        cells = rows * 360 + cols
        order = np.argsort(cells, kind="stable")
        self._order = order
        self._lat = np.radians(lat[order])
        self._lon = np.radians(lon[order])
        self._cos = np.cos(self._lat)
        self._starts = np.searchsorted(cells[order], np.arange(180 * 360 + 1))
        population = np.array([c.population for c in tables.cities], dtype=np.float64)[order]
        self._population = population
        self._reach = np.sqrt(population / (math.pi * DENSITY))
        regions: dict[tuple[str, str | None], int] = {}
        self._region_id = np.array([regions.setdefault((c.country, c.admin1), len(regions)) for c in tables.cities],
                                   dtype=np.int64)[order]

    def reverse(self, lat: float, lon: float, max_km: float = MAX_KM) -> Located | None:
        """The city at (lat, lon) within max_km, with its region and country; None if there is none.

        The nearest city, unless the position is within the reach of a larger
        city of the same region: GeoNames lists neighbourhoods and districts
        as places of their own (Intendente in Lisbon, Huangpu in Shanghai),
        and a photo taken there is "in Lisbon" to a person. A city's reach is
        the radius of a disc holding its population at ``DENSITY`` (Lisbon's
        518k: 5.7 km; Shanghai: 40 km; a town of 5000: 0.6 km). Keeping to the
        nearest city's region keeps the region right: Newark stays Newark,
        in New Jersey, 14 km from New York City's centre.
        """
        if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
            return None
        slices = self._slices(lat, lon, max_km)
        if not slices:
            return None
        index = np.concatenate([np.arange(start, stop) for start, stop in slices])
        phi, lam = math.radians(lat), math.radians(lon)
        h = np.sin((self._lat[index] - phi) / 2) ** 2 \
            + math.cos(phi) * self._cos[index] * np.sin((self._lon[index] - lam) / 2) ** 2
        km = 2 * EARTH_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
        nearest = int(np.argmin(km))
        if km[nearest] > max_km:
            return None
        region = self._region_id[index[nearest]]
        covering = (self._region_id[index] == region) & (km <= self._reach[index])
        choice = nearest
        if covering.any():
            largest = int(np.argmax(np.where(covering, self._population[index], -1)))
            if self._population[index[largest]] > self._population[index[nearest]]:
                choice = largest
        city = self.tables.cities[int(self._order[index[choice]])]
        return Located(city, self.region(city.country, city.admin1), self.country(city.country), float(km[choice]))

    def _slices(self, lat: float, lon: float, max_km: float) -> list[tuple[int, int]]:
        """The index ranges of the sorted cities in the cells that may hold a point within max_km."""
        reach = math.degrees(max_km / EARTH_KM)
        low, high = max(-90.0, lat - reach), min(90.0, lat + reach)
        widest = max(abs(low), abs(high))
        cos = math.cos(math.radians(widest)) if widest < 90 else 0.0
        span = 360.0 if cos <= 0 or reach / cos >= 180 else reach / cos
        if span >= 180:
            columns = [(0, 359)]
        else:
            first = math.floor(lon - span) + 180
            last = math.floor(lon + span) + 180
            if first < 0:
                columns = [(first + 360, 359), (0, last)]
            elif last > 359:
                columns = [(first, 359), (0, last - 360)]
            else:
                columns = [(first, last)]
        slices = []
        for row in range(max(0, math.floor(low) + 90), min(179, math.floor(high) + 90) + 1):
            for a, b in columns:
                start, stop = int(self._starts[row * 360 + a]), int(self._starts[row * 360 + b + 1])
                if stop > start:
                    slices.append((start, stop))
        return slices

    def lookup(self, name: str) -> list[Place]:
        """Every place the name denotes (English or Chinese, any case), largest population first; [] if none."""
        for key in query_keys(name):
            found = self.tables.named(key)
            if found:
                return sorted(found, key=lambda p: (-p.population, _KINDS[p.kind], p.name))
        return []

    def locate(self, position: Position) -> PlaceRef:
        """What the catalog stores of a position: its city, region and country, or NOWHERE."""
        found = self.reverse(position.lat, position.lon)
        if found is None:
            return NOWHERE
        return PlaceRef(found.city.geonameid, found.city.admin1, found.city.country)

    def resolve(self, name: str) -> list[Place]:
        """The places a filter's name may mean, largest first, each a different place.

        "Lisbon" names the Lisbon region and, inside it, the city: one place
        to a person, so a place is dropped when a larger candidate covers it.
        "City, Region" or "City, Country" ("Paris, Texas", "Portland, Maine")
        keeps the candidates inside the named region or country.
        """
        head, _, qualifier = name.partition(",")
        found = self.lookup(head.strip()) if qualifier.strip() else self.lookup(name)
        if qualifier.strip():
            within = self.lookup(qualifier.strip())
            found = [p for p in found if any(w.covers(p.geonameid if p.kind == "city" else None, p.country,
                                                      p.admin1) and w is not p for w in within)]
        distinct: list[Place] = []
        for place in found:
            if not any(_contains(wider, place) for wider in distinct):
                distinct.append(place)
        return distinct

    def names(self, ref: PlaceRef) -> tuple[str | None, str | None]:
        """A stored place as people read it: English ("Lisbon, Portugal") and Chinese ("葡萄牙里斯本")."""
        if not ref.country:
            return None, None
        city = self.city(ref.city) if ref.city is not None else None
        return self.describe(city or self.region(ref.country, ref.region) or self.country(ref.country)
                             or Place("country", None, ref.country, None, ref.country, None, 0))

    def describe(self, place: Place) -> tuple[str, str | None]:
        """A place with what contains it: (English, Chinese or None), repeated names said once."""
        parts = [place]
        if place.kind == "city":
            region = self.region(place.country, place.admin1)
            parts += [region] if region is not None else []
        if place.kind != "country":
            country = self.country(place.country)
            parts += [country] if country is not None else []
        english: list[str] = []
        for part in parts:
            if part.name not in english:
                english.append(part.name)
        chinese: list[str] = []
        for part in reversed(parts):  # the widest first, as Chinese writes addresses
            if part.name_zh and not any(part.name_zh in known or known in part.name_zh for known in chinese):
                chinese.append(part.name_zh)
        return ", ".join(english), ("".join(chinese) if place.name_zh else None)

    def city(self, geonameid: int) -> Place | None:
        """A city of the set by its GeoNames id."""
        return self._by_id.get(geonameid)

    def region(self, country: str, admin1: str | None) -> Place | None:
        """A region by its country and GeoNames admin1 code."""
        return self.tables.regions.get((country, admin1)) if admin1 else None

    def country(self, code: str) -> Place | None:
        """A country by its ISO 3166-1 alpha-2 code."""
        return self.tables.countries.get(code)


def _contains(wider: Place, place: Place) -> bool:
    """True when wider is a region or country that place lies in."""
    if wider.kind == "city" or wider.country != place.country:
        return False
    return wider.kind == "country" or (place.kind == "city" and place.admin1 == wider.admin1)


_shared: Gazetteer | None = None
_shared_lock = threading.Lock()


def gazetteer(cache: Path | None = None) -> Gazetteer:
    """The process's gazetteer over the default city set, loaded on first use (``Gazetteer(load(n))`` for another).

    With ``cache`` (a private folder of the daemon's), the tables are read from the copy kept there
    (gazetteer.py, ``load_cached``) instead of being built from the packages' files.
    """
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Gazetteer(load_cached(cache) if cache is not None else load())
        return _shared


class Places:
    """The gazetteer as the daemon's parts share it: loaded the first time one needs a place, or unavailable.

    Loading takes a moment (once per process), so nothing loads it until a
    photo with a GPS position or a query naming a place asks; a broken
    install makes places unavailable (said once in the log), never a search
    or an index run fail.
    """

    def __init__(self, cache: Path | None = None, load: Callable[[], Gazetteer] | None = None) -> None:
        self._load = load or (lambda: gazetteer(cache))
        self._loaded: Gazetteer | None = None
        self._lock = threading.Lock()
        self.unavailable: str | None = None  # why it could not be loaded

    def get(self) -> Gazetteer | None:
        with self._lock:
            if self._loaded is None and self.unavailable is None:
                try:
                    self._loaded = self._load()
                except Exception as exc:  # a missing package, a damaged data file
                    self.unavailable = str(exc) or type(exc).__name__
                    log.warning("place names are unavailable: the gazetteer cannot be loaded: %s", exc)
            return self._loaded

    def resolve(self, name: str) -> list[Place]:
        """Gazetteer.resolve, or [] without a gazetteer."""
        places = self.get()
        return places.resolve(name) if places is not None else []

    def locate(self, position: Position) -> PlaceRef | None:
        """Gazetteer.locate, or None (not looked up: tried again later) without a gazetteer."""
        places = self.get()
        return places.locate(position) if places is not None else None

    def names(self, ref: PlaceRef) -> tuple[str | None, str | None]:
        """Gazetteer.names, or nothing without a gazetteer."""
        places = self.get()
        return places.names(ref) if places is not None else (None, None)
