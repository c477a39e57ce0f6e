"""Text in photos, what it costs: OCR speed and memory on 12-megapixel photos, and what it takes from indexing.

Run (from the repository root; needs the `bench` extra, as bench/bench_indexing.py, whose
CLIP ViT-B/32 model folder and 12-megapixel corpus it builds and reuses under bench/.cache/):

    .venv/bin/python bench/bench_ocr.py

It prints:

  (a) photos/s of text recognition as the daemon's text pass runs it (decode
      with the long side at ocr.max_side, detection, recognition where text was
      found; one ONNX Runtime thread, the default): on 12-megapixel photos with
      text (tests/ocrcorpus.py: words on real photographs) and on photos
      without (bench_indexing's synthetic 12-megapixel photos), and the peak
      memory (VmHWM) of a process doing only that;
  (b) CLIP indexing throughput of nasclipd (bench_indexing's end-to-end run)
      with text recognition off, then with a text-recognition process reading
      photos beside it the whole time at the text pass's settings (nice 19,
      SCHED_BATCH, one thread: the daemon's text pass when it does not wait),
      then with the daemon's own text pass on (it waits while photos wait to
      be indexed); the ratios to the first (bar: >= 0.8).

The machine is shared and 2 cores are few: runs are noisy, so compare the
figures of one run with each other rather than with another run's.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_indexing import CACHE, build_corpus, build_model, end_to_end, log  # noqa: E402

from nasclip.config import IndexerConfig, OcrConfig  # noqa: E402
from nasclip.indexing.imaging import open_photo  # noqa: E402
from nasclip.lifecycle import lower_thread_priority  # noqa: E402

MAX_PIXELS = IndexerConfig().max_pixels


def _read(engine, path: Path):  # type: ignore[no-untyped-def]
    """One photo as the text pass reads it."""
    return engine.read(open_photo(path, 1, MAX_PIXELS, long_side=engine.max_side))


def text_photos(count: int) -> list[Path]:
    """12-megapixel photos with text: the quality test's corpus generator, its large photos only."""
    from ocrcorpus import build

    folder = CACHE / f"ocr-text-{count}"
    done = folder / "complete"
    if not done.exists():
        log(f"writing {count} 12-megapixel photos with text to {folder} ...")
        samples = build(folder, per_cell=0, large=(count + 1) // 2)
        done.write_text("\n".join(s.path.name for s in samples))
    return [folder / name for name in done.read_text().split()][:count]


def speed(paths_with: list[Path], paths_without: list[Path]) -> dict:
    """(Run in a child process, so that its peak memory is text recognition's alone.)"""
    from nasclip.ocr.engine import OcrEngine

    lower_thread_priority(OcrConfig().nice)
    engine = OcrEngine.open(OcrConfig())
    _read(engine, paths_without[0])  # warm-up: first runs allocate
    result = {}
    for name, paths in (("text", paths_with), ("plain", paths_without)):
        started, cpu = time.perf_counter(), time.process_time()
        readings = [_read(engine, p) for p in paths]
        took = time.perf_counter() - started
        result[name] = {"photos": len(paths), "per_second": len(paths) / took,
                        "cpu_per_photo": (time.process_time() - cpu) / len(paths),
                        "recognised": sum(r.recognised for r in readings),
                        "lines": sum(len(r.lines) for r in readings)}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            result["peak_mb"] = int(line.split()[1]) / 1024
    return result


def read_forever(paths: list[Path]) -> None:
    """(Child process) read photos round and round at the text pass's settings until SIGTERM."""
    from nasclip.ocr.engine import OcrEngine

    lower_thread_priority(OcrConfig().nice)
    engine = OcrEngine.open(OcrConfig())
    count = 0
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    while not stop:
        _read(engine, paths[count % len(paths)])
        count += 1
    print(json.dumps({"read": count}), flush=True)


def child(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, *args], cwd=str(ROOT), stdout=subprocess.PIPE, text=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=8, help="12-megapixel photos with text, and as many without")
    parser.add_argument("--images", type=int, default=96, help="photos the CLIP pass indexes in (b)")
    parser.add_argument("--speed", nargs=2, help=argparse.SUPPRESS)  # child: two files listing photos
    parser.add_argument("--read-forever", help=argparse.SUPPRESS)  # child: a file listing photos
    args = parser.parse_args()
    if args.speed:
        lists = [Path(f).read_text().split("\n") for f in args.speed]
        print(json.dumps(speed(*[[Path(p) for p in paths] for paths in lists])))
        return 0
    if args.read_forever:
        read_forever([Path(p) for p in Path(args.read_forever).read_text().split("\n")])
        return 0

    with_text = text_photos(args.photos)
    without = build_corpus(CACHE / "corpus", max(64, args.images))
    model = build_model(CACHE / "vitb32")
    corpus = CACHE / f"corpus-{args.images}"
    if not corpus.is_dir() or len(list(corpus.iterdir())) != args.images:
        corpus.mkdir(exist_ok=True)
        for path in without[:args.images]:
            if not (corpus / path.name).exists():
                os.link(path, corpus / path.name)
    with tempfile.TemporaryDirectory(prefix="nasclip-bench-ocr-") as tmp:
        lists = [Path(tmp) / "with", Path(tmp) / "without"]
        lists[0].write_text("\n".join(map(str, with_text)))
        lists[1].write_text("\n".join(map(str, without[:args.photos])))
        log("(a) text recognition speed and memory ...")
        proc = child("--speed", *map(str, lists))
        measured = json.loads(proc.communicate()[0])
        log("(b) CLIP indexing without text recognition ...")
        alone = end_to_end(model, corpus, args.images, 0, 2, 8)[0]
        log("(b) CLIP indexing with text recognition reading beside it ...")
        reader = child("--read-forever", str(lists[0]))
        time.sleep(3.0)  # its models loaded, reading
        try:
            beside = end_to_end(model, corpus, args.images, 0, 2, 8)[0]
        finally:
            reader.send_signal(signal.SIGTERM)
            read_meanwhile = json.loads(reader.communicate(timeout=120)[0])["read"]
        log("(b) CLIP indexing with the daemon's own text pass on ...")
        policy = end_to_end(model, corpus, args.images, 0, 2, 8, extra={"ocr": {"enabled": True}})[0]

    print(f"nasclip text-recognition benchmark: PP-OCRv4 (rapidocr-onnxruntime models), 12-megapixel JPEGs, "
          f"ocr.max_side {OcrConfig().max_side}, ocr.threads {OcrConfig().threads}, {os.cpu_count()} cores "
          "(a shared machine: figures are noisy)")
    for name, label in (("text", "with text (words on real photos)"), ("plain", "without text (synthetic)")):
        m = measured[name]
        print(f"  (a) photos {label:<34} {m['per_second']:6.2f} photos/s   {m['cpu_per_photo'] * 1000:6.0f} ms CPU "
              f"each; recogniser ran on {m['recognised']}/{m['photos']}, {m['lines']} lines")
    print(f"  (a) peak memory (VmHWM) of a process reading text     {measured['peak_mb']:6.0f} MB")
    print(f"  (b) CLIP indexing alone                               {alone:6.2f} photos/s")
    print(f"  (b) with text recognition reading beside it           {beside:6.2f} photos/s   ratio "
          f"{beside / alone:.2f} (bar >= 0.8); it read {read_meanwhile} photos meanwhile")
    print(f"  (b) with the daemon's own text pass on                {policy:6.2f} photos/s   ratio "
          f"{policy / alone:.2f} (it waits while photos wait to be indexed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
