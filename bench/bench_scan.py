"""Reconcile scan cost on a 100k-photo tree, side by side with naive ways of polling it.

    .venv/bin/python bench/bench_scan.py [--files 100000] [--repeat 3]

Builds (once; cached in bench/.cache) a tree shaped like a photo share:
year/event folders of ~100 photos each, plus a Synology ``@eaDir`` folder per
event that the scan must skip. Files are tiny: a scan only stats them. Then it
measures, in one run:

- the first scan of the share into an empty catalog (inserts every row);
- a reconcile scan of the unchanged tree (what every scheduled scan and every
  poll of a ``watch: poll`` share costs);
- the same tree walked by ``os.walk`` + ``lstat`` of every file, and by
  watchdog's ``DirectorySnapshot`` + diff (what its PollingObserver does per
  poll) as baselines.

Wall and CPU seconds are medians over --repeat runs with a warm page cache.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from watchdog.utils.dirsnapshot import DirectorySnapshot, DirectorySnapshotDiff  # noqa: E402

from nasclip.config import ShareConfig  # noqa: E402
from nasclip.store.store import Store  # noqa: E402
from nasclip.watch.scanner import scan  # noqa: E402

CACHE = ROOT / "bench" / ".cache"
PER_FOLDER = 100


def build_tree(files: int) -> Path:
    """The cached tree with this many photos (built on first use)."""
    root = CACHE / f"tree-{files}"
    marker = root / ".complete"
    if marker.exists():
        return root
    print(f"building {files} files under {root} (once) ...", flush=True)
    started = time.monotonic()
    data = b"\xff\xd8\xff\xe0" + b"\0" * 12  # 16 bytes; nothing decodes them
    folders = (files + PER_FOLDER - 1) // PER_FOLDER
    made = 0
    for f in range(folders):
        event = root / f"{2000 + f // 50}" / f"event-{f:04d}"
        thumbs = event / "@eaDir"
        thumbs.mkdir(parents=True, exist_ok=True)
        for i in range(min(PER_FOLDER, files - made)):
            (event / f"IMG_{i:04d}.JPG").write_bytes(data)
            made += 1
        (thumbs / "SYNOPHOTO_THUMB_M.jpg").write_bytes(data)
    marker.write_text(str(files))
    print(f"  built in {time.monotonic() - started:.1f} s", flush=True)
    return root


def measure(run: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    """Median wall and CPU seconds of run(), and its last result."""
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def walk_and_stat(root: Path) -> int:
    count = 0
    for folder, _, names in os.walk(root):
        for name in names:
            os.lstat(os.path.join(folder, name))
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    root = build_tree(args.files)
    share = ShareConfig(name="bench", path=root)

    with tempfile.TemporaryDirectory(prefix="nasclip-bench-") as tmp:
        store = Store(Path(tmp) / "state", "bench", 8)
        wall, cpu = time.perf_counter(), time.process_time()
        first = scan(share, store, 0.0)
        first_wall, first_cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert first.changes.get("new") == args.files, first.changes
        scan_wall, scan_cpu, again = measure(lambda: scan(share, store, 0.0), args.repeat)
        assert again.changes == {} and again.files == args.files, again  # type: ignore[union-attr]
        folders = again.folders  # type: ignore[union-attr]
        store.close()

    walk_wall, walk_cpu, walked = measure(lambda: walk_and_stat(root), args.repeat)
    previous = DirectorySnapshot(str(root))
    snap_wall, snap_cpu, _ = measure(
        lambda: DirectorySnapshotDiff(previous, DirectorySnapshot(str(root))), args.repeat)

    n = args.files
    print()
    print(f"tree: {n} photos in {folders} folders (+ {walked - n} files in @eaDir folders the scan skips)")  # type: ignore[operator]
    print(f"{'':44} {'wall s':>8} {'CPU s':>8} {'µs/photo':>9} {'CPU ratio':>10}")
    rows = [
        ("nasclip first scan (inserts every row)", first_wall, first_cpu),
        ("nasclip reconcile scan, unchanged tree", scan_wall, scan_cpu),
        ("baseline: os.walk + lstat of every file", walk_wall, walk_cpu),
        ("baseline: watchdog DirectorySnapshot + diff", snap_wall, snap_cpu),
    ]
    for name, wall, cpu in rows:
        print(f"{name:44} {wall:8.2f} {cpu:8.2f} {cpu / n * 1e6:9.1f} {cpu / scan_cpu:9.2f}x")
    print()
    print(f"an unchanged reconcile scan costs {scan_cpu / walk_cpu:.2f}x the CPU of os.walk + lstat "
          f"and {scan_cpu / snap_cpu:.2f}x that of a watchdog polling snapshot")
    print("(CPU ratio column: each row's CPU over the unchanged nasclip scan's)")


if __name__ == "__main__":
    main()
