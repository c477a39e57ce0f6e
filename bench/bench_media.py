"""Media cost: sampling a 1080p video against decoding every frame, RAW previews against a full demosaic.

Run from the repository root (the ViT-B/32 part needs the `bench` extra, as
bench/bench_indexing.py does):

    .venv/bin/python bench/bench_media.py [--minutes 10] [--skip-vit]

Under the git-ignored bench/.cache/ the first run writes, and later runs reuse:

* a 1080p H.264 video (30 frames/s, a key frame every second as phones write
  them, x264 veryfast CRF 23, High profile with CABAC as phones use): one
  minute of shots of 8-40 s of textured, grainy pictures with a slow pan, so
  neighbouring key frames are not identical and every shot change is a cut,
  joined ``--minutes`` times without re-encoding (encoding 10 minutes of 1080p
  here takes half an hour). Its key frames are about 500 KB, at the heavy end of a phone's at 15-20 Mbit/s
  (the cost of decoding one grows with its size: printed with the figures);
* 40 synthetic 12-megapixel JPEGs (bench_indexing.py's corpus: 3-5 MB each);
* a 12-megapixel DNG (tests/raws.py's writer) with a full-size preview JPEG,
  as Canon and Pentax embed one, and the same without a preview.

One run prints, CPU seconds of this process (all threads), on whatever else
the machine is doing (this one is shared: expect +-15%):

  (1) sampling per minute of video (nasclip's key-frame sampling, the default
      video settings) against decoding every frame of the first minute (what an
      indexer that reads the video through gets before choosing frames);
  (2) RAW: preview route, half-size demosaic and rawpy's full postprocess, ms;
  (3) the bar: indexing the whole video (sampling + encoding the kept frames)
      against 40 twelve-megapixel JPEGs (decoding + encoding), with the demo
      model and with the architecture-exact ViT-B/32 (random weights).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_indexing import CACHE, DEMO, build_corpus, build_model, log  # noqa: E402
from raws import write_dng  # noqa: E402

from nasclip.indexing.bounded import DecodeLimits  # noqa: E402
from nasclip.indexing.encoder import Encoder  # noqa: E402
from nasclip.indexing.imaging import load_tensor  # noqa: E402
from nasclip.media.raw import open_raw  # noqa: E402
from nasclip.media.video import SampledVideo, VideoLimits, frame_tensors, sample_video  # noqa: E402
from nasclip.model.spec import load_model_spec  # noqa: E402

WIDTH, HEIGHT, FPS = 1920, 1080, 30
JPEGS = 40


def cpu() -> float:
    return time.process_time()


# --------------------------------------------------------------------------- inputs


def _shot(rng: np.random.Generator) -> np.ndarray:
    """A textured picture larger than the frame (for panning), as planar YUV 4:2:0 bytes."""
    small = rng.integers(16, 236, (9, 16, 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(small).resize((WIDTH + 256, HEIGHT), Image.Resampling.BICUBIC), dtype=np.int16)
    big += rng.integers(-10, 11, big.shape[:2] + (1,), dtype=np.int16)
    return np.clip(big, 0, 255).astype(np.uint8)


def build_video(folder: Path, minutes: int) -> Path:
    """The 1080p H.264 video described in the module doc (made once): one minute encoded, joined minutes times."""
    path = folder / f"1080p-{minutes}min.mp4"
    if not path.is_file():
        join(write_minute(folder / "1080p-1min.mp4"), minutes, path)
    return path


def join(minute: Path, times: int, path: Path) -> None:
    """times copies of a video, one after the other, without re-encoding (packets copied, times shifted)."""
    import av

    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(minute)) as source, av.open(str(tmp), "w") as media:
        original = source.streams.video[0]
        stream = media.add_stream_from_template(original)
        packets = [p for p in source.demux(original) if p.dts is not None]
        step = max(p.pts for p in packets) + (packets[-1].duration or 0)
        for copy in range(times):
            for packet in packets:
                packet.pts += step if copy else 0
                packet.dts += step if copy else 0
                packet.stream = stream
                media.mux(packet)
    tmp.rename(path)


def write_minute(path: Path) -> Path:
    """One minute of the video, encoded (made once)."""
    if path.is_file():
        return path
    import av

    minutes = 1
    log(f"writing one minute of 1080p H.264 video to {path} (once; a few minutes) ...")
    rng = np.random.default_rng(1)
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as media:
        stream = media.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.gop_size = FPS
        stream.options = {"preset": "veryfast", "crf": "23"}
        total, done = int(minutes * 60 * FPS), 0
        while done < total:
            shot = _shot(rng)
            length = min(total - done, int(rng.uniform(8, 40) * FPS))
            noise = rng.integers(-3, 4, (HEIGHT, WIDTH, 1), dtype=np.int16)
            for i in range(length):
                x = i * 256 // max(1, length)  # a slow pan across the shot
                pixels = shot[:, x:x + WIDTH]
                if i % 2:
                    pixels = np.clip(pixels + noise, 0, 255).astype(np.uint8)
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")):
                    media.mux(packet)
            done += length
        for packet in stream.encode():
            media.mux(packet)
    tmp.rename(path)
    return path


def build_raws(folder: Path) -> tuple[Path, Path]:
    """A 12-megapixel DNG with a full-size preview, and the same without one (made once)."""
    folder.mkdir(parents=True, exist_ok=True)
    with_preview, without = folder / "preview.dng", folder / "plain.dng"
    if not with_preview.is_file():
        log("writing two 12-megapixel DNGs ...")
        photo = Image.open(build_corpus(CACHE / "corpus", 1)[0]).convert("RGB")
        write_dng(with_preview, photo, preview=photo)
        write_dng(without, photo)
    return with_preview, without


# --------------------------------------------------------------------------- (1) sampling


def keyframe_kb(path: Path) -> float:
    """The mean size of the video's key frames, from its index."""
    import av

    with av.open(str(path)) as media:
        sizes = [e.size for e in media.streams.video[0].index_entries if e.is_keyframe]
    return sum(sizes) / len(sizes) / 1024


def naive_minute(path: Path) -> tuple[float, int]:
    """CPU seconds to decode every frame of the first minute to RGB (one decoder thread), and the frames."""
    import av

    started, frames = cpu(), 0
    with av.open(str(path)) as media:
        stream = media.streams.video[0]
        stream.codec_context.thread_count = 1
        for frame in media.decode(stream):
            if frame.time is not None and frame.time >= 60:
                break
            frame.to_ndarray(format="rgb24")
            frames += 1
    return cpu() - started, frames


def sampling(path: Path, side: int) -> tuple[float, SampledVideo]:
    started = cpu()
    video = sample_video(path, VideoLimits(), side)
    return cpu() - started, video


# --------------------------------------------------------------------------- (3) the bar


def encode_cost(encoder: Encoder, tensors: list[np.ndarray]) -> float:
    """CPU seconds to encode the tensors in batches of 8 (after a warm-up run)."""
    encoder.encode_images(np.stack(tensors[:1]))
    started = cpu()
    for start in range(0, len(tensors), 8):
        encoder.encode_images(np.stack(tensors[start:start + 8]))
    return cpu() - started


def bar(model: Path, video: Path, jpegs: list[Path]) -> tuple[float, float, int]:
    """(video CPU s, JPEGs CPU s, frames kept): decode + encode both, on this model."""
    spec = load_model_spec(model)
    encoder = Encoder.open(spec, backend="onnx", threads=0, text=False)
    try:
        seconds, sampled = sampling(video, spec.image.size)
        started = cpu()
        tensors = [t for _, t in frame_tensors(sampled, spec.image)]
        video_cpu = seconds + (cpu() - started) + encode_cost(encoder, tensors)
        started = cpu()
        photos = [load_tensor(p, spec.image, 10**9) for p in jpegs]
        jpeg_cpu = (cpu() - started) + encode_cost(encoder, photos)
    finally:
        encoder.close()
    return video_cpu, jpeg_cpu, len(tensors)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=10, help="length of the 1080p video")
    parser.add_argument("--skip-vit", action="store_true", help="only the demo model in (3)")
    args = parser.parse_args()
    folder = CACHE / "media"
    folder.mkdir(parents=True, exist_ok=True)
    video = build_video(folder, args.minutes)
    jpegs = build_corpus(CACHE / "corpus", JPEGS)
    preview, plain = build_raws(folder)
    megabits = video.stat().st_size * 8 / (args.minutes * 60) / 1e6
    for path in [video, *jpegs]:
        path.read_bytes()  # from the page cache from here on, for both sides alike

    log("(1) sampling ...")
    spec = load_model_spec(DEMO)
    sample_cpu, sampled = sampling(video, spec.image.size)
    naive_cpu, naive_frames = naive_minute(video)
    kept, decoded = len(sampled.frames), sampled.decoded
    print(f"video: {args.minutes:g} min 1080p30 H.264, a key frame every 1 s ({keyframe_kb(video):.0f} KB on "
          f"average), {megabits:.1f} Mbit/s")
    print(f"(1) nasclip sampling: {sample_cpu / args.minutes:.2f} CPU s per minute "
          f"({sample_cpu:.2f} s for the video: {decoded} key frames decoded, {kept} frames kept)")
    print(f"    naive, every frame decoded: {naive_cpu:.2f} CPU s per minute ({naive_frames} frames); "
          f"{naive_cpu / (sample_cpu / args.minutes):.0f}x nasclip's")

    log("(2) RAW ...")
    limits = DecodeLimits(max_pixels=10**9)
    timings = {}
    for name, run in (("preview", lambda: open_raw(preview, spec.image.size, limits)),
                      ("half-size demosaic", lambda: open_raw(plain, spec.image.size, limits)),
                      ("rawpy full postprocess", lambda: _full(plain))):
        best = float("inf")
        for _ in range(3):
            started = cpu()
            run()
            best = min(best, cpu() - started)
        timings[name] = best * 1000
    print(f"(2) RAW 12 MP DNG, best of 3: preview {timings['preview']:.0f} ms, half-size demosaic "
          f"{timings['half-size demosaic']:.0f} ms, rawpy full postprocess {timings['rawpy full postprocess']:.0f} ms "
          f"({timings['rawpy full postprocess'] / timings['preview']:.0f}x the preview)")

    models = [("demo", DEMO)]
    if not args.skip_vit:
        models.append(("ViT-B/32 (random weights)", build_model(CACHE / "vitb32")))
    for name, model in models:
        log(f"(3) the bar with {name} ...")
        video_cpu, jpeg_cpu, frames = bar(model, video, jpegs)
        verdict = "meets" if video_cpu <= jpeg_cpu else "MISSES"
        print(f"(3) {name}: the {args.minutes:g}-min video {video_cpu:.2f} CPU s ({frames} frames encoded) "
              f"against {JPEGS} 12-MP JPEGs {jpeg_cpu:.2f} CPU s: {video_cpu / jpeg_cpu:.2f}x, {verdict} the bar")
    return 0


def _full(path: Path) -> None:
    import rawpy

    with rawpy.imread(str(path)) as raw:
        raw.postprocess(use_camera_wb=True)


if __name__ == "__main__":
    raise SystemExit(main())
