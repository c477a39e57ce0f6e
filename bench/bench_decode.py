"""Decoding per format: nasclip's decode-to-tensor against Pillow's full decode and libvips' thumbnail.

Run (from the repository root; `make bench` installs pyvips and its binary wheel with the bench extra):

    .venv/bin/python bench/bench_decode.py

The photos are tests/photos.py's real camera JPEGs (Debian's wallpaper photos,
1280×1024 to 6028×3391) and the same photos re-encoded at full size as PNG,
WebP, HEIC, TIFF and AVIF (``tests.photos.converted``), made once into the
cache. Each photo is decoded to a ViT-B/32 input (224, crop) three ways, one
after the other, best of --repeats:

  nasclip:   the daemon's path (one descriptor, bounded reads, a reduced-scale
             decode where the format has one, resize and normalise from the
             manifest);
  Pillow:    ``Image.open`` + ``load`` in full, then nasclip's own RGB
             conversion, resize and normalisation;
  libvips:   ``pyvips.Image.thumbnail(path, 224, height=224, crop="centre")``
             (shrink-on-load where the loader has it), normalised the same way.

Times are CPU milliseconds per photo, all threads counted (some decoders use
several: the daemon's decode pool keeps every core busy, so CPU is what a photo
costs), with ``--clock wall`` for wall time. libvips runs with one worker
thread and no operation cache (it would answer a repeat from memory); malloc
is set as the daemon sets it. The last columns are the mean absolute difference
of nasclip's and libvips' tensors to Pillow's full decode, in normalised units
(tests/system/test_image_parity.py holds nasclip to 0.004 against open_clip).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("VIPS_CONCURRENCY", "1")  # before pyvips starts libvips

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nasclip.indexing import imaging, webp  # noqa: E402
from nasclip.indexing.memory import tune_malloc  # noqa: E402
from nasclip.model.spec import ImageSpec  # noqa: E402
from tests.photos import CONVERSIONS, converted, daemon_tensor, real_photos  # noqa: E402

SPEC = ImageSpec(size=224, resize="crop")
FORMATS = ("JPEG", *CONVERSIONS)
Decode = Callable[[Path], np.ndarray]


def pillow_full(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        image.load()
        return imaging.to_tensor(imaging.resize(imaging.to_rgb(image), SPEC), SPEC)


def libvips_thumbnail(pyvips: Any) -> Decode:
    def run(path: Path) -> np.ndarray:
        thumb = pyvips.Image.thumbnail(str(path), SPEC.size, height=SPEC.size, crop="centre")
        if thumb.hasalpha():
            thumb = thumb.flatten(background=[255, 255, 255])
        if thumb.bands == 1:
            thumb = thumb.colourspace("srgb")
        return imaging.to_tensor(Image.fromarray(thumb.cast("uchar").numpy()), SPEC)
    return run


def decoder_used(path: Path) -> str:
    data = path.read_bytes()
    found = webp.features(data) if webp.is_webp(data) else None
    if found is not None:
        factor = webp.reduction(found.width, found.height, SPEC.size)
        return f"libwebp scaled 1/{factor}" if factor > 1 else "none"
    with Image.open(path) as image:
        return imaging.reduce_on_load(image, SPEC.size) or "none"


def best(run: Decode, path: Path, repeats: int, clock: Callable[[], float]) -> tuple[float, np.ndarray]:
    """Best seconds of the repeats, and the tensor."""
    times = []
    for _ in range(repeats):
        start = clock()
        tensor = run(path)
        times.append(clock() - start)
    return min(times), tensor


def measure(paths: list[Path], runs: dict[str, Decode], repeats: int, clock: Callable[[], float]
            ) -> tuple[dict[str, float], dict[str, float], dict[str, str]]:
    """Mean ms per photo and mean |difference| to Pillow's tensor, by run; a run that fails says why."""
    ms = dict.fromkeys(runs, 0.0)
    diff = dict.fromkeys(runs, 0.0)
    failed: dict[str, str] = {}
    for path in paths:
        tensors = {}
        for name, run in runs.items():
            if name in failed:
                continue
            try:
                seconds, tensors[name] = best(run, path, repeats, clock)
            except Exception as exc:  # libvips without a decoder for the format
                failed[name] = str(exc).strip().splitlines()[-1][:100]
                continue
            ms[name] += seconds * 1000 / len(paths)
        for name, tensor in tensors.items():
            diff[name] += float(np.abs(tensor - tensors["Pillow"]).mean()) / len(paths)
    return ms, diff, failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="decodes of each photo per way; the best one counts")
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma-separated, of " + ", ".join(FORMATS))
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="CPU time of all threads, or wall")
    args = parser.parse_args()
    import pyvips

    pyvips.cache_set_max(0)
    tune_malloc()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    runs = {"nasclip": lambda p: daemon_tensor(p, SPEC), "Pillow": pillow_full, "libvips": libvips_thumbnail(pyvips)}
    real = real_photos()
    print(f"preparing {len(real)} photos in {args.formats} ...", file=sys.stderr, flush=True)
    corpus = {fmt: real if fmt == "JPEG" else converted(fmt) for fmt in args.formats.split(",")}
    megapixels = np.mean([w * h for w, h in (Image.open(p).size for p in real)]) / 1e6
    print(f"decode to a ViT-B/32 input (224, crop): {len(real)} real photos (mean {megapixels:.1f} MP) per format, "
          f"{args.clock} ms per photo, best of {args.repeats}; libvips {pyvips.version(0)}.{pyvips.version(1)}"
          f".{pyvips.version(2)} on one thread")
    print(f"  {'format':<6} {'photos':>6} {'nasclip':>8} {'Pillow':>8} {'libvips':>8} {'nasclip/libvips':>15}"
          f"   {'|diff| nasclip':>14} {'libvips':>7}   nasclip's reduced-scale decode")
    for fmt, paths in corpus.items():
        for run in runs.values():  # warm up the format's decoder
            try:
                run(paths[0])
            except Exception:  # measure() reports it
                pass
        ms, diff, failed = measure(paths, runs, args.repeats, clock)
        used = Counter(decoder_used(p) for p in paths)
        vips = f"{ms['libvips']:8.1f}" if "libvips" not in failed else f"{'n/a':>8}"
        ratio = f"{ms['nasclip'] / ms['libvips']:14.2f}x" if "libvips" not in failed else f"{'':>15}"
        vips_diff = f"{diff['libvips']:7.4f}" if "libvips" not in failed else f"{'':>7}"
        print(f"  {fmt:<6} {len(paths):>6} {ms['nasclip']:8.1f} {ms['Pillow']:8.1f} {vips} {ratio}"
              f"   {diff['nasclip']:14.4f} {vips_diff}   " + ", ".join(f"{k} ({n})" for k, n in used.most_common()))
        for name, why in failed.items():
            print(f"         {name}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
