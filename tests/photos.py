"""Real camera photos for the image-parity tests and the preprocessing benchmark.

Debian's wallpaper packages ship real photographs (landscapes, macro shots,
a portrait-format still life, one greyscale architecture shot) at camera
resolutions from 1280×1024 to 6028×3391: what reduced-scale JPEG decoding
meets on a NAS. ``photos()`` fetches them once with ``apt-get download`` and
``dpkg-deb -x`` (no root needed) into ``$XDG_CACHE_HOME/nasclip-test/photos``
(``~/.cache`` without it) and reuses them on every later run.

The four packages hold 38 photos (the rest of what they ship is vector or
digital art, left out by name below). To reach ``TOTAL`` the corpus adds
derived files: random crops of the real photos, re-encoded at other sizes
(256 to 2400 pixels on the long side, panoramas and tall crops among them),
JPEG qualities (55-95), chroma subsampling (4:4:4 and 4:2:0) and progressive
scans, plus a few as PNG and lossy WebP, since no package ships a photo in
those formats. Derived files are named ``derived-*`` and are the same bytes
on every run. A fetch that cannot reach the mirror fails with the apt
output: the parity tests must not turn into skips.

``converted(fmt)`` re-encodes the real photos at full size in the other
formats a NAS holds (PNG, WebP, HEIC, TIFF, AVIF), with the settings a
camera, phone or editor would use, once each into
``$XDG_CACHE_HOME/nasclip-test/formats``: what bench/bench_decode.py times
and the parity tests of those formats decode.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from nasclip.config import IndexerConfig
from nasclip.indexing.bounded import decode_limits, open_bounded
from nasclip.indexing.imaging import load_tensor
from nasclip.model.spec import ImageSpec

# Bump when the selection or the derivation changes: the cache is rebuilt.
VERSION = 1
TOTAL = 64

# (package, path inside it): the photographs, chosen by looking at every image the packages ship.
REAL = (
    *(("lomiri-wallpapers-16.04", f"usr/share/backgrounds/{name}.jpg") for name in (
        "Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Picture_0B_by_freespace", "Picture_1A_by_freespace",
        "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi", "analogpattern_by_Peter_Nerlich",
        "free_by_Peter_Nerlich", "friends_by_Aitzol_Berasategi", "greentock_by_Peter_Nerlich",
        "life_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi", "seeding_by_Clements_Engelhardt",
        "sunset_by_Aitzol_Berasategi")),
    ("lomiri-wallpapers-20.04", "usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg"),
    *(("mate-backgrounds", f"usr/share/backgrounds/mate/nature/{name}.jpg") for name in (
        "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "Storm",
        "TwoWings", "Wood", "YellowFlower")),
    # Plasma's other sizes are symlinks to this one.
    *(("plasma-workspace-wallpapers", f"usr/share/wallpapers/{name}/contents/images/2560x1600.jpg") for name in (
        "BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey", "Kite",
        "OneStandsOut", "Path", "summer_1am")),
)
PACKAGES = tuple(sorted({package for package, _ in REAL}))

# Long side of the derived crops, and their aspect ratios (width / height).
SIDES = (256, 300, 384, 480, 640, 800, 1024, 1400, 1800, 2400)
ASPECTS = (4 / 3, 3 / 2, 16 / 9, 1.0, 3 / 4, 2 / 3, 3.0, 0.5)


# Bump when a format's settings change: those files are made again.
FORMATS_VERSION = 1
# Format -> (suffix, save options). HEIC as phones write it: a grid of 512-pixel tiles and
# a 320-pixel thumbnail, plus a 1024-pixel one as a libheif tool may add (large enough that
# a decoder might take it for the photo). TIFF as editors export it (LZW); lossy WebP and
# AVIF at a photo quality.
CONVERSIONS: dict[str, tuple[str, dict[str, object]]] = {
    "PNG": ("png", {}),
    "WEBP": ("webp", {"quality": 90, "method": 4}),
    "HEIF": ("heic", {"quality": 90, "tile_size": 512, "thumbnails": [320, 1024]}),
    "TIFF": ("tif", {"compression": "tiff_lzw"}),
    "AVIF": ("avif", {"quality": 90, "speed": 6}),
}


def cache_dir() -> Path:
    """Where the corpus lives between runs."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nasclip-test" / "photos"


def photos() -> list[Path]:
    """The corpus (real photos first, then the derived ones), fetched on first use; sorted, the same every run."""
    folder = cache_dir()
    stamp = folder / f"complete-v{VERSION}"
    if stamp.exists():
        names = stamp.read_text().split()
        if names and all((folder / name).is_file() for name in names):
            return [folder / name for name in names]
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    real = _fetch(folder)
    derived = _derive(real, folder, TOTAL - len(real))
    files = real + derived
    stamp.write_text("\n".join(p.name for p in files) + "\n")
    return files


def real_photos() -> list[Path]:
    """The packages' own photos, without the derived crops."""
    return [p for p in photos() if not is_derived(p)]


def real_pictures(count: int, step: int, side: int) -> list[Image.Image]:
    """count of the real photos (every step-th), as RGB pictures at most side pixels on the long side."""
    chosen = []
    for path in real_photos()[::step][:count]:
        with Image.open(path) as image:
            picture = image.convert("RGB")
        picture.thumbnail((side, side))
        chosen.append(picture)
    return chosen


def converted(fmt: str, sources: list[Path] | None = None) -> list[Path]:
    """sources (by default every real photo) re-encoded at full size as fmt, a CONVERSIONS key; made once each."""
    suffix, options = CONVERSIONS[fmt]
    import nasclip.indexing.imaging  # noqa: F401  (registers the HEIF plugin)

    folder = cache_dir().parent / "formats" / f"v{FORMATS_VERSION}" / suffix
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for source in real_photos() if sources is None else sources:
        target = folder / f"{source.stem}.{suffix}"
        if not target.is_file():
            partial = target.with_name(target.name + ".part")
            with Image.open(source) as image:
                image.convert("RGB").save(partial, fmt, **options)  # the greyscale one too: every format has RGB
            partial.rename(target)
        out.append(target)
    return out


def daemon_tensor(path: Path, spec: ImageSpec) -> np.ndarray:
    """The daemon's decode and preprocessing of one photo, as `nasclip models embed` runs it."""
    limits = decode_limits(IndexerConfig())  # the defaults a config without an indexer section gets
    fd = os.open(path, os.O_RDONLY)
    try:
        return load_tensor(open_bounded(fd, os.fstat(fd).st_size, limits), spec, limits.max_pixels)
    finally:
        os.close(fd)


def is_derived(path: Path) -> bool:
    """True for the re-encoded crops, False for the packages' own files."""
    return path.name.startswith("derived-")


def _fetch(folder: Path) -> list[Path]:
    with tempfile.TemporaryDirectory(prefix="nasclip-photos-") as tmp:
        work = Path(tmp)
        done = subprocess.run(["apt-get", "download", *PACKAGES], cwd=work, capture_output=True, text=True)
        debs = sorted(work.glob("*.deb"))
        if done.returncode != 0 or len(debs) != len(PACKAGES):
            raise RuntimeError(
                f"could not fetch the test photos: `apt-get download {' '.join(PACKAGES)}` exited with "
                f"{done.returncode}:\n{done.stderr.strip() or done.stdout.strip()}\n"
                "The image-parity tests need Debian's package mirror (run `apt-get update` first if apt "
                "cannot locate the packages), or a filled cache in " + str(folder))
        root = work / "root"
        for deb in debs:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        real = []
        for package, inside in REAL:
            source = root / inside
            if not source.is_file():
                raise RuntimeError(f"{package} no longer ships {inside}; update REAL in {__file__}")
            parts = Path(inside).parts
            stem = parts[3] if package.startswith("plasma") else Path(inside).stem
            target = folder / f"{package}-{stem}{source.suffix.lower()}"
            shutil.copyfile(source.resolve(), target)
            real.append(target)
        return real


def _derive(real: list[Path], folder: Path, count: int) -> list[Path]:
    rng = random.Random(20261204)
    out = []
    for index in range(max(0, count)):
        source = real[index % len(real)]
        with Image.open(source) as image:
            image.load()
            crop = _crop(image, rng)
        side = SIDES[index % len(SIDES)]
        scale = side / max(crop.size)
        if scale < 1:
            crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))),
                               Image.Resampling.LANCZOS)
        tag = hashlib.sha1(f"{source.name}{index}".encode()).hexdigest()[:6]
        if index % 9 == 4:
            target = folder / f"derived-{index:02d}-{tag}.png"
            crop.save(target, optimize=False)
        elif index % 9 == 7:
            target = folder / f"derived-{index:02d}-{tag}.webp"
            crop.save(target, quality=rng.choice((75, 85, 95)), method=4)
        else:
            target = folder / f"derived-{index:02d}-{tag}.jpg"
            crop.save(target, quality=rng.choice((55, 70, 80, 90, 95)), subsampling=rng.choice((0, 2)),
                      progressive=index % 3 == 0)
        out.append(target)
    return out


def _crop(image: Image.Image, rng: random.Random) -> Image.Image:
    """A crop of at least 40% of the shorter side, at one of ASPECTS."""
    aspect = rng.choice(ASPECTS)
    width, height = image.size
    h = rng.uniform(0.4, 1.0) * min(height, width / aspect)
    w = h * aspect
    left = rng.uniform(0, width - w)
    top = rng.uniform(0, height - h)
    return image.crop((round(left), round(top), round(left + w), round(top + h)))
