"""Decoding every photo format a NAS holds, preprocessing from the manifest, and bad files.

Unit tests check pixels and tensors directly; one test runs a corpus of good
and bad files through the real daemon and checks what a NAS owner sees.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_MODEL, DaemonProcess, wait_until, write_config
from PIL import Image, ImageDraw, ImageOps, features

from nasclip.errors import DecodeError
from nasclip.indexing import bounded, imaging, webp
from nasclip.indexing.bounded import BoundedFile, DecodeLimits, open_bounded
from nasclip.indexing.imaging import decode_photo, load_image, load_tensor, open_photo, resize, to_tensor
from nasclip.model.spec import ImageSpec

LIMIT = 100_000_000
SPEC = ImageSpec(onnx="image.onnx", size=224, resize="crop")
RAW = dataclasses.replace(SPEC, layout="NHWC", dtype="uint8")  # the resized pixels themselves
ORIENTATION = 0x0112
# Orientation tag -> how the stored pixels were turned from the upright picture.
STORED_AS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
             5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
             8: Image.Transpose.ROTATE_270}


# --------------------------------------------------------------------------- pictures


def picture(width: int = 640, height: int = 480) -> Image.Image:
    """An upright picture no rotation or flip maps onto itself: blocks in distinct corners, a gradient."""
    x = np.linspace(0, 1, width)[None, :, None]
    y = np.linspace(0, 1, height)[:, None, None]
    base = np.concatenate([np.broadcast_to(60 + 120 * x, (height, width, 1)),
                           np.broadcast_to(60 + 120 * y, (height, width, 1)),
                           np.full((height, width, 1), 90.0)], axis=2)
    image = Image.fromarray(base.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width // 3, height // 3), fill=(230, 30, 30))
    draw.rectangle((width * 3 // 4, height * 2 // 3, width, height), fill=(20, 20, 200))
    draw.ellipse((width // 2, height // 10, width // 2 + height // 4, height // 10 + height // 4), fill=(250, 250, 60))
    return image


def with_exif(image: Image.Image, orientation: int, path: Path, fmt: str | None = None, **options) -> Path:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    image.save(path, fmt, exif=exif.tobytes(), **options)
    return path


def pixels(path: Path, spec: ImageSpec = RAW) -> np.ndarray:
    return load_tensor(path, spec, LIMIT).astype(np.float32)


def differs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


def jpeg(image: Image.Image, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def png_bomb(path: Path, side: int = 20000) -> Path:
    """A valid 8-bit greyscale PNG of side×side pixels in a few hundred kB (all zeros deflate well)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(1)
    rows = bytes(side + 1) * 200  # each row: filter byte 0 + side zero pixels
    body = b"".join(packer.compress(rows) for _ in range(side // 200)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


# --------------------------------------------------------------------------- orientation


def test_every_exif_orientation_is_applied_after_draft(tmp_path: Path) -> None:
    upright = tmp_path / "upright.jpg"
    picture(2688, 2016).save(upright, quality=92)
    want = pixels(upright)
    # Draft really happened: 2688×2016 decodes at half scale (a quarter would leave less than 2.5 × 224).
    assert open_photo(upright, 224, LIMIT).size == (1344, 1008)
    for orientation, stored_as in STORED_AS.items():
        stored = picture(2688, 2016).transpose(stored_as)
        path = with_exif(stored, orientation, tmp_path / f"o{orientation}.jpg", quality=92)
        assert differs(pixels(path), want) < 3, f"orientation {orientation} not applied"
        ignored = with_exif(stored, 1, tmp_path / f"ignored{orientation}.jpg", quality=92)
        assert differs(pixels(ignored), want) > 15, "control: the stored pixels really are turned"


def test_heic_is_decoded_in_full_even_with_large_embedded_thumbnails(tmp_path: Path) -> None:
    # Why: imaging.reduce_on_load; tests/system/test_image_parity.py shows what a thumbnail would cost.
    path = tmp_path / "phone.heic"
    picture(960, 720).save(path, "HEIF", quality=90, thumbnails=[300, 700])
    assert len(Image.open(path).info["thumbnails"]) == 2
    assert open_photo(path, 224, LIMIT).size == (960, 720), "the full picture, not a thumbnail"
    assert imaging.reduce_on_load(Image.open(path), 224) is None
    reference = tmp_path / "reference.png"
    picture(960, 720).save(reference)
    assert differs(pixels(path), pixels(reference)) < 4


@pytest.mark.parametrize("fmt", ["HEIF", "WEBP", "PNG", "TIFF"])
def test_orientation_in_other_formats(tmp_path: Path, fmt: str) -> None:
    upright = tmp_path / f"upright.{fmt.lower()}"
    picture().save(upright, fmt)
    # HEIC: pillow-heif stores the turn in the container and applies it on decode.
    turned = with_exif(picture().transpose(Image.Transpose.ROTATE_90), 6, tmp_path / f"turned.{fmt.lower()}", fmt)
    assert differs(pixels(turned), pixels(upright)) < 3


def test_damaged_or_odd_exif_does_not_stop_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bad-exif.jpg"
    data = jpeg(picture())
    # An APP1 "Exif" segment whose first IFD points far outside the block.
    segment = b"Exif\x00\x00" + b"MM\x00\x2a\xff\xff\xff\xff" + b"\x00" * 20
    path.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(segment) + 2) + segment + data[2:])
    assert open_photo(path, 224, LIMIT).size == (640, 480)
    odd = with_exif(picture(), 9, tmp_path / "odd.jpg")  # no such orientation: left as stored
    assert open_photo(odd, 224, LIMIT).size == (640, 480)


# --------------------------------------------------------------------------- modes and formats


def test_modes_become_8_bit_rgb_correctly(tmp_path: Path) -> None:
    reference = picture()
    want = np.asarray(reference.resize((299, 224)).crop((37, 0, 261, 224)), dtype=np.float32)

    cmyk = tmp_path / "cmyk.jpg"
    reference.convert("CMYK").save(cmyk, quality=95)
    assert Image.open(cmyk).mode == "CMYK"
    assert differs(pixels(cmyk), want) < 4

    grey16 = tmp_path / "grey16.png"
    Image.fromarray(np.full((300, 400), 32768, np.uint16)).save(grey16)
    assert Image.open(grey16).mode.startswith("I;16")
    assert np.allclose(pixels(grey16), 128, atol=1), "16-bit grey must be scaled, not clipped to white"

    palette = tmp_path / "palette.png"
    image = Image.new("P", (400, 300), 0)
    image.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    ImageDraw.Draw(image).rectangle((200, 0, 400, 300), fill=1)
    image.save(palette, transparency=0)
    got = pixels(palette)
    assert np.allclose(got[:, :80], 255), "transparent pixels go on white, not black"
    assert np.allclose(got[:, 150:, 0], 200, atol=2) and np.allclose(got[:, 150:, 1], 30, atol=2)

    alpha = tmp_path / "alpha.png"
    Image.new("LA", (400, 300), (0, 0)).save(alpha)
    assert np.allclose(pixels(alpha), 255)

    grey = tmp_path / "grey.jpg"
    reference.convert("L").save(grey)
    got = pixels(grey)
    assert np.allclose(got[..., 0], got[..., 1]) and np.allclose(got[..., 1], got[..., 2])


def test_animated_gif_gives_its_first_frame(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (300, 300), colour) for colour in ((220, 20, 20), (20, 20, 220), (20, 220, 20))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(path).n_frames == 3
    got = pixels(path)
    assert got[..., 0].mean() > 200 and got[..., 2].mean() < 40


@pytest.mark.parametrize("fmt,suffix", [("HEIF", "heic"), ("WEBP", "webp"), ("TIFF", "tif"), ("BMP", "bmp"),
                                        ("PNG", "png"), ("AVIF", "avif")])
def test_formats_decode_to_the_same_picture(tmp_path: Path, fmt: str, suffix: str) -> None:
    if fmt == "AVIF" and not features.check("avif"):
        pytest.skip("this Pillow has no AVIF support")
    path = tmp_path / f"photo.{suffix}"
    picture().save(path, fmt, **({"quality": 90} if fmt in ("HEIF", "WEBP", "AVIF") else {}))
    want = np.asarray(picture().resize((299, 224), Image.Resampling.BICUBIC).crop((37, 0, 261, 224)), np.float32)
    assert differs(pixels(path), want) < 4


def grating(width: int, height: int, period: float = 37) -> Image.Image:
    """Detail a few pixels apart at the model's input size: a crop placed a fraction of a pixel off shows."""
    x, y = np.arange(width)[None, :], np.arange(height)[:, None]
    wave = 128 + 90 * np.sin(2 * np.pi * x / period) * np.cos(2 * np.pi * y / (1.3 * period))
    return Image.fromarray(np.stack([wave, 255 - wave, np.full_like(wave, 100)], axis=2).astype(np.uint8))


def full_decode(path: Path, spec: ImageSpec = SPEC) -> np.ndarray:
    """Pillow's full decode, turned upright, through the same resize: what a reduced-scale decode must match."""
    with Image.open(path) as image:
        image.load()
        return to_tensor(resize(imaging.to_rgb(ImageOps.exif_transpose(image)), spec), spec)


@pytest.mark.parametrize("kind", ["lossy", "lossless", "alpha"])
def test_webp_is_decoded_by_libwebp_at_a_whole_reduced_scale_as_close_as_the_jpeg_draft(
        tmp_path: Path, kind: str) -> None:
    # 1/3 scale: 867×672 (sides rounded up), both at least 3 × 224. The rounding
    # changes the aspect enough to move the crop by half a pixel if it were placed
    # from the decoded size (test_an_odd_sized_jpeg_draft... shows what that costs).
    image = grating(2600, 2016)
    if kind == "alpha":
        image.putalpha(Image.linear_gradient("L").resize(image.size))
    path = tmp_path / f"{kind}.webp"
    image.save(path, "WEBP", **({"lossless": True} if kind == "lossless" else {"quality": 90}))
    assert webp._library() is not None, "the libwebp in Pillow's wheel (or the system's) is found"
    photo = decode_photo(path, 224, LIMIT)
    assert photo.image.size == (867, 672) and photo.size == (2600, 2016)
    assert photo.scale == (867 / 2600, 672 / 2016)
    for spec in (SPEC, dataclasses.replace(SPEC, resize="squash")):
        # The parity bar of tests/system/test_image_parity.py is 0.02 per photo in normalised units.
        assert differs(load_tensor(path, spec, LIMIT), full_decode(path, spec)) < 0.02, spec.resize
    # A photo too small to scale gives exactly Pillow's full decode.
    small = tmp_path / f"small-{kind}.webp"
    image.resize((640, 480)).save(small, "WEBP", **({"lossless": True} if kind == "lossless" else {"quality": 90}))
    assert decode_photo(small, 224, LIMIT).scale == (1.0, 1.0)
    assert np.array_equal(load_tensor(small, SPEC, LIMIT), full_decode(small))


def test_webp_falls_back_to_pillow_for_animations_and_without_libwebp(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    animated = tmp_path / "anim.webp"
    frames = [Image.new("RGB", (700, 700), colour) for colour in ((220, 20, 20), (20, 20, 220))]
    frames[0].save(animated, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert webp.features(animated.read_bytes()).animated  # type: ignore[union-attr]
    got = pixels(animated)
    assert got[..., 0].mean() > 200 and got[..., 2].mean() < 40, "the first frame"
    big = tmp_path / "big.webp"
    grating(2000, 1500).save(big, "WEBP", quality=90)
    scaled = load_tensor(big, SPEC, LIMIT)
    monkeypatch.setattr(webp, "_library", lambda: None)
    assert decode_photo(big, 224, LIMIT).scale == (1.0, 1.0), "Pillow's full decode"
    assert np.array_equal(load_tensor(big, SPEC, LIMIT), full_decode(big))
    assert differs(scaled, full_decode(big)) < 0.02


def test_webp_orientation_and_metadata_after_a_scaled_decode(tmp_path: Path) -> None:
    upright = tmp_path / "upright.webp"
    picture(2688, 2016).save(upright, "WEBP", quality=92)
    want = pixels(upright)
    turned = with_exif(picture(2688, 2016).transpose(Image.Transpose.ROTATE_90), 6, tmp_path / "turned.webp", "WEBP",
                       quality=92)
    photo = decode_photo(turned, 224, LIMIT)
    assert photo.size == (2688, 2016) and photo.image.size == (896, 672), "upright, scaled by 1/3"
    assert differs(pixels(turned), want) < 3
    exif = Image.Exif()
    exif[0x0110] = "Pixel 8"
    exif[0x0132] = "2021:07:04 18:30:00"
    dated = tmp_path / "dated.webp"
    picture(2688, 2016).save(dated, "WEBP", exif=exif.tobytes())
    found: list = []
    load_tensor(dated, SPEC, LIMIT, found)
    assert found[0].model == "Pixel 8" and found[0].taken is not None and found[0].taken.local > 0


def test_webp_chunk_walk_stops_at_damage() -> None:
    head = b"RIFF\x00\x00\x00\x00WEBP"
    chunk = b"EXIF" + struct.pack("<I", 5) + b"Exif!" + b"\x00"  # odd size: one byte of padding
    assert webp.chunks(head + chunk + b"XMP " + struct.pack("<I", 2) + b"<x") == {"exif": b"Exif!", "xmp": b"<x"}
    assert webp.chunks(head + b"EXIF" + struct.pack("<I", 1 << 30) + b"short") == {}
    assert webp.chunks(head + b"EXI") == {}


def test_an_odd_sized_jpeg_draft_keeps_the_crop_where_the_full_photo_has_it(tmp_path: Path) -> None:
    # 2500×1403 decodes at 1/2 as 1250×702, the last row partly padding. Placed from
    # that size, the crop would be 399 wide where the photo's is 398: half a pixel off.
    path = tmp_path / "odd.jpg"
    grating(2500, 1403).save(path, quality=95)
    photo = decode_photo(path, 224, LIMIT)
    assert photo.image.size == (1250, 702) and photo.size == (2500, 1403) and photo.scale == (0.5, 0.5)
    want = full_decode(path)
    assert differs(load_tensor(path, SPEC, LIMIT), want) < 0.02
    placed_from_the_decoded_size = to_tensor(resize(photo.image, SPEC), SPEC)
    assert differs(placed_from_the_decoded_size, want) > 0.1, "control: the placement is what the check sees"


# --------------------------------------------------------------------------- preprocessing


def test_crop_and_squash_follow_the_manifest() -> None:
    # 448×224: red left quarter, green middle half, blue right quarter.
    image = Image.new("RGB", (448, 224), (0, 200, 0))
    ImageDraw.Draw(image).rectangle((0, 0, 111, 223), fill=(200, 0, 0))
    ImageDraw.Draw(image).rectangle((336, 0, 447, 223), fill=(0, 0, 200))
    crop = np.asarray(resize(image, SPEC), np.float32)
    squash = np.asarray(resize(image, dataclasses.replace(SPEC, resize="squash")), np.float32)
    assert crop.shape == squash.shape == (224, 224, 3)
    assert np.allclose(crop[:, 2:-2], (0, 200, 0), atol=2), "crop keeps the centre square only"
    assert np.allclose(squash[:, :50], (200, 0, 0), atol=2) and np.allclose(squash[:, -50:], (0, 0, 200), atol=2)
    # Shortest side to 224 with torchvision's rounding, then the centre: 300×200 -> 336×224, left 56.
    # nasclip resamples only the crop's box: the same pixels to a rounding step (a few levels on
    # a sharp edge); a crop one pixel off differs by more than half a level on average.
    for size, crop, off_by_one in (((300, 200), (56, 0, 280, 224), (57, 0, 281, 224)),
                                   ((200, 300), (0, 56, 224, 280), (0, 57, 224, 281))):
        odd = picture(*size)
        scaled = odd.resize((crop[2] + crop[0], crop[3] + crop[1]), Image.Resampling.BICUBIC)
        want = np.asarray(scaled.crop(crop), np.float32)
        assert differs(np.asarray(resize(odd, SPEC), np.float32), want) < 0.01, size
        assert differs(np.asarray(scaled.crop(off_by_one), np.float32), want) > 0.5, "control"


def test_layouts_dtypes_and_bgr_give_the_same_values() -> None:
    image = resize(picture(), SPEC)
    nchw = to_tensor(image, SPEC)
    assert nchw.shape == (3, 224, 224) and nchw.dtype == np.float32
    raw = to_tensor(image, RAW)
    assert raw.shape == (224, 224, 3) and raw.dtype == np.uint8
    # uint8 NHWC is the same photo: normalising it as an NPU model does gives the float tensor.
    mean, std = np.array(SPEC.mean, np.float32), np.array(SPEC.std, np.float32)
    assert np.allclose(((raw / 255.0 - mean) / std).transpose(2, 0, 1), nchw, atol=1e-5)
    nhwc = to_tensor(image, dataclasses.replace(SPEC, layout="NHWC"))
    assert np.array_equal(nhwc.transpose(2, 0, 1), nchw)
    # BGR: the channels swap places; each colour keeps its own mean and std.
    bgr = to_tensor(image, dataclasses.replace(SPEC, channel_order="BGR"))
    assert np.array_equal(bgr, nchw[::-1])
    bgr_raw = to_tensor(image, dataclasses.replace(RAW, channel_order="BGR"))
    assert np.array_equal(bgr_raw, raw[..., ::-1])
    red = to_tensor(Image.new("RGB", (224, 224), (255, 0, 0)), dataclasses.replace(SPEC, channel_order="BGR"))
    assert np.allclose(red[2], (1 - mean[0]) / std[0]) and np.allclose(red[0], -mean[2] / std[2])


# --------------------------------------------------------------------------- bad files


def reason(path: Path, max_pixels: int = LIMIT) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        load_image(path, SPEC, max_pixels)
    return info.value


def test_bad_files_name_the_reason_and_incomplete_ones_may_be_retried(tmp_path: Path) -> None:
    whole = jpeg(picture())
    cases = {
        "truncated.jpg": (whole[: len(whole) // 2], "truncated", True),
        "empty.jpg": (b"", "empty file", True),
        "notes.jpg": (b"shopping list: milk, eggs\n" * 20, "not an image", False),
        # Pillow would hand an EPS to Ghostscript; only photo formats are tried.
        "drawing.jpg": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n" + b"0 0 moveto\n" * 50,
                        "not an image", False),
    }
    for fmt, suffix in (("WEBP", "webp"), ("HEIF", "heic"), ("PNG", "png")):
        buffer = io.BytesIO()
        picture().save(buffer, fmt)
        cases[f"truncated.{suffix}"] = (buffer.getvalue()[: buffer.tell() * 2 // 3], "truncated", True)
    for name, (data, words, retry) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        error = reason(path)
        assert words in str(error), (name, str(error))
        assert error.retry is retry, name
    shutil.rmtree(tmp_path / "missing", ignore_errors=True)
    assert "disappeared" in str(reason(tmp_path / "missing.jpg"))


def test_a_decoder_that_takes_the_whole_file_gets_it_in_a_few_reads_within_the_budget(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "scan.tif"
    picture(1600, 1200).save(path, compression="tiff_lzw")  # Pillow hands libtiff the whole file from one read()
    reads = []
    real_pread = os.pread
    monkeypatch.setattr(bounded.os, "pread", lambda fd, n, at: reads.append(n) or real_pread(fd, n, at))
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        through_the_reader = load_tensor(open_bounded(fd, size, DecodeLimits(LIMIT)), SPEC, LIMIT)
        assert np.array_equal(through_the_reader, load_tensor(path, SPEC, LIMIT))
        assert len(reads) < 10, f"{len(reads)} reads for {size} bytes"
        # A file that grew past indexer.max_file_bytes after open_bounded let it through.
        with pytest.raises(DecodeError, match="more than twice indexer.max_file_bytes"):
            BoundedFile(fd, DecodeLimits(LIMIT, max_bytes=size // 4)).readall()
    finally:
        os.close(fd)


def test_pixel_limit_is_checked_on_the_header(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    picture(800, 600).save(path)
    error = reason(path, max_pixels=400_000)
    assert "800×600" in str(error) and "indexer.max_pixels (400000)" in str(error) and not error.retry
    assert load_image(path, SPEC, 480_000).size == (224, 224)


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return png_bomb(tmp_path_factory.mktemp("bomb") / "bomb.png")


def test_a_decompression_bomb_never_gets_its_pixels_allocated(bomb: Path, tmp_path: Path) -> None:
    assert bomb.stat().st_size < 2_000_000
    smaller = png_bomb(tmp_path / "smaller.png", side=8000)  # 64 MB of pixels, for the control
    # A fresh interpreter, so its peak memory measures these decodes alone. VmHWM
    # belongs to the new address space; ru_maxrss would inherit the parent's peak.
    script = textwrap.dedent(f"""
        import re
        from pathlib import Path
        from nasclip.errors import DecodeError
        from nasclip.indexing.imaging import open_photo
        def peak():
            status = Path("/proc/self/status").read_text()
            return int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) // 1024
        before = peak()
        try:
            open_photo(Path({str(bomb)!r}), 224, {LIMIT})
        except DecodeError as exc:
            print("refused", exc)
        refused = peak() - before
        open_photo(Path({str(smaller)!r}), 224, 10**9)  # control: a decode that is allowed
        print(refused, peak() - before)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            cwd=str(Path(__file__).resolve().parents[2]))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("refused 20000×20000 pixels is more than indexer.max_pixels")
    refused_mb, decoded_mb = (int(n) for n in lines[1].split())
    assert refused_mb < 20, f"refusing the 400-megapixel bomb grew memory by {refused_mb} MB"
    assert decoded_mb > 50, f"control: decoding 64 megapixels grew memory by only {decoded_mb} MB"


# --------------------------------------------------------------------------- through the daemon


def drop_read_access() -> list[str] | None:
    """A command prefix under which chmod 000 really denies reading, or None.

    As root, permission bits do not stop reads (CAP_DAC_OVERRIDE); dropping that
    capability and CAP_DAC_READ_SEARCH makes root obey them like the nasclip user.
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


def old(path: Path, days: float = 3) -> Path:
    stamp = time.time() - days * 86400
    os.utime(path, (stamp, stamp))
    return path


def test_a_corpus_of_real_world_files_through_the_daemon(tmp_path: Path, bomb: Path) -> None:
    prefix = drop_read_access()
    photos = tmp_path / "photos"
    photos.mkdir()
    upright = picture()
    good = {
        "upright.jpg": lambda p: upright.save(p, quality=92),
        "rotated.jpg": lambda p: with_exif(upright.transpose(Image.Transpose.ROTATE_90), 6, p, quality=92),
        "sideways.jpg": lambda p: upright.transpose(Image.Transpose.ROTATE_90).save(p, quality=92),
        "cmyk.jpg": lambda p: upright.convert("CMYK").save(p, quality=92),
        "grey16.png": lambda p: Image.fromarray((np.asarray(upright.convert("L"), np.uint16) * 257)).save(p),
        "palette.png": lambda p: upright.convert("P", palette=Image.Palette.ADAPTIVE).save(p, transparency=3),
        "anim.gif": lambda p: upright.save(p, save_all=True, append_images=[upright.rotate(90)], duration=50),
        "phone.heic": lambda p: upright.save(p, "HEIF", quality=90),
        "photo.webp": lambda p: upright.save(p, "WEBP", quality=90),
        "scan.tif": lambda p: upright.save(p, "TIFF"),
        "paint.bmp": lambda p: upright.save(p, "BMP"),
    }
    if features.check("avif"):
        good["photo.avif"] = lambda p: upright.save(p, "AVIF", quality=90)
    for name, write in good.items():
        write(photos / name)
        old(photos / name)
    bad = {
        "truncated.jpg": "truncated",
        "empty.jpg": "empty file",
        "notes.jpg": "not an image",
        "huge.png": "more than indexer.max_pixels (100000000)",
    }
    whole = jpeg(upright)
    (photos / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "notes.jpg").write_text("not a photo at all\n")
    shutil.copy(bomb, photos / "huge.png")
    if prefix is not None:
        (photos / "locked.jpg").write_bytes(whole)
        os.chmod(photos / "locked.jpg", 0)
        bad["locked.jpg"] = "permission denied"
    for name in bad:
        old(photos / name)
    # Still arriving: half a JPEG, or nothing yet, written just now is retried, not failed.
    arriving = photos / "arriving.jpg"
    arriving.write_bytes(whole[: len(whole) // 3])
    starting = photos / "starting.jpg"
    starting.write_bytes(b"")

    config = write_config(tmp_path / "nasclip.yaml", {"photos": photos}, indexer={"max_pixels": LIMIT})
    daemon = DaemonProcess(config, prefix=prefix).start()
    try:
        def settled() -> dict | None:
            status = daemon.status()
            photos_ = status["photos"]
            # The two arriving files are pending: tried, and waiting for a retry.
            done = (photos_["indexed"], photos_["failed"], photos_["pending"]) == (len(good), len(bad), 2)
            return status if done and status["encoded"]["run"] == len(good) else None
        status = wait_until(settled, 60, interval=0.2, what="every file indexed, failed or waiting")
        assert status["rate"] > 0

        def waiting() -> dict[str, str]:
            with sqlite3.connect(f"file:{tmp_path / 'state' / 'catalog.db'}?mode=ro", uri=True) as db:
                rows = db.execute("SELECT relpath, error FROM files WHERE state='pending' AND attempts>0 "
                                  "AND retry_at IS NOT NULL").fetchall()
            return {os.fsdecode(path): error for path, error in rows}
        retrying = wait_until(lambda: len(waiting()) == 2 and waiting(), 20, what="the arriving files to be tried")
        assert "truncated" in retrying["arriving.jpg"] and "empty" in retrying["starting.jpg"]
        failures = {Path(f["path"]).name: f["error"] for f in daemon.request(op="failed")["failed"]}
        assert set(failures) == set(bad), failures
        for name, words in bad.items():
            assert words in failures[name], (name, failures[name])
        # The 400-megapixel bomb was refused from its header: decoding it would take 400 MB at least.
        status_text = Path(f"/proc/{daemon.proc.pid}/status").read_text()
        peak_mb = int(re.search(r"VmHWM:\s+(\d+) kB", status_text).group(1)) // 1024
        assert peak_mb < 400, f"the daemon's memory peaked at {peak_mb} MB"

        # EXIF orientation applied: the rotated file's stored vector is the upright one's.
        hits = daemon.request(op="search", image=str(photos / "rotated.jpg"), k=50)["results"]
        scores = {Path(h["path"]).name: h["score"] for h in hits}
        assert scores["upright.jpg"] > 0.99, scores
        assert scores["upright.jpg"] > scores["sideways.jpg"], scores
        for name in ("cmyk.jpg", "phone.heic", "photo.webp", "scan.tif", "paint.bmp"):
            assert scores[name] > 0.98, (name, scores)

        # A failed file that changes is tried again; the arriving file completes.
        (photos / "notes.jpg").write_bytes(whole)
        arriving.write_bytes(whole)
        starting.write_bytes(whole)
        wait_until(lambda: daemon.status()["photos"]["indexed"] == len(good) + 3, 30, interval=0.2,
                   what="the changed and the completed files to be indexed")
        assert daemon.proc is not None and daemon.proc.poll() is None
        assert daemon.request(op="ping")["ok"]
        if prefix is not None:
            # Permissions fixed: chmod changes neither size nor mtime, so `nasclip scan` retries it.
            os.chmod(photos / "locked.jpg", 0o644)
            reply = daemon.request(op="scan")
            assert reply["ok"] and reply["retrying"] == 1, reply
            wait_until(lambda: daemon.status()["photos"]["indexed"] == len(good) + 4, 30, interval=0.2,
                       what="the no longer locked photo to be indexed")
        if prefix is None:
            pytest.skip("running as root without setpriv: the unreadable-file case could not be checked")
    finally:
        daemon.stop()


def test_a_decoder_bug_costs_one_photo_not_the_worker(tmp_path: Path, monkeypatch) -> None:
    from nasclip.config import IndexerConfig
    from nasclip.indexing import decode as decode_module
    from nasclip.indexing import indexer as indexer_module
    from nasclip.indexing.encoder import Encoder
    from nasclip.model.spec import load_model_spec
    from nasclip.store.store import Seen, Store

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        picture().save(photos / name)
        old(photos / name)
    real = decode_module.load_tensor

    def buggy(source, *args):  # the indexer hands over the file it opened
        if os.readlink(f"/proc/self/fd/{source.raw.fd}").endswith("/b.jpg"):
            raise RuntimeError("decoder bug")
        return real(source, *args)

    monkeypatch.setattr(decode_module, "load_tensor", buggy)
    spec = load_model_spec(DEMO_MODEL)
    store = Store(tmp_path / "state", spec.id, spec.embedding_dim)
    encoder = Encoder.open(spec, backend="onnx", threads=1, text=False)
    indexer = indexer_module.Indexer(store, encoder, IndexerConfig(decode_threads=2), {"p": photos})
    try:
        store.apply([Seen("p", p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in photos.iterdir()])
        assert indexer.loop() == 3
        assert store.counts()["indexed"] == 2
        row = store.catalog.get("p", "b.jpg")
        assert row.state == "pending" and row.attempts == 1 and "decoder bug" in row.error
    finally:
        indexer.close()
        store.close()
