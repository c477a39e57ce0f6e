"""A local Hugging Face CLIP checkpoint folder -> a nasclip model folder.

``nasclip models export CHECKPOINT_DIR`` writes ``image.onnx`` (pixel_values
float32 [N,3,S,S] -> image_embeds), ``text.onnx`` (input_ids and
attention_mask int64 [N,L] -> text_embeds), ``tokenizer.json`` and
``model.yaml``, then checks that ONNX Runtime reproduces PyTorch's
embeddings before the folder is activated. Works for ``CLIPModel`` and
``ChineseCLIPModel`` checkpoints (``save_pretrained`` output).

PyTorch, transformers and onnx are the optional ``export`` extra; they are
imported here only, never by the daemon.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import __version__
from ..errors import ModelError
from .download import Staging, sha256_file
from .install import Provenance, finish
from .spec import ImageSpec, ModelSpec, TextSpec, dump_model_spec

log = logging.getLogger("nasclip.export")

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
# Agreement demanded between PyTorch and ONNX Runtime on unit vectors.
TOLERANCE = 1e-4


def _import_torch() -> tuple[Any, Any]:
    from .reference import import_torch

    try:
        torch = import_torch()
        import transformers
    except ImportError as exc:
        raise ModelError(f"`nasclip models export` needs PyTorch and transformers ({exc.name} is missing); "
                         "install the export extra: pip install 'nasclip[export]' "
                         "(it pins torch==2.13.0)") from None
    return torch, transformers


def _features(output: Any) -> Any:
    """transformers 5 returns an output object from get_*_features, 4.x a tensor."""
    return output if not hasattr(output, "pooler_output") else output.pooler_output


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: cannot read it: {exc}") from None


def _image_contract(checkpoint: Path, model_type: str, image_size: int) -> dict:
    """Resize mode, size, mean and std from preprocessor_config.json (CLIP's own defaults otherwise)."""
    config = _read_json(checkpoint / "preprocessor_config.json")
    size = config.get("size", {})
    crop = config.get("crop_size", {})
    crop = crop.get("height", image_size) if isinstance(crop, dict) else int(crop or image_size)
    if isinstance(size, dict) and "height" in size:
        resize, target = "squash", int(size["height"])
    elif isinstance(size, dict) and "shortest_edge" in size:
        resize, target = "crop", int(crop)
        if int(size["shortest_edge"]) != target:
            log.warning("preprocessor resizes the short side to %s and crops %s; nasclip resizes to the crop "
                        "size directly", size["shortest_edge"], target)
    elif config:
        resize, target = ("crop" if config.get("do_center_crop", True) else "squash"), int(crop)
    else:
        resize, target = ("squash" if model_type == "chinese_clip" else "crop"), image_size
    if target != image_size:
        raise ModelError(f"{checkpoint}/preprocessor_config.json: crops to {target} pixels but the vision model "
                         f"takes {image_size}")
    return {"resize": resize, "size": target,
            "mean": tuple(float(v) for v in config.get("image_mean", OPENAI_MEAN)),
            "std": tuple(float(v) for v in config.get("image_std", OPENAI_STD))}


def _write_tokenizer(checkpoint: Path, out: Path, model_type: str) -> int:
    """tokenizer.json in out from the checkpoint's tokenizer files; returns the pad id."""
    from tokenizers import Tokenizer

    from ..indexing.tokenizer import (
        clip_bpe_tokenizer,
        read_wordpiece_vocab,
        wordpiece_tokenizer,
    )

    if (checkpoint / "tokenizer.json").is_file():
        tokenizer = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    elif (checkpoint / "vocab.json").is_file() and (checkpoint / "merges.txt").is_file():
        vocab = _read_json(checkpoint / "vocab.json")
        lines = (checkpoint / "merges.txt").read_text(encoding="utf-8").splitlines()
        pairs = [line.split() for line in lines if line.strip() and not line.startswith("#version")]
        merges = [(pair[0], pair[1]) for pair in pairs]
        tokenizer = clip_bpe_tokenizer(vocab, merges)
    elif (checkpoint / "vocab.txt").is_file():
        tokenizer = wordpiece_tokenizer(read_wordpiece_vocab(checkpoint / "vocab.txt"))
    else:
        raise ModelError(f"{checkpoint}: no tokenizer (tokenizer.json, vocab.json + merges.txt, or vocab.txt)")
    # nasclip sets padding and truncation from model.yaml; the file carries neither.
    tokenizer.no_padding()
    tokenizer.no_truncation()
    tokenizer.save(str(out / "tokenizer.json"))
    pad = tokenizer.token_to_id("[PAD]") if model_type == "chinese_clip" else None
    return pad if pad is not None else 0


def export_checkpoint(checkpoint: Path, target: Path, *, context_length: int | None = None,
                      replace: bool = False) -> Path:
    """Export checkpoint into the model folder target (atomically, like an install); returns target."""
    checkpoint = Path(checkpoint)
    if not (checkpoint / "config.json").is_file():
        raise ModelError(f"{checkpoint}: not a Hugging Face checkpoint folder (no config.json)")
    if target.exists() and not replace:
        raise ModelError(f"{target} already exists; pass --force to replace it")
    torch, transformers = _import_torch()
    model_type = _read_json(checkpoint / "config.json").get("model_type")
    classes = {"clip": "CLIPModel", "chinese_clip": "ChineseCLIPModel"}
    if model_type not in classes:
        raise ModelError(f"{checkpoint}: model_type {model_type!r} is not a CLIP model nasclip can export "
                         f"({', '.join(classes)})")
    try:
        model = getattr(transformers, classes[model_type]).from_pretrained(checkpoint)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{checkpoint}: transformers cannot load it: {exc}") from None
    model.eval()
    vision, text = model.config.vision_config, model.config.text_config
    length = context_length or (52 if model_type == "chinese_clip" else 77)
    if length > text.max_position_embeddings:
        raise ModelError(f"context length {length} is more than the model's {text.max_position_embeddings} positions")
    with Staging(target) as staging:
        staging.clear()
        try:
            contract = _image_contract(checkpoint, model_type, vision.image_size)
            pad_id = _write_tokenizer(checkpoint, staging.path, model_type)
            _export_onnx(torch, model, staging.path, vision.image_size, length)
            image_sha = sha256_file(staging.path / "image.onnx")
            spec = ModelSpec(
                format=1, id=f"{target.name}-{image_sha[:12]}", embedding_dim=int(model.config.projection_dim),
                image=ImageSpec(onnx="image.onnx", input_name="pixel_values", output_name="image_embeds",
                                **contract),
                text=TextSpec(tokenizer="tokenizer.json", onnx="text.onnx", context_length=length, pad_id=pad_id,
                              input_name="input_ids", dtype="int64", mask_name="attention_mask",
                              output_name="text_embeds", trim=True),
                name=target.name, description=f"Exported by nasclip {__version__} from {checkpoint.resolve()}",
                languages=("zh",) if model_type == "chinese_clip" else ("en",))
            manifest = dump_model_spec(spec, f"Exported by nasclip {__version__} from {checkpoint.resolve()}\n"
                                             "(`nasclip models export`). See docs/models.md for every field.")
            _self_check(torch, model, staging.path, manifest)
            return finish(staging, manifest, Provenance(f"export of {checkpoint.resolve()}", "recorded at export"),
                          replace=replace)
        except BaseException:
            staging.discard()
            raise


def _export_onnx(torch: Any, model: Any, out: Path, image_size: int, length: int) -> None:
    class ImageEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values: Any) -> Any:
            return _features(self.model.get_image_features(pixel_values=pixel_values))

    class TextEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return _features(self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask))

    import warnings

    pixels = torch.zeros(1, 3, image_size, image_size)
    # A padded example: with an all-ones mask transformers skips building the
    # attention mask, and the trace would then ignore the mask for good.
    ids = torch.zeros(1, length, dtype=torch.int64)
    ids[0, :3] = 1
    mask = (ids != 0).to(torch.int64)
    with torch.no_grad(), warnings.catch_warnings():
        # Tracer chatter about constant shapes is expected: the context length is fixed.
        warnings.simplefilter("ignore")
        # The TorchScript exporter: deterministic, no onnxscript needed.
        # Wrappers in eval mode: export restores the wrapper's mode afterwards, and a
        # wrapper left in training mode would switch the model's dropout on.
        torch.onnx.export(ImageEncoder().eval(), (pixels,), str(out / "image.onnx"), input_names=["pixel_values"],
                          output_names=["image_embeds"], opset_version=17, dynamo=False,
                          dynamic_axes={"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}})
        torch.onnx.export(TextEncoder().eval(), (ids, mask), str(out / "text.onnx"),
                          input_names=["input_ids", "attention_mask"], output_names=["text_embeds"],
                          opset_version=17, dynamo=False,
                          # Any length: the texts' own, cut after the longest (text.trim).
                          dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                        "attention_mask": {0: "batch", 1: "tokens"}, "text_embeds": {0: "batch"}})


def _self_check(torch: Any, model: Any, folder: Path, manifest: str) -> None:
    def image_fn(pixels: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.asarray(_features(model.get_image_features(pixel_values=torch.from_numpy(pixels))).numpy())

    def text_fn(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.asarray(_features(model.get_text_features(
                input_ids=torch.from_numpy(ids.astype(np.int64)),
                attention_mask=torch.from_numpy(mask.astype(np.int64)))).numpy())

    check_against_reference(folder, manifest, image_fn, text_fn, ["a photo", "two cats on a sofa"])


def check_against_reference(folder: Path, manifest: str, image_fn: Callable[[np.ndarray], np.ndarray],
                            text_fn: Callable[[np.ndarray, np.ndarray], np.ndarray], texts: list[str]) -> None:
    """ONNX Runtime must reproduce the PyTorch model's unit vectors within TOLERANCE, through nasclip's loading.

    image_fn and text_fn are the PyTorch encoders (pixels; token ids and mask
    as nasclip's tokenizer gives them), returning unnormalised embeddings.
    """
    from ..indexing.encoder import Encoder, l2_normalise
    from ..indexing.tokenizer import TextTokenizer
    from .spec import MANIFEST, load_model_spec

    (folder / MANIFEST).write_text(manifest, encoding="utf-8")
    spec = load_model_spec(folder)
    encoder = Encoder.open(spec, backend="onnx", threads=1)
    try:
        generator = np.random.default_rng(0)
        size = spec.image.size
        pixels = generator.standard_normal((2, 3, size, size)).astype(np.float32)
        ids, mask = TextTokenizer(spec).encode(texts)  # the ids nasclip will feed
        # Each text alone too: a trim model then runs it at its own length.
        alone = [encoder.encode_texts([text]) for text in texts]
        got = np.concatenate([encoder.encode_images(pixels), encoder.encode_texts(texts), *alone])
        reference = text_fn(ids, mask)
        want = l2_normalise(np.concatenate([image_fn(pixels), reference, reference]).astype(np.float32))
    finally:
        encoder.close()
    error = float(np.abs(got - want).max())
    log.info("export check: ONNX Runtime vs PyTorch max difference %.2e", error)
    if error > TOLERANCE:
        raise ModelError(f"exported ONNX differs from PyTorch by {error:.2e} (more than {TOLERANCE}); "
                         "nothing was installed")
    print(f"export check: ONNX Runtime matches PyTorch (max difference {error:.1e})")
