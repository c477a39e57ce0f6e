"""Preprocessing speed: nasclip's decode + preprocess against Pillow's full decode + open_clip's preprocess.

Run (from the repository root; needs the test setup, `make venv`, for open_clip and PyTorch):

    .venv/bin/python bench/bench_preprocess.py

On the real-photo corpus of the image-parity tests (tests/photos.py: Debian's
wallpaper photos, 1280×1024 to 6028×3391, fetched once into the cache), one
run times, photo by photo and one thread each, best of --repeats:

  (a) nasclip as the daemon runs it: one descriptor, bounded reads,
      reduced-scale JPEG decoding with imaging.JPEG_DRAFT_MARGIN, resize
      and normalise from the manifest (ViT-B/32's: 224, crop);
  (b) the same with a draft margin of 1 (the DCT scale just above 224, as
      before the image-parity tests), to show what the margin costs;
  (c) ``PIL.Image.open`` (full decode) and open_clip's own ViT-B-32
      ``preprocess``, PyTorch on one thread;

and prints wall and CPU milliseconds per photo side by side with the ratios,
and each variant's mean absolute difference to (c) in normalised units.
``--all`` adds the derived crops (smaller, some PNG and WebP) to the corpus.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nasclip.indexing import imaging  # noqa: E402
from nasclip.model.reference import import_torch, open_clip  # noqa: E402
from nasclip.model.spec import ImageSpec  # noqa: E402
from tests.photos import daemon_tensor, is_derived, photos  # noqa: E402

SPEC = ImageSpec(size=224, resize="crop")


def with_margin(margin: int) -> Callable[[Path], np.ndarray]:
    def run(path: Path) -> np.ndarray:
        saved = imaging.JPEG_DRAFT_MARGIN
        imaging.JPEG_DRAFT_MARGIN = margin
        try:
            return daemon_tensor(path, SPEC)
        finally:
            imaging.JPEG_DRAFT_MARGIN = saved
    return run


def timed(run: Callable[[Path], np.ndarray], paths: list[Path], repeats: int) -> tuple[float, float, np.ndarray]:
    """Best wall and CPU seconds per photo over the repeats, and the tensors."""
    walls, cpus = [], []
    tensors: list[np.ndarray] = []
    for _ in range(repeats):
        tensors = []
        wall, cpu = time.perf_counter(), time.process_time()
        for path in paths:
            tensors.append(run(path))
        walls.append((time.perf_counter() - wall) / len(paths))
        cpus.append((time.process_time() - cpu) / len(paths))
    return min(walls), min(cpus), np.stack(tensors)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs over the corpus; the best one counts")
    parser.add_argument("--all", action="store_true", help="also the derived crops, not only the real photos")
    args = parser.parse_args()
    torch = import_torch()
    torch.set_num_threads(1)
    _, _, preprocess = open_clip().create_model_and_transforms("ViT-B-32", pretrained=None)
    paths = [p for p in photos() if args.all or not is_derived(p)]

    def reference(path: Path) -> np.ndarray:
        with Image.open(path) as image:
            return preprocess(image).numpy()

    print(f"warming up on {len(paths)} photos ...", file=sys.stderr, flush=True)
    for path in paths[:4]:
        daemon_tensor(path, SPEC)
        reference(path)
    c_wall, c_cpu, c_tensors = timed(reference, paths, args.repeats)
    a_wall, a_cpu, a_tensors = timed(with_margin(imaging.JPEG_DRAFT_MARGIN), paths, args.repeats)
    b_wall, b_cpu, b_tensors = timed(with_margin(1), paths, args.repeats)

    pixels = [Image.open(p).size for p in paths]
    megapixels = np.mean([w * h for w, h in pixels]) / 1e6
    print(f"nasclip preprocessing benchmark: {len(paths)} photos (mean {megapixels:.1f} MP), ViT-B/32 input "
          f"(224, crop), one thread, best of {args.repeats}")
    print(f"  {'':<58} {'wall ms':>8} {'CPU ms':>8}   {'vs (c)':>6}   |diff| to (c)")
    rows = ((f"(a) nasclip, draft margin {imaging.JPEG_DRAFT_MARGIN}", a_wall, a_cpu, a_tensors),
            ("(b) nasclip, draft margin 1", b_wall, b_cpu, b_tensors),
            ("(c) Pillow full decode + open_clip preprocess", c_wall, c_cpu, c_tensors))
    for label, wall, cpu, tensors in rows:
        print(f"  {label:<58} {wall * 1000:8.1f} {cpu * 1000:8.1f}   {c_cpu / cpu:5.2f}x   "
              f"{np.abs(tensors - c_tensors).mean():.4f}")
    print(f"  the margin costs {a_cpu / b_cpu:.2f}x the CPU of margin 1; (a) is {c_cpu / a_cpu:.2f}x faster than (c) "
          f"(wall {c_wall / a_wall:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
