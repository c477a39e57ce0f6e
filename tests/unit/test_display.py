"""Numbers, sizes and durations as people read them, one way everywhere."""

from __future__ import annotations

import pytest

from nasclip.display import clock, duration, group_digits, human_bytes, parse_clock, printable


@pytest.mark.parametrize("n, text", [(0, "0"), (999, "999"), (1000, "1 000"), (1234567, "1 234 567"),
                                     (12.9, "12")])
def test_group_digits(n: float, text: str) -> None:
    assert group_digits(n) == text


@pytest.mark.parametrize("n, text", [(0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (1_234_567, "1.2 MB"),
                                     (5_500_000_000, "5.5 GB"), (3e12, "3.0 TB"), (4.2e15, "4200.0 TB")])
def test_human_bytes_uses_decimal_units_up_to_terabytes(n: float, text: str) -> None:
    assert human_bytes(n) == text


@pytest.mark.parametrize("seconds, text", [(0, "0 s"), (89, "89 s"), (90, "2 min"), (5399, "90 min"),
                                           (5400, "1.5 h"), (36000, "10.0 h")])
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_printable_makes_any_name_one_line() -> None:
    assert printable("a\nb\tc\x1b[31m") == "a\\nb\\tc\\x1b[31m"
    assert printable(b"caf\xe9.jpg") == "caf\ufffd.jpg"


@pytest.mark.parametrize("seconds, text", [(0, "00:00"), (83.9, "01:23"), (599.99, "09:59"), (3600, "1:00:00"),
                                           (3723.2, "1:02:03"), (-1, "00:00")])
def test_clock_shows_a_video_moment_as_players_do(seconds: float, text: str) -> None:
    assert clock(seconds) == text


@pytest.mark.parametrize("text, seconds", [("83.4", 83.4), ("1:23", 83.0), ("01:23.5", 83.5), ("1:02:03", 3723.0),
                                           ("0", 0.0), ("1:60", None), ("-3", None), ("1::2", None), ("a:1", None),
                                           ("1:2:3:4", None), ("", None), ("nan", None), ("inf", None),
                                           ("1.5:20", None)])
def test_parse_clock_reads_seconds_and_clock_times(text: str, seconds: float | None) -> None:
    assert parse_clock(text) == seconds
