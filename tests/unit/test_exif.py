"""nasclip.meta.exif: capture time, camera and position from photos Pillow wrote, and from damaged blocks."""

from __future__ import annotations

import io
import random
import struct
import time
from datetime import datetime, timedelta, timezone

import pytest
from PIL import Image, ImageOps, TiffImagePlugin

from nasclip.meta import exif as exif_module
from nasclip.meta.exif import CaptureTime, PhotoMeta, Position, meta_from_exif, mtime_taken, read_meta

try:
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - a default dependency
    pillow_heif = None

LISBON_DMS = ((38.0, 42.0, 30.5), (9.0, 8.0, 0.0))
LISBON = (38 + 42 / 60 + 30.5 / 3600, -(9 + 8 / 60))


def camera_exif(date: str | None = "2023:07:14 18:30:05", offset: str | None = "+01:00", subsec: str | None = "25",
                lat: tuple[str, tuple[float, ...]] | None = ("N", LISBON_DMS[0]),
                lon: tuple[str, tuple[float, ...]] | None = ("W", LISBON_DMS[1]),
                altitude: float | None = 12.5) -> Image.Exif:
    """EXIF as a camera writes it, through Pillow's own writer: IFD0, ExifIFD and GPS IFD."""
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "Canon EOS R5"
    sub = exif.get_ifd(0x8769)
    for tag, value in ((0x9003, date), (0x9011, offset), (0x9291, subsec)):
        if value is not None:
            sub[tag] = value
    gps = exif.get_ifd(0x8825)
    if lat is not None:
        gps[1], gps[2] = lat
    if lon is not None:
        gps[3], gps[4] = lon
    if altitude is not None:
        gps[5], gps[6] = b"\x00", altitude
    return exif


def as_tuple(position: Position | None) -> tuple[float, float, float | None] | None:
    """pytest.approx compares tuples, not dataclasses."""
    return None if position is None else (position.lat, position.lon, position.altitude)


def photo(fmt: str, exif: Image.Exif) -> Image.Image:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(buffer, fmt, exif=exif)
    buffer.seek(0)
    return Image.open(buffer)


# A TIFF structure written by hand, for what no camera (and no Pillow) writes.
ASCII, SHORT, LONG, RATIONAL = 2, 3, 4, 5
Entry = tuple[int, int, int, bytes]  # tag, type, count, value bytes (a count of its own: it may lie)


def ascii(tag: int, text: bytes) -> Entry:
    return (tag, ASCII, len(text) + 1, text + b"\x00")


def rational(tag: int, *pairs: tuple[int, int], order: str = ">") -> Entry:
    return (tag, RATIONAL, len(pairs), b"".join(struct.pack(f"{order}II", n, d) for n, d in pairs))


def block(ifd0: list[Entry], exif: list[Entry] | None = None, gps: list[Entry] | None = None,
          order: str = ">") -> bytes:
    """An EXIF block ("Exif\\0\\0" + TIFF) with IFD0 and, when given, ExifIFD and GPS IFD after it."""
    def layout(entries: list[Entry], at: int) -> tuple[bytes, int]:
        table, data = b"", b""
        data_at = at + 2 + 12 * len(entries) + 4
        for tag, kind, count, value in sorted(entries):
            if len(value) <= 4:
                field = value.ljust(4, b"\x00")
            else:
                field = struct.pack(f"{order}I", data_at + len(data))
                data += value + b"\x00" * (len(value) % 2)
            table += struct.pack(f"{order}HHI", tag, kind, count) + field
        ifd = struct.pack(f"{order}H", len(entries)) + table + b"\x00\x00\x00\x00" + data
        return ifd, at + len(ifd)

    ifd0 = list(ifd0)
    pointers = [(0x8769, exif), (0x8825, gps)]
    # Two passes: the sub-IFDs' offsets depend on IFD0's size, which includes their pointer entries.
    extra = [(tag, LONG, 1, b"\x00\x00\x00\x00") for tag, sub in pointers if sub is not None]
    first, end = layout(ifd0 + extra, 8)
    parts, at, fixed = [], end, []
    for tag, sub in pointers:
        if sub is not None:
            fixed.append((tag, LONG, 1, struct.pack(f"{order}I", at)))
            data, at = layout(sub, at)
            parts.append(data)
    first, _ = layout(ifd0 + fixed, 8)
    head = (b"MM\x00*" if order == ">" else b"II*\x00") + struct.pack(f"{order}I", 8)
    return b"Exif\x00\x00" + head + first + b"".join(parts)


def gps_entries(lat_ref: bytes = b"N", lat: tuple[tuple[int, int], ...] = ((38, 1), (42, 1), (305, 10)),
                lon_ref: bytes = b"W", lon: tuple[tuple[int, int], ...] = ((9, 1), (8, 1), (0, 1))) -> list[Entry]:
    return [ascii(1, lat_ref), rational(2, *lat), ascii(3, lon_ref), rational(4, *lon)]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "HEIF"])
def test_every_photo_format_gives_time_camera_and_position_from_its_exif_block(fmt: str) -> None:
    if fmt == "HEIF" and pillow_heif is None:
        pytest.skip("pillow-heif is not installed")
    meta = read_meta(photo(fmt, camera_exif()))
    assert meta.make == "Canon" and meta.model == "EOS R5"
    assert meta.taken == CaptureTime(local=datetime(2023, 7, 14, 18, 30, 5, 250000, tzinfo=timezone.utc).timestamp(),
                                     offset=60, source="exif")
    assert meta.taken.as_datetime() == datetime(2023, 7, 14, 18, 30, 5, 250000, tzinfo=timezone(timedelta(hours=1)))
    assert meta.taken.utc == datetime(2023, 7, 14, 17, 30, 5, 250000, tzinfo=timezone.utc).timestamp()
    assert as_tuple(meta.position) == pytest.approx((*LISBON, 12.5))


def test_reading_metadata_does_not_decode_the_pixels() -> None:
    image = photo("JPEG", camera_exif())
    read_meta(image)
    assert image.tile, "the image was loaded"


def test_a_tiff_is_read_from_its_own_ifds_through_the_handle_even_after_pillow_loads_it() -> None:
    info = TiffImagePlugin.ImageFileDirectory_v2()
    info[0x010F], info[0x0110] = "NIKON CORPORATION", "NIKON D850"
    info[0x8769] = {0x9003: "2021:02:03 04:05:06"}
    info[0x8825] = {1: "S", 2: (33.0, 52.0, 0.0), 3: "E", 4: (151.0, 12.0, 0.0)}
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, "TIFF", tiffinfo=info)
    buffer.seek(0)
    image = Image.open(buffer)
    before = read_meta(image)
    assert (before.make, before.model) == ("NIKON CORPORATION", "D850")
    assert as_tuple(before.position) == pytest.approx((-(33 + 52 / 60), 151.2, None))
    assert before.taken is not None and before.taken.offset is None
    image.load()  # Pillow lets go of image.fp here
    assert read_meta(image, buffer) == before
    assert read_meta(image) == PhotoMeta()


def test_the_metadata_survives_pillows_exif_transpose() -> None:
    exif = camera_exif()
    exif[0x0112] = 6
    image = photo("JPEG", exif)
    ImageOps.exif_transpose(image, in_place=True)
    assert read_meta(image) == read_meta(photo("JPEG", camera_exif()))


def test_a_png_text_chunk_from_imagemagick_is_read_as_exif() -> None:
    raw = camera_exif().tobytes()
    image = Image.new("RGB", (4, 4))
    image.info["Raw profile type exif"] = f"\nexif\n{len(raw)}\n{raw.hex()}\n"
    assert read_meta(image).model == "EOS R5"


@pytest.mark.parametrize("date, offset, subsec, expected", [
    ("2023:07:14 18:30:05", None, None, (datetime(2023, 7, 14, 18, 30, 5), None)),
    ("2023:07:14 18:30:05", "-05:30", None, (datetime(2023, 7, 14, 18, 30, 5), -330)),
    ("2023:07:14 18:30:05", None, "123", (datetime(2023, 7, 14, 18, 30, 5, 123000), None)),
    ("2023:07:14 18:30:05", "+09:00", "007", (datetime(2023, 7, 14, 18, 30, 5, 7000), 540)),
    ("2023-07-14T18:30:05+02:00", None, None, (datetime(2023, 7, 14, 18, 30, 5), 120)),
    ("2023:07:14 18:30:05", "+25:00", "ab", (datetime(2023, 7, 14, 18, 30, 5), None)),  # bad parts dropped
    ("0000:00:00 00:00:00", "+01:00", None, None),
    ("    :  :     :  :  ", None, None, None),
    ("2023:02:30 12:00:00", None, None, None),
    ("2023:07:14 24:00:00", None, None, None),
    ("1750:01:01 00:00:00", None, None, None),
    ("yesterday", None, None, None),
])
def test_capture_time_takes_the_offset_and_subseconds_and_refuses_impossible_dates(
        date: str, offset: str | None, subsec: str | None, expected: tuple[datetime, int | None] | None) -> None:
    taken = read_meta(photo("JPEG", camera_exif(date=date, offset=offset, subsec=subsec))).taken
    if expected is None:
        assert taken is None
    else:
        assert taken is not None and (taken.as_datetime().replace(tzinfo=None), taken.offset) == expected


def test_without_date_time_original_the_digitized_then_the_file_time_are_used() -> None:
    digitized = [ascii(0x9003, b"0000:00:00 00:00:00"), ascii(0x9004, b"2020:01:02 03:04:05"),
                 ascii(0x9012, b"+08:00")]
    taken = meta_from_exif(block([], digitized)).taken
    china = timezone(timedelta(hours=8))
    assert taken is not None and taken.as_datetime() == datetime(2020, 1, 2, 3, 4, 5, tzinfo=china)
    modified = meta_from_exif(block([ascii(0x0132, b"2019:05:06 07:08:09")], [ascii(0x9010, b"-03:00")])).taken
    assert modified is not None and modified.as_datetime() == datetime(2019, 5, 6, 7, 8, 9,
                                                                       tzinfo=timezone(timedelta(hours=-3)))


def test_the_mtime_fallback_is_marked_and_uses_the_nas_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    try:
        taken = mtime_taken(1_700_000_000.0)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert taken == CaptureTime(local=1_700_000_000.0 + 8 * 3600, offset=480, source="mtime")
    assert taken.utc == 1_700_000_000.0


@pytest.mark.parametrize("lat, lon, expected", [
    (("N", (40.0, 42.0, 46.0)), ("W", (74.0, 0.0, 21.6)), (40.712778, -74.006)),  # New York
    (("S", (33.0, 52.0, 4.8)), ("E", (151.0, 12.0, 36.0)), (-33.868, 151.21)),  # Sydney
    (("N", (39.9042,)), ("E", (116.4074,)), (39.9042, 116.4074)),  # one decimal-degree rational
    (("S", (34.0, 36.5)), ("W", (58.0, 22.8)), (-34.608333, -58.38)),  # degrees and decimal minutes
])
def test_gps_positions_in_all_four_hemispheres(lat: tuple[str, tuple[float, ...]], lon: tuple[str, tuple[float, ...]],
                                               expected: tuple[float, float]) -> None:
    position = read_meta(photo("JPEG", camera_exif(lat=lat, lon=lon, altitude=None))).position
    assert position is not None and (position.lat, position.lon) == pytest.approx(expected, abs=1e-5)
    assert position.altitude is None


@pytest.mark.parametrize("entries", [
    gps_entries(lat_ref=b""),  # no hemisphere
    gps_entries(lon_ref=b"X"),
    gps_entries(lat=((95, 1), (0, 1), (0, 1))),
    gps_entries(lat=((38, 1), (75, 1), (0, 1))),  # 75 minutes
    gps_entries(lat=((38, 0), (42, 1), (0, 1))),  # degrees over zero
    gps_entries(lat=((0, 1), (0, 1), (0, 1)), lon=((0, 1), (0, 1), (0, 1))),  # Null Island
    [*gps_entries(), ascii(9, b"V")],  # measurement void
    [ascii(1, b"N"), ascii(2, b"38.7"), ascii(3, b"W"), ascii(4, b"9.1")],  # text where rationals belong
])
def test_doubtful_positions_are_unknown(entries: list[Entry]) -> None:
    meta = meta_from_exif(block([ascii(0x010F, b"Canon")], gps=entries))
    assert meta.position is None and meta.make == "Canon"


def test_zero_over_zero_seconds_read_as_zero_and_altitude_below_sea_level() -> None:
    gps = [*gps_entries(lat=((38, 1), (42, 1), (0, 0))), (5, 1, 1, b"\x01"), rational(6, (4305, 10))]
    position = meta_from_exif(block([], gps=gps)).position
    assert as_tuple(position) == pytest.approx((38.7, -(9 + 8 / 60), -430.5))
    high = meta_from_exif(block([], gps=[*gps_entries(), rational(6, (90000, 1))])).position
    assert high is not None and high.altitude is None


@pytest.mark.parametrize("make, model, expected", [
    (b"Canon", b"Canon EOS R5", ("Canon", "EOS R5")),
    (b"NIKON CORPORATION", b"NIKON D850", ("NIKON CORPORATION", "D850")),
    (b"Apple", b"iPhone 13 Pro", ("Apple", "iPhone 13 Pro")),
    (b"Canon", b"Canon", ("Canon", "Canon")),
    (b"  OLYMPUS IMAGING CORP.  ", b"E-M5\x00\x00junk after the NUL", ("OLYMPUS IMAGING CORP.", "E-M5")),
    (b"\xff\xfeCanon", b"Canon  EOS\tR6", (None, "Canon EOS R6")),  # not UTF-8: unknown
    (b"   ", b"x" * 300, (None, None)),
])
def test_camera_make_and_model_are_cleaned(make: bytes, model: bytes, expected: tuple[str | None, str | None]) -> None:
    meta = meta_from_exif(block([ascii(0x010F, make), ascii(0x0110, model)]))
    assert (meta.make, meta.model) == expected


def test_little_endian_blocks_read_the_same() -> None:
    entries = [ascii(0x010F, b"Sony")], [ascii(0x9003, b"2022:01:01 10:00:00")]
    gps = [ascii(1, b"S"), rational(2, (33, 1), order="<"), ascii(3, b"E"), rational(4, (151, 1), order="<")]
    meta = meta_from_exif(block(*entries, gps=gps, order="<"))
    assert meta.make == "Sony" and meta.taken is not None and meta.position == Position(-33.0, 151.0)


def test_wrong_types_leave_their_field_unknown() -> None:
    meta = meta_from_exif(block([(0x010F, SHORT, 1, b"\x00\x07"), ascii(0x0110, b"EOS R5")],
                                [(0x9003, LONG, 1, b"\x00\x00\x00\x01")]))
    assert meta == PhotoMeta(model="EOS R5")


def ifd_at_8(entries: bytes, count: int, tail: bytes = b"") -> bytes:
    return b"MM\x00*\x00\x00\x00\x08" + struct.pack(">H", count) + entries + b"\x00\x00\x00\x00" + tail


def test_malformed_blocks_are_unknown_quickly_and_never_raise() -> None:
    loop_to_self = ifd_at_8(struct.pack(">HHII", 0x8769, LONG, 1, 8) + struct.pack(">HHII", 0x8825, LONG, 1, 8), 2)
    next_loops = b"MM\x00*\x00\x00\x00\x08" + struct.pack(">H", 0) + struct.pack(">I", 8)
    huge_count = ifd_at_8(struct.pack(">HHII", 0x010F, ASCII, 2 ** 31, 8), 1)
    many_entries = ifd_at_8(struct.pack(">HHII", 0x010F, ASCII, 2, 0x41000000) * 65535, 65535)
    far_offset = ifd_at_8(struct.pack(">HHII", 0x010F, ASCII, 20, 0xFFFFFFF0), 1)
    blocks = [loop_to_self, next_loops, huge_count, many_entries, far_offset, b"", b"Exif", b"MM\x00*",
              b"MM\x00*\xff\xff\xff\xff", b"II*\x00\x08\x00\x00\x00\xff\xff", b"II+\x00\x08\x00\x00\x00",
              b"\x00" * 1000, b"MM\x00*" + b"\x00" * (5 << 20)]
    started = time.monotonic()
    for data in blocks:
        assert meta_from_exif(data) == PhotoMeta()
    assert time.monotonic() - started < 1.0


def test_every_truncation_and_random_damage_of_a_real_block_is_survived() -> None:
    good = photo("JPEG", camera_exif()).info["exif"]
    full = meta_from_exif(good)
    seen = set()
    for cut in range(len(good)):
        meta = meta_from_exif(good[:cut])
        seen.add(meta.position is not None)
    assert full.position is not None and seen == {False, True}
    rng = random.Random(16)
    for _ in range(2000):
        damaged = bytearray(good)
        for _ in range(rng.randint(1, 8)):
            damaged[rng.randrange(6, len(damaged))] = rng.randrange(256)
        assert isinstance(meta_from_exif(bytes(damaged)), PhotoMeta)


def test_an_odd_info_value_or_a_closed_handle_gives_no_metadata() -> None:
    image = Image.new("RGB", (4, 4))
    image.info["exif"] = "not bytes"
    assert read_meta(image) == PhotoMeta()
    del image.info["exif"]
    image.info["Raw profile type exif"] = "\nexif\n3\nzz-not-hex\n"
    assert read_meta(image) == PhotoMeta()
    tiff = Image.new("RGB", (4, 4))
    tiff.format = "TIFF"
    closed = io.BytesIO(b"II*\x00")
    closed.close()
    assert read_meta(tiff, closed) == PhotoMeta()


def test_blocks_over_the_size_limit_are_not_read() -> None:
    big = block([ascii(0x010F, b"Canon")]) + b"\x00" * exif_module.MAX_EXIF_BYTES
    assert meta_from_exif(big) == PhotoMeta()
