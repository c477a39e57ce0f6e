"""What each registry architecture costs on this CPU: image encoder img/s, text ms per query, peak RAM.

Run (from the repository root, in the test environment: `make venv`):

    .venv/bin/python bench/bench_models.py            # all architectures, one table
    .venv/bin/python bench/bench_models.py --only ViT-B-32

Speed and memory depend on the architecture, not on the weights, so every
model is built with RANDOM weights (``torch.manual_seed(0)``) from its
reference implementation and exported the way ``nasclip models export
--open-clip`` exports (``encode_image``/``encode_text``, TorchScript
exporter, opset 17, dynamic batch), into a nasclip model folder under the
git-ignored bench/.cache/models/. Later runs reuse the folders.

* ViT-B-32 (open_clip; the registry's OpenAI and LAION-2B entries share it);
* ViT-B-16-SigLIP2 (open_clip, timm image tower, 256,000-token text tower);
* xlm-roberta-base-ViT-B-32 (open_clip; its text tower is a transformers
  XLMRobertaModel whose configuration open_clip fetches from the hub: here it
  is built offline from xlm-roberta-base's published dimensions, with
  open_clip's own mean pooling over non-pad tokens and projection);
* Chinese-CLIP ViT-B/16 (cn_clip's ``CLIP`` from its ViT-B-16 and
  RoBERTa-wwm-ext-base-chinese configs, in float32).

The hub tokenizers (SigLIP2's Gemma, XLM-RoBERTa's SentencePiece) are not
available offline, so those two folders use CLIP's BPE with ids that stay
inside their vocabularies: tokenizing is well under a millisecond either way,
and the encoder's work is the same for any ids of the same length.

The text encoders are exported at the full context length (no
``text.trim``), as the registry's ONNX files are: their text figures are
what the registry's models cost. Each folder is measured twice, as exported
(fp32) and as ``nasclip models quantize`` leaves it (int8 image encoder, and
the int8 text encoder where it keeps every sample text within cosine 0.99 of
fp32: else the text column repeats fp32). Every measurement runs in its own subprocess through nasclip's
own ``Encoder`` (ONNX Runtime) as the daemon opens it: image encoder on all
cores in batches of ``indexer.batch_size`` (8), text encoder on one thread,
one query at a time. Peak RSS is that subprocess's high-water mark (VmHWM):
both encoders loaded and used, as in the daemon.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nasclip.config import IndexerConfig  # noqa: E402
from nasclip.indexing.encoder import Encoder  # noqa: E402
from nasclip.model.spec import ImageSpec, ModelSpec, TextSpec, dump_model_spec, load_model_spec  # noqa: E402

CACHE = ROOT / "bench" / ".cache" / "models"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
QUERIES = ("a dog on the beach", "grandma's birthday cake", "red car in the snow", "金色头发的小姐姐",
           "sunset over the mountains", "two children playing football", "a cat asleep on a sofa")
IMAGE_SECONDS = 8.0   # time each image measurement at least this long
TEXT_RUNS = 25


@dataclass(frozen=True)
class Arch:
    """One registry architecture and how to build it with random weights."""

    name: str
    registry: str        # registry entries sharing it
    build: Callable[[Path], None]


def _clip_tokenizer(out: Path) -> None:
    import gzip

    from nasclip.indexing.tokenizer import clip_bpe_from_merges
    from nasclip.model.reference import open_clip

    with gzip.open(open_clip().tokenizer.default_bpe()) as merges:
        lines = merges.read().decode("utf-8").split("\n")
    clip_bpe_from_merges(lines).save(str(out / "tokenizer.json"))


def _write_manifest(out: Path, arch: str, dim: int, image: dict[str, Any], tokenizer: str,
                    length: int, pad_id: int) -> None:
    spec = ModelSpec(
        format=1, id=f"bench-{arch.lower()}-random", embedding_dim=dim,
        image=ImageSpec(onnx="image.onnx", input_name="image", output_name="embedding", **image),
        text=TextSpec(tokenizer=tokenizer, onnx="text.onnx", context_length=length, pad_id=pad_id,
                      input_name="text", dtype="int64", mask_name=None, output_name="embedding"),
        name=f"{arch}, random weights (benchmark only)")
    (out / "model.yaml").write_text(dump_model_spec(spec, f"bench/bench_models.py: {arch} with RANDOM weights; "
                                                          "for speed only, its vectors mean nothing."))


def _export(torch: Any, model: Any, out: Path, size: int, length: int) -> None:
    from nasclip.model.export_open_clip import _export_onnx

    _export_onnx(torch, model, out, size, length)


def _open_clip_model(arch: str, **kwargs: Any) -> tuple[Any, Any, Any]:
    from nasclip.model.reference import import_torch, open_clip

    torch = import_torch()
    oc = open_clip()
    torch.manual_seed(0)
    model = oc.create_model(arch, pretrained=None, **kwargs).eval()
    return torch, oc, model


def build_vit_b32(out: Path) -> None:
    torch, oc, model = _open_clip_model("ViT-B-32")
    _clip_tokenizer(out)
    _export(torch, model, out, 224, 77)
    _write_manifest(out, "ViT-B-32", 512, dict(size=224, resize="crop", mean=OPENAI_MEAN, std=OPENAI_STD),
                    "tokenizer.json", 77, 0)


def build_siglip2(out: Path) -> None:
    torch, oc, model = _open_clip_model("ViT-B-16-SigLIP2")
    _clip_tokenizer(out)  # stand-in for the Gemma tokenizer (see the module docstring)
    _export(torch, model, out, 224, 64)
    _write_manifest(out, "ViT-B-16-SigLIP2", 768,
                    dict(size=224, resize="squash", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
                    "tokenizer.json", 64, 0)


def build_xlm_roberta(out: Path) -> None:
    from nasclip.model.reference import import_torch

    import_torch()
    import open_clip.hf_model as hf_model
    from transformers import XLMRobertaConfig

    # xlm-roberta-base's config.json, which open_clip would fetch from the hub.
    config = XLMRobertaConfig(vocab_size=250002, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                              intermediate_size=3072, max_position_embeddings=514, pad_token_id=1,
                              bos_token_id=0, eos_token_id=2, type_vocab_size=1, layer_norm_eps=1e-5)
    original = hf_model.AutoConfig.from_pretrained
    hf_model.AutoConfig.from_pretrained = lambda name, *a, **k: config
    try:
        torch, oc, model = _open_clip_model("xlm-roberta-base-ViT-B-32", pretrained_text=False)
    finally:
        hf_model.AutoConfig.from_pretrained = original
    _clip_tokenizer(out)  # stand-in for XLM-RoBERTa's SentencePiece (see the module docstring)
    _export(torch, model, out, 224, 77)
    _write_manifest(out, "xlm-roberta-base-ViT-B-32", 512,
                    dict(size=224, resize="crop", mean=OPENAI_MEAN, std=OPENAI_STD), "tokenizer.json", 77, 1)


def build_chinese_clip(out: Path) -> None:
    import contextlib
    import io

    from nasclip.model.reference import cn_clip, import_torch

    torch = import_torch()
    cn = cn_clip()
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):  # cn_clip prints its whole config
        model = cn.utils.create_model("ViT-B-16@RoBERTa-wwm-ext-base-chinese").float().eval()
    vocab = Path(str(cn.__file__)).parent / "vocab.txt"
    shutil.copyfile(vocab, out / "vocab.txt")
    _export(torch, model, out, 224, 52)
    _write_manifest(out, "chinese-clip-ViT-B-16", 512,
                    dict(size=224, resize="squash", mean=OPENAI_MEAN, std=OPENAI_STD), "vocab.txt", 52, 0)


ARCHS = (
    Arch("ViT-B-32", "openai-clip-vit-b32, vit-b32-laion2b", build_vit_b32),
    Arch("ViT-B-16-SigLIP2", "siglip2-vit-b16", build_siglip2),
    Arch("xlm-roberta-base-ViT-B-32", "xlm-roberta-base-vit-b32", build_xlm_roberta),
    Arch("chinese-clip-ViT-B-16", "chinese-clip-vit-b16", build_chinese_clip),
)


def folders(arch: Arch, log: Callable[[str], None]) -> dict[str, Path]:
    """fp32 and int8 (nasclip models quantize) folders of arch, built once."""
    from nasclip.model.quantize import quantize_model

    base = CACHE / arch.name
    fp32, int8 = base / "fp32", base / "int8"
    if not (fp32 / "model.yaml").is_file():
        log(f"{arch.name}: building with random weights and exporting to ONNX ...")
        shutil.rmtree(fp32, ignore_errors=True)
        fp32.mkdir(parents=True)
        start = time.monotonic()
        arch.build(fp32)
        log(f"{arch.name}: exported in {time.monotonic() - start:.0f} s")
    if not (int8 / "model.yaml").is_file() or "text" not in load_model_spec(int8).description.lower():
        shutil.rmtree(int8, ignore_errors=True)  # (also a copy made before quantize covered the text encoder)
        quantize_model(fp32, int8, progress=lambda line: log(f"{arch.name}: {line}"))
    return {"fp32": fp32, "int8": int8}


def measure(folder: Path, what: str) -> dict[str, float]:
    """In this process: image img/s or text ms per query through nasclip's Encoder, and peak RSS (MB)."""
    spec = load_model_spec(folder)
    config = IndexerConfig()
    encoder = Encoder.open(spec, backend="onnx", threads=config.threads)
    result: dict[str, float] = {}
    rng = np.random.default_rng(0)
    if what == "image":
        batch = rng.standard_normal((config.batch_size, 3, spec.image.size, spec.image.size)).astype(np.float32)
        encoder.encode_images(batch)  # warm-up: ONNX Runtime plans the graph on the first run
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < IMAGE_SECONDS or done < 2 * config.batch_size:
            encoder.encode_images(batch)
            done += len(batch)
        result["img_per_s"] = done / (time.perf_counter() - start)
    else:
        for query in QUERIES[:3]:
            encoder.encode_texts([query])
        times = []
        for i in range(TEXT_RUNS):
            start = time.perf_counter()
            encoder.encode_texts([QUERIES[i % len(QUERIES)]])
            times.append((time.perf_counter() - start) * 1000)
        result["text_ms"] = statistics.median(times)
    encoder.close()
    result["rss_mb"] = peak_rss_mb()
    return result


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM).

    Not ru_maxrss: Linux carries that across execve, so a child started by a
    parent that holds PyTorch would report the parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(folder: Path, what: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--measure", str(folder), what], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", help="only this architecture (repeatable)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    parser.add_argument("--rounds", type=int, default=3,
                        help="measure every architecture this many times, interleaved, and keep the best "
                             "(other work on the machine only ever slows a run down)")
    parser.add_argument("--measure", nargs=2, metavar=("FOLDER", "WHAT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure[0]), args.measure[1])))
        return 0

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    archs = [a for a in ARCHS if not args.only or a.name in args.only]
    paths = {arch.name: folders(arch, log) for arch in archs}
    runs: dict[str, dict[str, list[dict[str, float]]]] = {a.name: {} for a in archs}
    for round_ in range(args.rounds):
        for arch in archs:
            log(f"{arch.name}: measuring (round {round_ + 1} of {args.rounds}) ...")
            for key, folder, what in (("image32", "fp32", "image"), ("image8", "int8", "image"),
                                      ("text32", "fp32", "text"), ("text8", "int8", "text")):
                runs[arch.name].setdefault(key, []).append(_child(paths[arch.name][folder], what))
    rows: list[dict[str, Any]] = []
    for arch in archs:
        got = runs[arch.name]
        best_img = {k: max(r["img_per_s"] for r in got[k]) for k in ("image32", "image8")}
        best_txt = {k: min(r["text_ms"] for r in got[k]) for k in ("text32", "text8")}
        # Memory does not depend on contention: the highest seen is the honest figure.
        rss = {k: max(r["rss_mb"] for r in got[k]) for k in got}
        sizes = {k: sum(f.stat().st_size for f in p.glob("*.onnx")) / 1e6 for k, p in paths[arch.name].items()}
        rows.append({"arch": arch.name, "registry": arch.registry,
                     "img_s_fp32": best_img["image32"], "img_s_int8": best_img["image8"],
                     "text_ms_fp32": best_txt["text32"], "text_ms_int8": best_txt["text8"],
                     "rss_image_fp32": rss["image32"], "rss_image_int8": rss["image8"],
                     "rss_text_fp32": rss["text32"], "onnx_mb_fp32": sizes["fp32"], "onnx_mb_int8": sizes["int8"],
                     "all_runs": got})
    import os

    print(f"\nRandom-weight architectures through nasclip's Encoder on this CPU ({os.cpu_count()} cores; "
          f"image batch {IndexerConfig().batch_size} on all cores, text batch 1 on one thread; "
          f"best of {args.rounds} interleaved rounds; load average {os.getloadavg()[0]:.1f} at the end).")
    print("Peak RSS: the measuring process with both encoders loaded. int8: as `nasclip models quantize` "
          "writes it (the text encoder stays fp32 where int8 would move its vectors).\n")
    head = (f"{'architecture':28} {'img/s fp32':>10} {'int8':>6} {'x B32':>6} {'ms/img':>7} "
            f"{'text ms':>8} {'int8':>6} {'x B32':>6} {'RSS MB fp32':>11} {'int8':>6} {'files MB':>9}")
    print(head)
    print("-" * len(head))
    base = rows[0] if rows and rows[0]["arch"] == "ViT-B-32" else None
    for r in rows:
        ratio_img = r["img_s_fp32"] / base["img_s_fp32"] if base else float("nan")
        ratio_txt = r["text_ms_fp32"] / base["text_ms_fp32"] if base else float("nan")
        rss32 = max(r["rss_image_fp32"], r["rss_text_fp32"])
        print(f"{r['arch']:28} {r['img_s_fp32']:10.1f} {r['img_s_int8']:6.1f} {ratio_img:6.2f} "
              f"{1000 / r['img_s_fp32']:7.0f} {r['text_ms_fp32']:8.1f} {r['text_ms_int8']:6.1f} {ratio_txt:6.2f} "
              f"{rss32:11.0f} {r['rss_image_int8']:6.0f} {r['onnx_mb_fp32']:9.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
