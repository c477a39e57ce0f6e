"""``nasclip models quantize``: an int8 copy of a model's encoders, as a new model folder.

Dynamic quantisation with ONNX Runtime: the weights of every MatMul/Gemm are
stored as int8 (per output channel), activations are quantised on the fly,
and no calibration photos are needed. On a CPU this about doubles image
encoding speed (more with AVX-512 VNNI) for a tiny change in the vectors.
The copy gets its own model id, because its vectors differ from the
original's: switching to it re-encodes the library in the background while
the old vectors keep answering.

The text encoder is quantised too (queries then cost less CPU), but only
where its vectors stay within ``TEXT_MIN_COSINE`` of the original's on
every one of ``CHECK_TEXTS`` query-like texts; otherwise the original text
encoder is kept, and the command says which it did and what it measured.
The folder is built beside its destination and renamed into place, so an
interrupted run never leaves a half-written model.

``text_only`` quantises the text encoder alone and keeps the image encoder
as it is (the copy links to the same file where it can): the photos'
vectors are then exactly the original's, so the copy keeps the original's
model id — pointing ``model:`` at it re-encodes nothing — and only queries
change, each by at most what the cosine check allows, for about half the
CPU a query costs. That is the copy to run on a busy NAS with an fp32 image
encoder (bench/bench_query.py measures both).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from ..errors import ModelError
from ..typedyaml import to_plain
from .download import fsync_folder, fsync_path, sha256_file
from .install import RECORD, SUMS, check_model
from .spec import MANIFEST, ModelSpec, load_model_spec, model_files

log = logging.getLogger("nasclip.quantize")

IMAGE_FILE = "image.onnx"
TEXT_FILE = "text.onnx"
# Only the matrix products: they hold nearly all weights and time. Quantising
# the patch convolution or the embedding lookups saves nothing and costs accuracy.
OPS = ["MatMul", "Gemm"]
CHECK_IMAGES = 4
CHECK_TEXTS = 1000
TEXT_MIN_COSINE = 0.99  # the worst text's cosine to the original the int8 text encoder must keep


def default_output(folder: Path) -> Path:
    """Where the int8 copy goes unless told: beside the original, named <folder>-int8."""
    folder = folder.absolute()
    return folder.with_name(folder.name + "-int8")


def quantize_model(folder: Path | str, out: Path | str | None = None, model_id: str | None = None, *,
                   text: bool = True, text_only: bool = False, progress: Callable[[str], None] = print) -> ModelSpec:
    """Write the int8 copy of the model in folder to out; returns the new model's manifest.

    text=False keeps the original text encoder without trying the int8 one; text_only keeps the
    original image encoder and model id (see the module's docstring).
    """
    spec = load_model_spec(folder)
    if text_only:
        return _quantize_text_only(spec, out, model_id, progress)
    if not spec.image.onnx:
        raise ModelError(f"{spec.folder}: the model has no ONNX image encoder (image.onnx) to quantise")
    out = Path(out) if out is not None else default_output(spec.folder)
    model_id = model_id or f"{spec.id}-int8"
    if model_id == spec.id:
        raise ModelError(f"the quantised model needs its own id (not {spec.id!r}): its vectors differ")
    if out.exists():
        raise ModelError(f"{out} already exists; remove it or choose another folder with --out")
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise ModelError(f"quantising needs the 'onnx' package next to onnxruntime ({exc}); "
                         "install it with: pip install onnx") from None

    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        source = spec.path(spec.image.onnx)
        progress(f"quantising {source} ({_mb(source)}) to int8 ...")
        root = logging.getLogger()
        # onnxruntime.quantization advises on the root logger ("consider pre-processing");
        # for a dynamic weight quantisation that advice does not apply.
        hush = _DropAdvice()
        root.addFilter(hush)
        text_source = spec.path(spec.text.onnx) if text and spec.text.onnx else None
        try:
            quantize_dynamic(source, tmp / IMAGE_FILE, op_types_to_quantize=OPS, per_channel=True,
                             weight_type=QuantType.QInt8)
            if text_source is not None:
                progress(f"quantising {text_source} ({_mb(text_source)}) to int8 ...")
                quantize_dynamic(text_source, tmp / TEXT_FILE, op_types_to_quantize=OPS, per_channel=True,
                                 weight_type=QuantType.QInt8)
        except Exception as exc:  # onnx/onnxruntime raise many untyped errors
            raise ModelError(f"{source if not (tmp / IMAGE_FILE).exists() else text_source}: "
                             f"quantisation failed: {exc}") from None
        finally:
            root.removeFilter(hush)
        _copy_rest(spec, tmp, text=text_source is not None)
        _write_manifest(spec, tmp, model_id, text=text_source is not None)
        if text_source is not None and not _keep_int8_text(spec, tmp, progress):
            (tmp / TEXT_FILE).unlink()
            shutil.copy2(text_source, tmp / TEXT_FILE)
            _write_manifest(spec, tmp, model_id, text=False)
        new = load_model_spec(tmp)
        problems = check_model(tmp, new)
        if problems:
            raise ModelError("the quantised model would not run:\n  " + "\n  ".join(problems))
        # Checksums of the new folder, so `nasclip models verify` can check it later.
        (tmp / SUMS).write_text("".join(f"{sha256_file(new.path(n))}  {n}\n" for n in model_files(new)))
        similarity = agreement(spec, new)
        progress(f"int8 image encoder: {_mb(tmp / IMAGE_FILE)}; "
                 f"mean cosine similarity to the original on {CHECK_IMAGES} test images: {similarity:.4f}")
        if similarity < 0.98:
            progress("warning: the int8 vectors differ noticeably from the original's; "
                     "compare search results before switching")
        # The folder is whole on disk before its name says it is a model (a power cut
        # after the rename must not leave a model of empty files).
        fsync_folder(tmp)
        tmp.rename(out)
        fsync_path(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    progress(f"wrote model {model_id} to {out}")
    return load_model_spec(out)


def _quantize_text_only(spec: ModelSpec, out: Path | str | None, model_id: str | None,
                        progress: Callable[[str], None]) -> ModelSpec:
    """The copy with an int8 text encoder beside the original image encoder, under the original's id."""
    if model_id not in (None, spec.id):
        raise ModelError(f"a copy with only its text encoder quantised keeps the id {spec.id!r}: its photos' vectors "
                         "are the original's")
    if not spec.text.onnx:
        raise ModelError(f"{spec.folder}: the model has no ONNX text encoder (text.onnx) to quantise")
    target = Path(out) if out is not None else spec.folder.absolute().with_name(spec.folder.name + "-int8text")
    if target.exists():
        raise ModelError(f"{target} already exists; remove it or choose another folder with --out")
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise ModelError(f"quantising needs the 'onnx' package next to onnxruntime ({exc}); "
                         "install it with: pip install onnx") from None
    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        source = spec.path(spec.text.onnx)
        progress(f"quantising {source} ({_mb(source)}) to int8 ...")
        root = logging.getLogger()
        hush = _DropAdvice()
        root.addFilter(hush)
        try:
            quantize_dynamic(source, tmp / TEXT_FILE, op_types_to_quantize=OPS, per_channel=True,
                             weight_type=QuantType.QInt8)
        except Exception as exc:  # onnx/onnxruntime raise many untyped errors
            raise ModelError(f"{source}: quantisation failed: {exc}") from None
        finally:
            root.removeFilter(hush)
        for entry in sorted(spec.folder.iterdir()):  # the image encoder and all else, as they are
            if entry.name in {MANIFEST, SUMS, RECORD, spec.text.onnx, spec.text.onnx + ".data"}:
                continue
            if entry.is_dir():
                shutil.copytree(entry, tmp / entry.name)
                continue
            try:
                os.link(entry, tmp / entry.name)  # the same bytes: no second copy of the image weights
            except OSError:
                shutil.copy2(entry, tmp / entry.name)
        data = to_plain(spec)
        data["name"] = f"{spec.name or spec.id} (int8 text)"
        data["description"] = (f"{spec.description} Text encoder quantised to int8 by `nasclip models quantize "
                               f"--text-only`; the image encoder and model id are the original's.").strip()
        data["text"]["onnx"] = TEXT_FILE
        data["text"]["axmodel"] = None
        header = f"# Written by `nasclip models quantize --text-only` from {spec.folder.absolute()} ({spec.id}).\n"
        (tmp / MANIFEST).write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True),
                                    encoding="utf-8")
        if not _keep_int8_text(spec, tmp, progress):
            raise ModelError(f"the int8 text encoder of {spec.id} misses the bar (cosine {TEXT_MIN_COSINE} to the "
                             "original on every sample text): keep the original model")
        new = load_model_spec(tmp)
        problems = check_model(tmp, new)
        if problems:
            raise ModelError("the quantised model would not run:\n  " + "\n  ".join(problems))
        (tmp / SUMS).write_text("".join(f"{sha256_file(new.path(n))}  {n}\n" for n in model_files(new)))
        fsync_folder(tmp)
        tmp.rename(target)
        fsync_path(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    progress(f"wrote model {spec.id} (int8 text encoder, the original image encoder) to {target}")
    return load_model_spec(target)


class _DropAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()


def _mb(path: Path) -> str:
    size = path.stat().st_size / 1e6
    return f"{size:.0f} MB" if size >= 10 else f"{size:.2f} MB"


def _copy_rest(spec: ModelSpec, target: Path, *, text: bool) -> None:
    """Everything but the quantised encoders, manifest and install records: tokenizer, licence, ..."""
    skip = {MANIFEST, SUMS, RECORD, spec.image.onnx, spec.image.axmodel}
    if spec.image.onnx:
        skip.add(spec.image.onnx + ".data")  # external weights of the original image encoder
    if text and spec.text.onnx:
        skip |= {spec.text.onnx, spec.text.onnx + ".data"}
    for entry in sorted(spec.folder.iterdir()):
        if entry.name in skip:
            continue
        if entry.is_dir():
            shutil.copytree(entry, target / entry.name)
        else:
            shutil.copy2(entry, target / entry.name)


def _write_manifest(spec: ModelSpec, target: Path, model_id: str, *, text: bool) -> None:
    data = to_plain(spec)
    data["id"] = model_id
    data["name"] = f"{spec.name or spec.id} (int8)"
    towers = "Image and text encoders" if text else "Image encoder"
    note = f"{towers} quantised to int8 by `nasclip models quantize` from model {spec.id}."
    data["description"] = f"{spec.description} {note}".strip()
    data["image"]["onnx"] = IMAGE_FILE
    if text:
        data["text"]["onnx"] = TEXT_FILE
        data["text"]["axmodel"] = None
    # A compiled .axmodel is its own artefact; the NPU would ignore the int8 ONNX
    # yet store its vectors under the new id, so the copy is CPU-only.
    data["image"]["axmodel"] = None
    header = f"# Written by `nasclip models quantize` from {spec.folder.absolute()} ({spec.id}).\n"
    (target / MANIFEST).write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True),
                                   encoding="utf-8")


def sample_images(size: int, count: int = CHECK_IMAGES) -> list:
    """Deterministic photo-like images (gradients, shapes, noise) for checking a model copy."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(1234)
    images = []
    for i in range(count):
        small = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((size * 2, size * 2), Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(image)
        for _ in range(3 + i):
            x, y = (int(v) for v in rng.integers(0, size * 2, 2))
            r = int(rng.integers(size // 8, size // 2))
            draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        pixels = np.asarray(image, dtype=np.int16) + rng.normal(0, 6, (size * 2, size * 2, 3)).astype(np.int16)
        images.append(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)))
    return images


def agreement(original: ModelSpec, copy: ModelSpec) -> float:
    """Mean cosine similarity of the two models' image vectors on the same test images."""
    from ..indexing.encoder import Encoder
    from ..indexing.imaging import resize, to_tensor

    batch = np.stack([to_tensor(resize(img, original.image), original.image)
                      for img in sample_images(original.image.size)])
    vectors = []
    for spec in (original, copy):
        encoder = Encoder.open(spec, backend="onnx", text=False)
        try:
            vectors.append(encoder.encode_images(batch))
        finally:
            encoder.close()
    return float(np.mean(np.sum(vectors[0] * vectors[1], axis=1)))


def sample_texts(count: int = CHECK_TEXTS) -> list[str]:
    """Deterministic query-like texts, English and Chinese, short and long, for checking a text encoder copy."""
    rng = np.random.default_rng(99)
    words = ("a photo of the my cat dog beach sunset red blue green old car bike child birthday cake snow "
             "mountain lake city street at night family dinner wedding flower garden kayak receipt sign "
             "grandma smiling running in summer winter 2019 Lisbon golden hair girl two three").split()
    chinese = "金色 头发 的 小姐姐 红色 圆形 猫 狗 海滩 日落 生日 蛋糕 雪山 城市 夜景 家人 婚礼 花园 收据 夏天".split()
    texts = []
    for i in range(count):
        pool, sep = (chinese, "") if i % 4 == 3 else (words, " ")
        length = int(rng.integers(1, 40 if i % 10 == 9 else 9))
        texts.append(sep.join(pool[int(j)] for j in rng.integers(0, len(pool), length)))
    return texts


def _keep_int8_text(original: ModelSpec, folder: Path, progress: Callable[[str], None]) -> bool:
    """Whether the int8 text encoder in folder keeps every sample text's vector near the original's; says so."""
    import time

    from ..indexing.encoder import Encoder

    texts = sample_texts()
    vectors, seconds = [], []
    for spec in (original, load_model_spec(folder)):
        encoder = Encoder.open(spec, backend="onnx", image=False)
        try:
            vectors.append(np.concatenate([encoder.encode_texts(texts[i:i + 50]) for i in range(0, len(texts), 50)]))
            started = time.perf_counter()
            for text in texts[:40]:  # one query at a time, as a search encodes it
                encoder.encode_texts([text])
            seconds.append((time.perf_counter() - started) / 40)
        finally:
            encoder.close()
    cosine = np.sum(vectors[0] * vectors[1], axis=1)
    measured = (f"cosine to the original on {len(texts)} texts: mean {cosine.mean():.4f}, min {cosine.min():.4f}; "
                f"{seconds[0] * 1000:.1f} ms -> {seconds[1] * 1000:.1f} ms per query "
                f"({seconds[0] / max(seconds[1], 1e-9):.2f}x)")
    if cosine.min() < TEXT_MIN_COSINE:
        progress(f"int8 text encoder not used ({measured}): below {TEXT_MIN_COSINE}, so the original is kept")
        return False
    progress(f"int8 text encoder: {_mb(folder / TEXT_FILE)}; {measured}")
    return True
