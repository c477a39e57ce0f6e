"""Issue 18, RAW: the preview route and the reduced demosaic against LibRaw's full rendering.

The RAWs are DNGs written here (tests/raws.py) from real photos (tests/photos.py,
Debian's wallpaper photographs) and from the demo model's scenes: a Bayer
mosaic of the picture with, or without, the preview a camera embeds. No other
RAW format can be made or obtained offline (no Debian package ships camera
samples); LibRaw tells formats by content, not by name, and the code has no
per-format path.

The oracle is rawpy's full ``postprocess`` (AHD demosaic at full size, camera
white balance), the rendering a RAW converter would show:

* the half-size demosaic is the same rendering with a 2×2 cell per pixel
  instead of AHD's interpolation: after the model's resize its tensor is
  within 0.05 of the oracle's on average in normalised units (measured
  0.005-0.044 on these photos: dark, finely textured ones differ most, as
  AHD reconstructs detail a cell average cannot; not the photo decoders'
  0.004 bar, which compares two decoders of the same pixels), and its vector
  is the same (cosine > 0.999 with the demo model);
* the preview route is the camera's own rendering, whose tone curve is not
  LibRaw's (LibRaw brightens automatically and uses BT.709's gamma): levels
  differ by 0.07-0.18 normalised units, so content is compared as structure,
  the correlation of the two pictures' 64×64 channels (>= 0.98; measured
  0.999-1.000), never as levels.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_MODEL
from photos import real_pictures
from PIL import Image
from raws import write_dng
from test_decoding import picture

from nasclip.errors import DecodeError
from nasclip.indexing.bounded import DecodeLimits
from nasclip.indexing.encoder import Encoder
from nasclip.indexing.imaging import JPEG_DRAFT_MARGIN, resize, to_tensor
from nasclip.media.raw import PREVIEW_MARGIN, open_raw, raw_tensor
from nasclip.model.spec import load_model_spec
from tools.scenes import CHINESE_COLOURS, SHAPES, Scene, render

SPEC = load_model_spec(DEMO_MODEL)
LIMITS = DecodeLimits(max_pixels=120_000_000)
SIDE = SPEC.image.size


@pytest.fixture(scope="module")
def encoder():
    opened = Encoder.open(SPEC, backend="onnx", threads=1)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def pictures() -> list[Image.Image]:
    """Eight real photos at 1600 pixels on the long side (even sizes, as a Bayer sensor has)."""
    return [p.crop((0, 0, p.width // 2 * 2, p.height // 2 * 2)) for p in real_pictures(8, 5, 1600)]


def oracle(path: Path) -> Image.Image:
    import rawpy

    with rawpy.imread(str(path)) as raw:
        return Image.fromarray(raw.postprocess(use_camera_wb=True))


def tensor(image: Image.Image) -> np.ndarray:
    return to_tensor(resize(image, SPEC.image), SPEC.image)


def channels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB").resize((64, 64), Image.Resampling.BOX), dtype=np.float64)


def structure(a: Image.Image, b: Image.Image) -> float:
    """The smallest correlation of the two pictures' colour channels at 64×64."""
    x, y = channels(a), channels(b)
    return min(float(np.corrcoef(x[..., c].ravel(), y[..., c].ravel())[0, 1]) for c in range(3))


def test_without_a_preview_the_half_size_demosaic_matches_the_full_rendering(
        tmp_path: Path, pictures: list[Image.Image], encoder: Encoder) -> None:
    ours, full = [], []
    for i, shot in enumerate(pictures):
        path = write_dng(tmp_path / f"shot{i}.dng", shot)
        got = open_raw(path, SIDE, LIMITS)
        assert got.route == "demosaic" and got.raw_size == shot.size
        assert got.image.size == (shot.width // 2, shot.height // 2)
        reference = oracle(path)
        ours.append(tensor(got.image))
        full.append(tensor(reference))
        difference = np.abs(ours[-1] - full[-1])
        assert difference.mean() < 0.05, f"photo {i}: mean {difference.mean():.4f}"
    vectors = encoder.encode_images(np.stack(ours + full))
    cosines = np.sum(vectors[:len(ours)] * vectors[len(ours):], axis=1)
    assert cosines.min() > 0.999, cosines


def test_a_large_preview_is_used_and_shows_what_the_full_rendering_shows(
        tmp_path: Path, pictures: list[Image.Image]) -> None:
    for i, shot in enumerate(pictures):
        path = write_dng(tmp_path / f"shot{i}.dng", shot, preview=shot)
        got = open_raw(path, SIDE, LIMITS)
        assert got.route == "preview"
        # The preview went through the photo decoder: reduced in the DCT, never below its margin.
        assert min(got.image.size) >= min(JPEG_DRAFT_MARGIN * SIDE, min(shot.size))
        assert got.image.width / got.image.height == pytest.approx(shot.width / shot.height, rel=0.01)
        assert structure(got.image, oracle(path)) >= 0.98


def test_a_bitmap_preview_is_used_too(tmp_path: Path, pictures: list[Image.Image]) -> None:
    shot = pictures[0]
    path = write_dng(tmp_path / "bitmap.dng", shot, preview=shot.resize((shot.width // 2, shot.height // 2)),
                     preview_format="BITMAP")
    got = open_raw(path, SIDE, LIMITS)
    assert got.route == "preview" and got.image.size == (shot.width // 2, shot.height // 2)
    assert structure(got.image, oracle(path)) >= 0.98


def test_a_preview_too_small_for_the_model_is_not_used(tmp_path: Path, pictures: list[Image.Image]) -> None:
    shot = pictures[1]
    thumb = shot.copy()
    thumb.thumbnail((PREVIEW_MARGIN * SIDE, PREVIEW_MARGIN * SIDE))  # short side below the margin
    path = write_dng(tmp_path / "small-preview.dng", shot, preview=thumb)
    got = open_raw(path, SIDE, LIMITS)
    assert got.route == "demosaic"
    assert structure(got.image, oracle(path)) >= 0.99


@pytest.mark.parametrize("with_preview", [True, False])
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_the_raw_s_own_orientation_turns_preview_and_demosaic_alike(
        tmp_path: Path, orientation: int, with_preview: bool) -> None:
    upright = picture(800, 600)
    turns = {1: None, 3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
    stored = upright.transpose(turns[orientation]) if turns[orientation] is not None else upright
    path = write_dng(tmp_path / "turned.dng", stored, preview=stored if with_preview else None,
                     orientation=orientation)
    got = open_raw(path, SIDE, LIMITS)
    assert got.route == ("preview" if with_preview else "demosaic")
    assert got.image.width > got.image.height, "shown as landscape, as it was shot"
    assert structure(got.image, upright) >= 0.98
    assert structure(got.image, oracle(path)) >= 0.98


def test_a_preview_with_its_own_exif_orientation_is_turned_once(tmp_path: Path) -> None:
    upright = picture(800, 600)
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=92, exif=exif.tobytes())
    path = write_dng(tmp_path / "fuji.dng", stored, preview=buffer.getvalue(), orientation=6)
    got = open_raw(path, SIDE, LIMITS)
    assert got.image.width > got.image.height
    assert structure(got.image, upright) >= 0.98


def test_a_raw_s_capture_time_and_camera_come_from_its_own_exif(tmp_path: Path) -> None:
    path = write_dng(tmp_path / "IMG_0001.DNG", picture(400, 300), make="Canon", model="Canon EOS R5",
                     taken="2023:06:01 14:05:06")
    got = open_raw(path, SIDE, LIMITS)
    assert (got.meta.make, got.meta.model) == ("Canon", "EOS R5")
    assert got.meta.taken is not None and got.meta.taken.as_datetime().isoformat() == "2023-06-01T14:05:06"


def test_the_demo_model_finds_the_scene_a_raw_shows(tmp_path: Path, encoder: Encoder) -> None:
    rng = random.Random("raw-scenes")
    colours = list(CHINESE_COLOURS)
    texts = [f"a {c} {s}" for c in colours for s in SHAPES]
    queries = encoder.encode_texts(texts)
    hits = 0
    for i in range(12):
        scene = Scene(colours[i % 8], SHAPES[i % 4], colours[(i + 3) % 8])
        shot = render(scene, rng, 1200, 800)
        path = write_dng(tmp_path / f"scene{i}.dng", shot, preview=shot if i % 2 else None)
        vector = encoder.encode_images(raw_tensor(path, SPEC.image, LIMITS)[0][None])[0]
        hits += texts[int(np.argmax(queries @ vector))] == scene.english
    assert hits >= 10, f"{hits}/12 RAW scenes found by their own description"


# --------------------------------------------------------------------------- RAWs that fail


@pytest.mark.parametrize("with_preview", [True, False])
def test_a_truncated_raw_fails_as_truncated_and_may_be_retried(tmp_path: Path, with_preview: bool) -> None:
    shot = picture(600, 400)
    path = write_dng(tmp_path / "cut.dng", shot, preview=shot if with_preview else None)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) * 2 // 3])
    with pytest.raises(DecodeError, match="truncated") as caught:
        open_raw(path, SIDE, LIMITS)
    assert caught.value.retry


def test_an_empty_file_junk_and_a_bomb_fail_with_their_reasons(tmp_path: Path) -> None:
    empty = tmp_path / "empty.cr2"
    empty.write_bytes(b"")
    with pytest.raises(DecodeError, match="empty") as caught:
        open_raw(empty, SIDE, LIMITS)
    assert caught.value.retry
    junk = tmp_path / "junk.nef"
    junk.write_bytes(random.Random(2).randbytes(50_000))
    with pytest.raises(DecodeError, match="not a RAW file"):
        open_raw(junk, SIDE, LIMITS)
    big = write_dng(tmp_path / "big.dng", picture(600, 400))
    with pytest.raises(DecodeError, match="indexer.max_pixels"):
        open_raw(big, SIDE, DecodeLimits(max_pixels=600 * 400 - 1))
    with pytest.raises(DecodeError, match="indexer.max_file_bytes"):
        open_raw(big, SIDE, DecodeLimits(max_pixels=10**9, max_bytes=1000))
