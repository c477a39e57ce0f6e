"""Indexing speed: nasclip end to end against the encoder's ceiling and a typical PyTorch indexer.

Run (from the repository root; needs the `bench` extra, torch==2.13.0 and transformers):

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/bench_indexing.py

The first run builds, under the git-ignored bench/.cache/, an architecture-exact
CLIP ViT-B/32 image tower with random weights (speed does not depend on the
weights) exported to ONNX as a nasclip model folder, its int8 copy made by
`nasclip models quantize`, and a corpus of synthetic 12-megapixel JPEGs
(smooth structure, edges and sensor-like noise, so they compress like phone
photos: 3-5 MB each; each carries a camera's EXIF, capture time and a GPS
position somewhere on land, and every fourth one orientation 6). Later
runs reuse them. One run prints, side by side:

  (a) encoder only: ONNX Runtime on already preprocessed tensors, batch 8;
  (b) nasclip end to end: the real daemon (a subprocess on a temporary
      config) indexing the corpus, files on disk to vectors in the index,
      with its peak memory (VmHWM);
  (c) a typical PyTorch CLIP indexer: PyTorch eager model, plain
      ``Image.open().convert("RGB")`` decode in the loop, torchvision-style
      resize (PIL bicubic without draft or reducing_gap, which is exactly what
      torchvision's Resize does on PIL images; torchvision itself is not
      needed), centre crop, normalise, batch 8;

  (b0) as (b) with ``indexer.read_metadata: false``: what reading each
      photo's capture time, camera and position, and naming its place, costs;

the ratios b/a, b/b0 and b/c, and the int8 model's encoder-only images/s and
the mean cosine similarity of its embeddings to fp32 on the same corpus.
Targets on 2 cores: b/a >= 0.85, b/b0 >= 0.95 (issue 16), b/c >= 2.5, int8
>= 1.7x fp32 with mean cosine >= 0.99, daemon peak memory < 1 GB.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nasclip.errors import DaemonUnavailable  # noqa: E402
from nasclip.indexing.backfill import complete  # noqa: E402
from nasclip.indexing.encoder import Encoder  # noqa: E402
from nasclip.indexing.imaging import load_tensor  # noqa: E402
from nasclip.meta.exif import read_meta  # noqa: E402
from nasclip.meta.places import Places, gazetteer  # noqa: E402
from nasclip.model.spec import load_model_spec  # noqa: E402
from nasclip.query.client import call  # noqa: E402

CACHE = ROOT / "bench" / ".cache"
# Where the corpus's photos say they were taken: cities of every continent.
PLACES = [(38.72, -9.14), (39.90, 116.41), (40.71, -74.01), (-33.87, 151.21), (35.68, 139.69), (-23.55, -46.63),
          (48.86, 2.35), (-1.29, 36.82), (22.32, 114.17), (55.76, 37.62), (19.43, -99.13)]
DEMO = ROOT / "models" / "demo"
BATCH = 8
WIDTH, HEIGHT = 4000, 3000
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)

MODEL_YAML = """\
# Built by bench/bench_indexing.py: CLIP ViT-B/32 image tower with RANDOM weights,
# for speed measurements only (search results are meaningless).
format: 1
id: bench-vitb32-random-1
name: CLIP ViT-B/32 architecture, random weights (benchmark only)
embedding_dim: 512
image:
  onnx: image.onnx
  input_name: pixel_values
  output_name: image_embeds
  size: 224
  resize: crop
  mean: [0.48145466, 0.4578275, 0.40821073]
  std: [0.26862954, 0.26130258, 0.27577711]
  layout: NCHW
  dtype: float32
text:
  onnx: text.onnx
  tokenizer: tokenizer.json
  context_length: {context}
  pad_id: {pad_id}
  input_name: input_ids
  output_name: text_embeds
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- model


def build_model(folder: Path) -> Path:
    """The ViT-B/32 image tower (and a tiny text tower on the demo tokenizer) as a nasclip model."""
    if (folder / "model.yaml").is_file() and (folder / "vision.pt").is_file():
        return folder
    from nasclip.model.reference import import_torch

    torch = import_torch()
    from transformers import (
        CLIPTextConfig,
        CLIPTextModelWithProjection,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    demo = load_model_spec(DEMO)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    log(f"building CLIP ViT-B/32 (random weights) in {folder} ...")
    torch.manual_seed(0)
    # CLIPVisionConfig's defaults are ViT-B/32: hidden 768, 12 layers, 12 heads,
    # patch 32, image 224, projection 512.
    config = CLIPVisionConfig()
    assert (config.hidden_size, config.num_hidden_layers, config.patch_size, config.image_size,
            config.projection_dim) == (768, 12, 32, 224, 512), "transformers changed CLIPVisionConfig defaults"
    vision = CLIPVisionModelWithProjection(config).eval()
    torch.save(vision.state_dict(), tmp / "vision.pt")
    with torch.inference_mode():
        torch.onnx.export(vision, (torch.randn(2, 3, 224, 224),), str(tmp / "image.onnx"),
                          input_names=["pixel_values"], output_names=["image_embeds"],
                          dynamic_axes={"pixel_values": {0: "n"}, "image_embeds": {0: "n"}},
                          opset_version=17, dynamo=False)
    # The bench only measures images; a tiny text tower keeps the folder a valid model.
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(demo.path(demo.text.tokenizer))).get_vocab_size()
    text_config = CLIPTextConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                 num_attention_heads=2, max_position_embeddings=demo.text.context_length,
                                 projection_dim=512, eos_token_id=2)
    text = CLIPTextModelWithProjection(text_config).eval()
    ids = torch.randint(3, vocab, (2, demo.text.context_length))
    with torch.inference_mode():
        torch.onnx.export(text, (ids,), str(tmp / "text.onnx"), input_names=["input_ids"],
                          output_names=["text_embeds"], dynamic_axes={"input_ids": {0: "n"}, "text_embeds": {0: "n"}},
                          opset_version=17, dynamo=False)
    shutil.copy2(demo.path(demo.text.tokenizer), tmp / "tokenizer.json")
    (tmp / "model.yaml").write_text(MODEL_YAML.format(context=demo.text.context_length, pad_id=demo.text.pad_id))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def build_int8(folder: Path, out: Path) -> Path:
    if (out / "model.yaml").is_file():
        return out
    from nasclip.model.quantize import quantize_model

    log(f"quantising to int8 in {out} ...")
    quantize_model(folder, out, progress=log)
    return out


# --------------------------------------------------------------------------- corpus


def _photo(rng: np.random.Generator, seed: int) -> Image.Image:
    """A 12-megapixel picture that compresses like a photo: smooth areas, edges, texture, noise."""
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    shapes = random.Random(seed)
    for _ in range(40):
        x, y = shapes.randrange(WIDTH), shapes.randrange(HEIGHT)
        r = shapes.randrange(40, 700)
        colour = tuple(shapes.randrange(256) for _ in range(3))
        if shapes.random() < 0.5:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        else:
            draw.rectangle((x - r, y - r // 2, x + r, y + r // 2), fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(3))
    texture = Image.fromarray(rng.integers(0, 256, (HEIGHT // 8, WIDTH // 8), dtype=np.uint8)).resize(
        (WIDTH, HEIGHT), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.int16)
    pixels += ((np.asarray(texture, dtype=np.int16) - 128) // 6)[..., None]
    pixels += rng.normal(0, 5, (HEIGHT, WIDTH, 1)).astype(np.int16)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def build_corpus(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"photo-{i:04d}.jpg" for i in range(count)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        log(f"writing {len(missing)} synthetic {WIDTH}x{HEIGHT} JPEGs to {folder} ...")
    for path in missing:
        i = int(path.stem.split("-")[1])
        rng = np.random.default_rng(i)
        image = _photo(rng, i)
        exif = Image.Exif()
        exif[0x010F], exif[0x0110] = "nasclip", f"bench {i % 7}"
        exif.get_ifd(0x8769)[0x9003] = f"{2010 + i % 15}:{1 + i % 12:02d}:{1 + i % 28:02d} 12:{i % 60:02d}:00"
        lat, lon = PLACES[i % len(PLACES)]
        gps = exif.get_ifd(0x8825)
        gps[1], gps[2] = ("N" if lat >= 0 else "S"), (float(int(abs(lat))), float(int(abs(lat) * 60) % 60), 0.0)
        gps[3], gps[4] = ("E" if lon >= 0 else "W"), (float(int(abs(lon))), float(int(abs(lon) * 60) % 60), 0.0)
        if i % 4 == 3:
            exif[0x0112] = 6  # portrait, as phones store it
        tmp = path.with_suffix(".tmp")
        image.save(tmp, "JPEG", quality=92, exif=exif.tobytes())
        tmp.rename(path)
    return paths


# --------------------------------------------------------------------------- (a) encoder only


def preprocess(paths: list[Path], folder: Path) -> tuple[np.ndarray, float]:
    """The corpus as nasclip's encoder input, and the CPU seconds per photo that took (one thread)."""
    spec = load_model_spec(folder)
    for path in paths:
        path.read_bytes()  # from the page cache from now on, as in (b) and (c)
    started = time.thread_time()
    tensors = np.stack([load_tensor(p, spec.image, 10**9) for p in paths])
    return tensors, (time.thread_time() - started) / len(paths)


def metadata_cpu(paths: list[Path], rounds: int = 3) -> float:
    """CPU seconds per photo that reading its metadata adds (one thread): what (b) - (b0) costs, without the noise.

    Exactly the extra work the indexer does per photo: read_meta on the image
    Pillow already opened (no second read of the file) and ``complete`` (the
    place of its position). The gazetteer is loaded before the clock starts:
    that happens once per process.
    """
    places = Places(load=gazetteer)
    places.get()
    best = float("inf")
    for _ in range(rounds):
        spent = 0.0
        for path in paths:
            with Image.open(path) as image:
                started = time.thread_time()
                complete(read_meta(image), 0.0, places)
                spent += time.thread_time() - started
        best = min(best, spent / len(paths))
    return best


def _timed(run, tensors: np.ndarray, rounds: int) -> tuple[float, np.ndarray, float]:
    """(images/s, vectors of the first round, CPU seconds per image over all threads)."""
    run(tensors[:BATCH])  # warm-up: the first runs allocate and pre-pack weights
    vectors = []
    started, cpu = time.perf_counter(), time.process_time()
    for round_ in range(rounds):
        for start in range(0, len(tensors), BATCH):
            out = run(tensors[start:start + BATCH])
            if round_ == 0:
                vectors.append(out)
    count = rounds * len(tensors)
    return count / (time.perf_counter() - started), np.concatenate(vectors), (time.process_time() - cpu) / count


def encoder_only(folder: Path, tensors: np.ndarray, threads: int,
                 rounds: int = 2) -> tuple[float, np.ndarray, float]:
    """nasclip's Encoder (its ONNX Runtime session settings) on preprocessed tensors at batch 8."""
    encoder = Encoder.open(load_model_spec(folder), backend="onnx", threads=threads, text=False)
    try:
        return _timed(encoder.encode_images, tensors, rounds)
    finally:
        encoder.close()


def ort_default(folder: Path, tensors: np.ndarray, threads: int, rounds: int = 2) -> float:
    """Images/s of a plain ONNX Runtime session (its default settings, spinning threads included)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(folder / "image.onnx"), options, providers=["CPUExecutionProvider"])
    return _timed(lambda x: session.run(None, {"pixel_values": x})[0], tensors, rounds)[0]


# --------------------------------------------------------------------------- (b) the real daemon


def _status(socket: Path) -> dict | None:
    try:
        return call(socket, op="status")["status"]
    except DaemonUnavailable:
        return None


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def end_to_end(folder: Path, corpus: Path, count: int, threads: int, decode_threads: int,
               batch: int, read_metadata: bool = True, extra: dict | None = None) -> tuple[float, float, float, float]:
    """(steady images/s, images/s including the first batch, daemon peak MB, daemon CPU s per image).

    extra: config sections merged over the bench's (bench/bench_ocr.py sets ``ocr``); by default the
    daemon reads no text, so that these figures are the CLIP pass's alone.
    """
    with tempfile.TemporaryDirectory(prefix="nasclip-bench-") as tmp:
        work = Path(tmp)
        config = {
            "shares": [{"name": "bench", "path": str(corpus)}],
            "model": str(folder),
            "state_dir": str(work / "state"),
            "socket": str(work / "query.sock"),
            "log_level": "info",
            "indexer": {"threads": threads, "decode_threads": decode_threads, "batch_size": batch,
                        "settle_seconds": 0.0, "backend": "onnx", "read_metadata": read_metadata},
            "query": {"socket_group": None},
            "ocr": {"enabled": False},
            **(extra or {}),
        }
        (work / "nasclip.yaml").write_text(yaml.safe_dump(config))
        log_file = open(work / "nasclipd.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "nasclip.cli.daemon", "--config", str(work / "nasclip.yaml")],
                                cwd=str(ROOT), stdout=log_file, stderr=subprocess.STDOUT)
        try:
            timeline: list[tuple[float, int]] = []
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise SystemExit(f"nasclipd exited:\n{(work / 'nasclipd.log').read_text()[-3000:]}")
                status = _status(work / "query.sock")
                now = time.perf_counter()
                if status is not None:
                    done = status["photos"]["indexed"] + status["photos"]["failed"]
                    if not timeline or done != timeline[-1][1]:
                        timeline.append((now, done, _cpu_seconds(proc.pid)))
                    if done >= count:
                        break
                time.sleep(0.1)
            else:
                raise SystemExit("nasclipd did not finish indexing the corpus in 10 minutes")
            peak = _peak_rss_mb(proc.pid)
            failed = status["photos"]["failed"]
            if failed:
                raise SystemExit(f"{failed} bench photos failed: {status['recent_failures'][:3]}")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            log_file.close()
    # Steady state: from the first finished batch to the last, so model loading
    # and the initial scan do not count (they do not grow with the library).
    (t0, n0, c0), (t1, n1, c1) = timeline[1] if timeline[0][1] == 0 else timeline[0], timeline[-1]
    first_seen = timeline[0][0]
    return (n1 - n0) / (t1 - t0), n1 / (t1 - first_seen), peak, (c1 - c0) / (n1 - n0)


# --------------------------------------------------------------------------- (c) a typical PyTorch indexer


def torch_baseline(folder: Path, paths: list[Path], threads: int) -> tuple[float, np.ndarray]:
    """Images/s of the way CLIP indexers are usually written: decode in the loop, eager PyTorch."""
    from nasclip.model.reference import import_torch

    torch = import_torch()
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.set_num_threads(threads)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig()).eval()
    model.load_state_dict(torch.load(folder / "vision.pt"))
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)

    def load(path: Path) -> torch.Tensor:
        image = Image.open(path).convert("RGB")
        width, height = image.size  # torchvision Resize(224): shortest side to 224, bicubic
        if width <= height:
            size = (224, int(224 * height / width))
        else:
            size = (int(224 * width / height), 224)
        image = image.resize(size, Image.Resampling.BICUBIC)
        left, top = int(round((size[0] - 224) / 2.0)), int(round((size[1] - 224) / 2.0))
        image = image.crop((left, top, left + 224, top + 224))  # CenterCrop(224)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
        return (pixels - mean) / std

    vectors = []
    with torch.inference_mode():
        model(pixel_values=torch.stack([load(paths[0])]))  # warm-up
        started = time.perf_counter()
        for start in range(0, len(paths), BATCH):
            batch = torch.stack([load(p) for p in paths[start:start + BATCH]])
            out = model(pixel_values=batch).image_embeds
            vectors.append(torch.nn.functional.normalize(out, dim=-1).numpy())
        seconds = time.perf_counter() - started
    return len(paths) / seconds, np.concatenate(vectors)


# --------------------------------------------------------------------------- report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64, help="corpus size (at least 64)")
    parser.add_argument("--threads", type=int, default=0, help="encoder threads; 0 = one per core")
    parser.add_argument("--decode-threads", type=int, default=2, help="nasclip decode threads")
    parser.add_argument("--batch", type=int, default=BATCH, help="nasclip batch size in (b)")
    parser.add_argument("--skip-baseline", action="store_true", help="skip (c), the slow PyTorch baseline")
    args = parser.parse_args()
    if args.images < 64:
        parser.error("use at least 64 images")
    threads = args.threads or os.cpu_count() or 1
    folder = build_model(CACHE / "vitb32")
    int8 = build_int8(folder, CACHE / "vitb32-int8")
    paths = build_corpus(CACHE / "corpus-exif", args.images)
    corpus = CACHE / f"corpus-exif-{args.images}"
    if not corpus.is_dir() or len(list(corpus.iterdir())) != args.images:
        # The daemon indexes a folder holding exactly the corpus (hard links, no copies).
        shutil.rmtree(corpus, ignore_errors=True)
        corpus.mkdir()
        for path in paths:
            os.link(path, corpus / path.name)

    log("preprocessing the corpus for (a) ...")
    tensors, decode_cpu = preprocess(paths, folder)
    meta_cpu = metadata_cpu(paths)
    log("(a) encoder only ...")
    a_nasclip, fp32, encode_cpu = encoder_only(folder, tensors, threads)
    a_default = ort_default(folder, tensors, threads)
    # The ceiling is the faster of nasclip's session settings and ONNX Runtime's defaults.
    a = max(a_nasclip, a_default)
    log("(b) nasclipd end to end ...")
    b, b_all, peak, daemon_cpu = end_to_end(folder, corpus, args.images, args.threads, args.decode_threads,
                                            args.batch)
    log("(b0) nasclipd end to end, without reading metadata ...")
    b0, _, _, daemon_cpu0 = end_to_end(folder, corpus, args.images, args.threads, args.decode_threads, args.batch,
                                       read_metadata=False)
    c = float("nan")
    if not args.skip_baseline:
        log("(c) PyTorch baseline ...")
        c, _ = torch_baseline(folder, paths, threads)
    log("int8 encoder only ...")
    q, int8_vectors, _ = encoder_only(int8, tensors, threads)
    log("int8 end to end ...")
    q_b = end_to_end(int8, corpus, args.images, args.threads, args.decode_threads, args.batch)[0]
    cosine = np.sum(fp32 * int8_vectors, axis=1)
    # Random weights map every photo to similar vectors, so also report how far
    # apart different photos are, and the cosine of the photo-specific parts.
    centre = fp32.mean(axis=0)
    spread = fp32 @ fp32.T
    between = (spread.sum() - np.trace(spread)) / (len(fp32) * (len(fp32) - 1))
    x, y = fp32 - centre, int8_vectors - centre
    centred = np.sum(x * y, axis=1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))

    def line(label: str, value: str, note: str = "") -> None:
        print(f"  {label:<54} {value:>14}   {note}")

    print(f"nasclip indexing benchmark: CLIP ViT-B/32 (random weights), {args.images} JPEGs of "
          f"{WIDTH}x{HEIGHT}, {os.cpu_count()} cores, encoder threads {threads}, decode threads "
          f"{args.decode_threads}, batch {BATCH} (b: {args.batch})")
    line("(a) encoder only, ONNX Runtime fp32, batch 8", f"{a:.2f} img/s",
         f"best of nasclip's session {a_nasclip:.2f}, ONNX Runtime defaults {a_default:.2f}")
    line("(b) nasclip end to end (nasclipd: files -> index)", f"{b:.2f} img/s",
         f"b/a = {b / a:.2f} (target >= 0.85); incl. first batch {b_all:.2f} img/s")
    line("(b0) as (b), indexer.read_metadata: false", f"{b0:.2f} img/s",
         f"b/b0 = {b / b0:.2f} (target >= 0.95); CPU per photo {daemon_cpu * 1000:.1f} ms with metadata, "
         f"{daemon_cpu0 * 1000:.1f} ms without ({daemon_cpu0 / daemon_cpu:.3f})")
    line("(c) typical PyTorch indexer (eager, full decode)", f"{c:.2f} img/s",
         f"b/c = {b / c:.2f} (target >= 2.5)")
    line("int8 encoder only (nasclip models quantize)", f"{q:.2f} img/s",
         f"int8/fp32 = {q / a:.2f} (target >= 1.7)")
    line("int8 end to end (nasclipd on the int8 model)", f"{q_b:.2f} img/s", f"{q_b / b:.2f}x fp32 end to end")
    line("int8 vs fp32: mean cosine of each photo's vectors", f"{cosine.mean():.4f}",
         f"(target >= 0.99; min {cosine.min():.4f})")
    line("  for scale: mean cosine between different photos", f"{between:.4f}",
         f"photo-specific parts: mean cosine {centred.mean():.4f}")
    line("nasclipd peak memory (VmHWM) indexing the corpus", f"{peak:.0f} MB", "(target < 1024 MB)")
    # Where the time goes. CPU seconds per photo hardly depend on what else the
    # machine runs, so they explain b/a even on a busy machine: end to end needs
    # decode + encode CPU per photo, and with every core busy it cannot beat
    # cores / (decode + encode); (a) gets no faster than cores / encode.
    cores = len(os.sched_getaffinity(0))
    print(f"  CPU per photo: decode+preprocess {decode_cpu * 1000:.1f} ms, encode {encode_cpu * 1000:.1f} ms "
          f"(fp32, {threads} threads), whole nasclipd in (b) {daemon_cpu * 1000:.1f} ms")
    share = meta_cpu / (decode_cpu + meta_cpu + encode_cpu)
    print(f"  metadata (capture time, camera, GPS, place) {meta_cpu * 1000:.2f} ms CPU per photo: {share:.1%} of "
          f"indexing's CPU (decode+preprocess+metadata+encode; target <= 5%); int8: "
          f"{meta_cpu / (decode_cpu + meta_cpu + encode_cpu * a / q):.1%}")
    print(f"  cores kept busy: (a) {a_nasclip * encode_cpu:.2f}, (b) {b * daemon_cpu:.2f} of {cores}; "
          f"with all {cores} busy in both, b/a would be {encode_cpu / (decode_cpu + encode_cpu):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
