"""nasclip's photo preprocessing against open_clip's and Chinese-CLIP's own transforms, on real photos.

nasclip's tensor is the daemon's: one descriptor, bounded reads, reduced-scale
JPEG decoding and the manifest's resize (``nasclip models embed`` does the
same). The references decode in full with ``PIL.Image.open`` and apply the
packages' own transforms: open_clip's ``preprocess`` for ViT-B-32 and
ViT-B-16 (shortest side to 224, bicubic, centre crop) and Chinese-CLIP's
``image_transform(224)`` (a bicubic squash to 224×224, no crop). Both use
OpenAI's mean/std.

The corpus is tests/photos.py's: Debian's wallpaper photos and re-encoded
crops of them. The differences are measured in normalised units (what the
encoder sees), and through architecture-exact ViT-B/32 and ViT-B/16 towers
with seeded random weights (no download). A random tower maps different
photos close together (their mean cosine is printed beside each result) and
its first LayerNorm all but hides an error of scale and offset, so besides
the cosine each photo's two embeddings are compared with the distance to
the nearest other photo: a share near 1 would change what a search finds.
The negative control shows what each check catches: ImageNet's mean/std
fails the pixel bounds and the distance share while the cosine stays above
0.999; a squash where the model crops fails all three. The ViT-B/16 test
uses Chinese-CLIP's transform only (128 runs of the tower).

The other formats a NAS holds are checked on a third of the real photos (the
20-megapixel one among them) re-encoded at full size as PNG, WebP, HEIC, TIFF
and AVIF (``tests.photos.converted``), against open_clip's transform of the
same file decoded in full, with the same pixel bounds. A control shows that an
embedded HEIC thumbnail in place of the photo would fail them. Run with ``-s``
to see the figures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from PIL import Image

from nasclip.indexing.imaging import resize, to_rgb, to_tensor
from nasclip.model.reference import cn_clip, import_torch, open_clip
from nasclip.model.spec import ImageSpec
from tests.photos import CONVERSIONS, converted, daemon_tensor, is_derived, photos

OPEN_CLIP = ImageSpec(size=224, resize="crop")
CHINESE_CLIP = ImageSpec(size=224, resize="squash")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SEED = 14
BATCH = 64

# Measured on the 64-photo corpus: mean 0.0013, p99 0.015, worst photo 0.005 (open_clip's crop);
# a 1x JPEG draft margin gave 0.011, 0.135 and 0.074.
MAX_MEAN, MAX_P99, MAX_PHOTO_MEAN = 0.004, 0.04, 0.02
MIN_MEAN_COSINE, MIN_COSINE = 0.999, 0.995
# ViT-B/32: 0.004 and 0.027 of the way to the nearest other photo; ImageNet's mean/std gives 0.12 and 1.07.
MAX_GAP_MEAN, MAX_GAP = 0.02, 0.1


def reference_tensors(paths: list[Path], transform: Callable[[Image.Image], Any]) -> np.ndarray:
    out = []
    for path in paths:
        with Image.open(path) as image:
            out.append(transform(image).numpy())
    return np.stack(out)


@pytest.fixture(scope="module")
def corpus() -> list[Path]:
    return photos()


@pytest.fixture(scope="module")
def references() -> dict[str, Callable[[Image.Image], Any]]:
    """Each package's own preprocessing, by the name of the transform."""
    oc = open_clip()
    cn_clip()
    from cn_clip.clip.utils import image_transform

    _, _, b32 = oc.create_model_and_transforms("ViT-B-32", pretrained=None)
    _, _, b16 = oc.create_model_and_transforms("ViT-B-16", pretrained=None)
    assert repr(b32) == repr(b16), "ViT-B-16 preprocesses like ViT-B-32, so one reference serves both"
    return {"open_clip": b32, "cn_clip": image_transform(224)}


@pytest.fixture(scope="module")
def tensors(corpus: list[Path], references: dict[str, Callable[[Image.Image], Any]]
            ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(nasclip's, the reference's) tensors of every photo, by transform."""
    specs = {"open_clip": OPEN_CLIP, "cn_clip": CHINESE_CLIP}
    return {name: (np.stack([daemon_tensor(p, spec) for p in corpus]), reference_tensors(corpus, references[name]))
            for name, spec in specs.items()}


class Towers:
    """Seeded random-weight image towers, built once each; embeddings are kept by name."""

    def __init__(self) -> None:
        self.torch = import_torch()
        self.torch.set_num_threads(min(2, os.cpu_count() or 1))
        self._models: dict[str, Any] = {}
        self._done: dict[tuple[str, str], np.ndarray] = {}

    def embed(self, arch: str, name: str, batch: np.ndarray) -> np.ndarray:
        """Unit-length embeddings of a batch of tensors, computed once per (arch, name)."""
        if (arch, name) in self._done:
            return self._done[arch, name]
        torch = self.torch
        if arch not in self._models:
            torch.manual_seed(SEED)
            self._models[arch] = open_clip().create_model(arch, pretrained=None).eval()
        out = []
        with torch.inference_mode():
            for start in range(0, len(batch), BATCH):
                out.append(self._models[arch].encode_image(torch.from_numpy(batch[start:start + BATCH])).numpy())
        vectors = np.concatenate(out).astype(np.float64)
        self._done[arch, name] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return self._done[arch, name]


@pytest.fixture(scope="module")
def towers() -> Towers:
    return Towers()


def pixel_report(label: str, ours: np.ndarray, ref: np.ndarray, corpus: list[Path]) -> tuple[float, float, float]:
    """Mean abs, p99 and the worst photo's mean abs difference; printed."""
    diff = np.abs(ours - ref)
    per_photo = diff.reshape(len(diff), -1).mean(axis=1)
    worst = int(per_photo.argmax())
    mean, p99 = float(diff.mean()), float(np.percentile(diff, 99))
    print(f"\n{label}: |difference| mean {mean:.4f}, p99 {p99:.4f}, max {diff.max():.3f}; "
          f"worst photo {corpus[worst].name} (mean {per_photo[worst]:.4f})")
    return mean, p99, float(per_photo[worst])


@dataclass(frozen=True)
class Agreement:
    """How close nasclip's embedding of each photo lands to the reference's."""

    cosine_mean: float
    cosine_min: float
    gap_mean: float  # distance between the two, as a share of the distance to the nearest other photo
    gap_max: float

    def holds(self) -> bool:
        return self.cosine_mean >= MIN_MEAN_COSINE and self.cosine_min >= MIN_COSINE \
            and self.gap_mean <= MAX_GAP_MEAN and self.gap_max <= MAX_GAP


def agreement(label: str, ours: np.ndarray, reference: np.ndarray, rows: np.ndarray | None = None) -> Agreement:
    """ours[k] against reference[rows[k]] (all rows by default), the nearest other photo among all; printed."""
    rows = np.arange(len(reference)) if rows is None else rows
    mine = reference[rows]
    cosines = (ours * mine).sum(axis=1)
    apart = np.linalg.norm(mine[:, None, :] - reference[None, :, :], axis=2)
    apart[np.arange(len(rows)), rows] = np.inf
    gaps = np.linalg.norm(ours - mine, axis=1) / apart.min(axis=1)
    others = (reference @ reference.T)[~np.eye(len(reference), dtype=bool)]
    result = Agreement(float(cosines.mean()), float(cosines.min()), float(gaps.mean()), float(gaps.max()))
    print(f"\n{label}: cosine mean {result.cosine_mean:.6f}, min {result.cosine_min:.6f} "
          f"(different photos: mean {others.mean():.3f}); distance / nearest other photo: "
          f"mean {result.gap_mean:.4f}, max {result.gap_max:.4f}")
    return result


def test_the_corpus_is_real_photos_in_jpeg_png_and_webp(corpus: list[Path]) -> None:
    real = [p for p in corpus if not is_derived(p)]
    formats = {Image.open(p).format for p in corpus}
    assert len(corpus) >= 50 and len(real) >= 38, (len(corpus), len(real))
    assert {"JPEG", "PNG", "WEBP"} <= formats, formats
    sizes = [Image.open(p).size for p in real]
    assert max(w * h for w, h in sizes) > 20_000_000, "a camera-size photo, where the draft decode matters most"


@pytest.mark.parametrize("transform", ["open_clip", "cn_clip"])
def test_tensors_match_the_reference_transform_pixel_for_pixel(
        transform: str, tensors: dict[str, tuple[np.ndarray, np.ndarray]], corpus: list[Path]) -> None:
    ours, ref = tensors[transform]
    assert ours.shape == ref.shape == (len(corpus), 3, 224, 224) and ours.dtype == ref.dtype == np.float32
    mean, p99, worst = pixel_report(f"{transform} tensors", ours, ref, corpus)
    assert mean <= MAX_MEAN and p99 <= MAX_P99 and worst <= MAX_PHOTO_MEAN, (mean, p99, worst)


def check_embeddings(arch: str, transform: str, tensors: dict[str, tuple[np.ndarray, np.ndarray]],
                     towers: Towers, every: int = 1) -> None:
    ours, ref = (batch[::every] for batch in tensors[transform])
    result = agreement(f"{arch}, {transform}", towers.embed(arch, f"{transform} nasclip", ours),
                       towers.embed(arch, f"{transform} reference", ref))
    assert result.holds(), result


@pytest.mark.parametrize("transform", ["open_clip", "cn_clip"])
def test_vit_b32_embeddings_of_both_tensors_agree(
        transform: str, tensors: dict[str, tuple[np.ndarray, np.ndarray]], towers: Towers) -> None:
    check_embeddings("ViT-B-32", transform, tensors, towers)


def test_vit_b16_embeddings_of_both_tensors_agree(
        tensors: dict[str, tuple[np.ndarray, np.ndarray]], towers: Towers) -> None:
    # Chinese-CLIP's transform: the registry's ViT-B/16 is Chinese-CLIP's. (Both
    # transforms on ViT-B/16 would be 256 tower runs, minutes on 2 cores; the
    # open_clip crop is checked through ViT-B/32, whose preprocessing is the same.)
    # Every other photo of the corpus (32 of 64, all sizes and formats): this checks
    # the second tower, the pixels themselves are checked on all 64 above.
    check_embeddings("ViT-B-16", "cn_clip", tensors, towers, every=2)


def renormalised(batch: np.ndarray, spec: ImageSpec, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """The same pixels normalised with another mean/std."""
    shape = (1, 3, 1, 1)
    pixels = batch * np.reshape(spec.std, shape) + np.reshape(spec.mean, shape)
    return ((pixels - np.reshape(mean, shape)) / np.reshape(std, shape)).astype(np.float32)


def test_the_checks_fail_on_imagenet_mean_std_and_on_a_squash_where_the_model_crops(
        tensors: dict[str, tuple[np.ndarray, np.ndarray]], towers: Towers, corpus: list[Path]) -> None:
    ours, ref = tensors["open_clip"]
    rows = np.arange(0, len(corpus), 4)  # a quarter of the corpus is plenty to fail on
    mistakes = {"ImageNet mean/std": renormalised(ours[rows], OPEN_CLIP, IMAGENET_MEAN, IMAGENET_STD),
                "squash instead of crop": tensors["cn_clip"][0][rows]}
    reference = towers.embed("ViT-B-32", "open_clip reference", ref)
    for label, wrong in mistakes.items():
        mean, p99, _ = pixel_report(f"control, {label}", wrong, ref[rows], [corpus[i] for i in rows])
        assert mean > 10 * MAX_MEAN and p99 > MAX_P99, f"{label}: the pixel check would not notice"
        result = agreement(f"control, {label}, ViT-B-32", towers.embed("ViT-B-32", label, wrong), reference, rows)
        assert not result.holds(), f"{label}: the embedding check would not notice"
        assert result.gap_mean > 5 * MAX_GAP_MEAN, result
        if label.startswith("squash"):  # a random tower's cosine alone is blind to an affine normalisation error
            assert result.cosine_mean < MIN_MEAN_COSINE and result.cosine_min < MIN_COSINE, result


@pytest.fixture(scope="module")
def sample(corpus: list[Path]) -> list[Path]:
    """A third of the real photos, the 20-megapixel one among them."""
    real = [p for p in corpus if not is_derived(p)]
    chosen = real[2::3]
    assert max(w * h for w, h in (Image.open(p).size for p in chosen)) > 20_000_000
    return chosen


@pytest.mark.parametrize("fmt", sorted(CONVERSIONS))
def test_other_formats_match_the_reference_transform_pixel_for_pixel(
        fmt: str, sample: list[Path], references: dict[str, Callable[[Image.Image], Any]]) -> None:
    paths = converted(fmt, sample)
    ours = np.stack([daemon_tensor(p, OPEN_CLIP) for p in paths])
    mean, p99, worst = pixel_report(f"{fmt} tensors", ours, reference_tensors(paths, references["open_clip"]), paths)
    assert mean <= MAX_MEAN and p99 <= MAX_P99 and worst <= MAX_PHOTO_MEAN, (mean, p99, worst)


def thumbnail_tensor(path: Path) -> np.ndarray:
    """The tensor of the smallest embedded thumbnail with both sides at least 224, as pillow-heif's draft picks it."""
    with Image.open(path) as image:
        assert image.draft("RGB", (224, 224)) is not None, f"{path.name} has no thumbnail that large"
        image.load()
        return to_tensor(resize(to_rgb(image), OPEN_CLIP), OPEN_CLIP)


def test_the_checks_fail_on_a_heic_thumbnail_in_place_of_the_photo(
        sample: list[Path], references: dict[str, Callable[[Image.Image], Any]]) -> None:
    paths = converted("HEIF", sample)
    ours = np.stack([thumbnail_tensor(p) for p in paths])
    mean, p99, worst = pixel_report("control, HEIC thumbnails (libheif's)", ours,
                                    reference_tensors(paths, references["open_clip"]), paths)
    assert mean > 3 * MAX_MEAN and worst > MAX_PHOTO_MEAN, "imaging.reduce_on_load's reason to decode HEIC in full"


def test_a_fetch_that_apt_cannot_serve_fails_with_apts_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.photos

    monkeypatch.setattr(tests.photos, "PACKAGES", ("nasclip-no-such-package",))
    with pytest.raises(RuntimeError, match=r"(?s)could not fetch the test photos.*nasclip-no-such-package"):
        tests.photos._fetch(tmp_path)
