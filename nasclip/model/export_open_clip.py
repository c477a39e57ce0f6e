"""``nasclip models export --open-clip ARCH --weights FILE OUT_DIR``: an open_clip model as a model folder.

open_clip is where most CLIP weights people use come from (OpenAI's, LAION's,
DataComp's, SigLIP's), and its code is the reference for what their vectors
are. This export builds the architecture with open_clip itself, loads the
state dict (``.pt``/``.bin`` or ``.safetensors``), and writes:

* ``image.onnx`` and ``text.onnx``: ``encode_image`` and ``encode_text``
  with a dynamic batch (nasclip L2-normalises their output);
* the tokenizer: open_clip's CLIP BPE rebuilt from the merges file its wheel
  ships (``tokenizer.json``), or, for architectures whose tokenizer lives on
  the Hugging Face hub (SigLIP, XLM-RoBERTa), the tokenizer given with
  ``--tokenizer DIR``; a transformers text tower (XLM-RoBERTa) is built
  from the ``config.json`` in that folder too, where open_clip would fetch
  it from the hub;
* ``model.yaml`` with the preprocessing open_clip's pretrained table gives
  those weights (``--pretrained TAG``: size, mean/std, resize mode; also
  whether the weights need QuickGELU, which changes the graph), and the text
  clean-up open_clip's tokenizer does (``text.normalize``).

Nothing is activated unless nasclip's own loading reproduces open_clip: the
token ids of sample texts equal open_clip's tokenizer's, and ONNX Runtime's
unit vectors equal PyTorch's within ``TOLERANCE``.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import ModelError
from .download import Staging, sha256_file
from .export import TOLERANCE, check_against_reference
from .install import Provenance, finish
from .reference import import_torch, open_clip
from .spec import ImageSpec, ModelSpec, NormalizeStep, TextSpec, dump_model_spec

log = logging.getLogger("nasclip.export")

# open_clip's text clean-up modes (tokenizer.get_clean_fn) as nasclip's normalisation steps.
# CLIP BPE lower-cases in tokenizer.json itself, so "lower" needs no step there.
CLEAN_STEPS: dict[str, tuple[NormalizeStep, ...]] = {
    "lower": ("clean", "lower"),
    "whitespace": ("clean",),
    "canonicalize": ("clean", "strip_punct", "lower"),
}
# Texts whose token ids must equal open_clip's before a folder is activated.
SAMPLE_TEXTS = ("a photo of a cat", "Two DOGS playing in the snow!", "grandma's 80th birthday &amp; cake",
                "金色头发的小姐姐", "café “quoted” ﬁne", "beach, Lisbon — summer 2019 🏖️", "photo " * 90)


def _preprocess_contract(oc: Any, arch: str, pretrained: str | None) -> tuple[str | None, dict[str, Any], bool]:
    """(tag, image preprocessing, quick_gelu) of the weights, from open_clip's pretrained table.

    Without a tag, where all the architecture's published weights agree
    (SigLIP 2 has one set), theirs is used. Where they differ (OpenAI's
    ViT-B-32 needs QuickGELU, LAION's does not), the model is what
    ``open_clip.create_model(arch)`` builds — the architecture's own
    activation and open_clip's default preprocessing — and a warning names
    the weights that need --pretrained: the weights cannot tell, and the
    wrong choice gives quietly other vectors.
    """
    from open_clip.transform import PreprocessCfg

    tags = list(oc.list_pretrained_tags_by_model(arch))
    keys = ("mean", "std", "interpolation", "resize_mode")
    if pretrained is None:
        configs = {tag: oc.get_pretrained_cfg(arch, tag) for tag in tags}
        distinct = {tuple(str(c.get(k)) for k in (*keys, "quick_gelu")) for c in configs.values()}
        if len(distinct) > 1:
            default = PreprocessCfg()
            other = [tag for tag, c in configs.items() if c.get("quick_gelu") or any(
                k in c and tuple(np.atleast_1d(c[k])) != tuple(np.atleast_1d(getattr(default, k))) for k in keys)]
            log.warning("no --pretrained: %s is built as open_clip.create_model(%r) builds it (its own "
                        "activation, open_clip's default preprocessing); weights %s need other settings: "
                        "name them with --pretrained TAG if these are those", arch, arch, ", ".join(other))
            return None, {}, False
        pretrained = tags[0] if tags else None
    elif pretrained not in tags:
        raise ModelError(f"open_clip has no weights {pretrained!r} for {arch}"
                         + (f" (it knows: {', '.join(tags)})" if tags else " (it knows none)"))
    config = oc.get_pretrained_cfg(arch, pretrained) if pretrained else {}
    contract = {key: config[key] for key in keys if key in config}
    return pretrained, contract, bool(config.get("quick_gelu", False))


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """open_clip warns on the root logger that no pretrained weights were loaded: the export loads them next."""
    def drop(record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "pretrained weights" not in message and "initialized partially" not in message

    root = logging.getLogger()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def _image_spec(preprocess: dict[str, Any]) -> dict[str, Any]:
    size = preprocess["size"]
    if isinstance(size, (tuple, list)):
        if len(set(size)) != 1:
            raise ModelError(f"the model takes {size[0]}x{size[1]} images; nasclip feeds square ones")
        size = size[0]
    modes = {"shortest": "crop", "squash": "squash"}
    if preprocess.get("resize_mode", "shortest") not in modes:
        raise ModelError(f"resize mode {preprocess['resize_mode']!r} (padding) is not one nasclip does "
                         f"({', '.join(modes)})")
    interpolation = preprocess.get("interpolation", "bicubic")
    fields = {name.name for name in ImageSpec.__dataclass_fields__.values()}
    extra: dict[str, Any] = {}
    if "interpolation" in fields:
        extra["interpolation"] = interpolation
    elif interpolation != "bicubic":
        raise ModelError(f"the model's images are resized with {interpolation}; nasclip resizes with bicubic")
    return {"size": int(size), "resize": modes[preprocess.get("resize_mode", "shortest")],
            "mean": tuple(float(v) for v in preprocess["mean"]),
            "std": tuple(float(v) for v in preprocess["std"]), **extra}


def _local_text_tower(arch: str, text_cfg: dict[str, Any], folder: Path | None) -> dict[str, Any]:
    """text_cfg of a transformers text tower (XLM-RoBERTa, ...) built from folder instead of the hub.

    open_clip reads such a tower's configuration from the hub by name; the
    same files from a local folder (what save_pretrained writes) build the
    same graph, and the weights come from --weights as for every export.
    """
    name = text_cfg["hf_model_name"]
    if folder is None or not (folder / "config.json").is_file():
        raise ModelError(f"{arch}: its text tower is the Hugging Face model {name!r}: pass --tokenizer DIR, a "
                         f"folder holding that model's config.json, tokenizer.json and tokenizer_config.json "
                         f"(the hub's files for {name}, without its weights)")
    return {**text_cfg, "hf_model_name": str(folder), "hf_tokenizer_name": str(folder), "hf_model_pretrained": False}


def _reference_tokenizer(oc: Any, arch: str, text_cfg: dict, tokenizer: Path | None) -> tuple[Any, str]:
    """open_clip's tokenizer for arch, and how it cleans text."""
    kwargs = dict(text_cfg.get("tokenizer_kwargs") or {})
    clean = str(kwargs.pop("clean", "lower" if not text_cfg.get("hf_tokenizer_name") else "whitespace"))
    if clean not in CLEAN_STEPS:
        raise ModelError(f"{arch}: its tokenizer cleans text with {clean!r}, which nasclip does not reproduce")
    length = int(text_cfg.get("context_length", 77))
    if text_cfg.get("hf_tokenizer_name"):
        if tokenizer is None:
            raise ModelError(f"{arch} uses the Hugging Face tokenizer {text_cfg['hf_tokenizer_name']!r}, which "
                             "is not part of open_clip: pass --tokenizer DIR, a folder holding its tokenizer.json "
                             "and tokenizer_config.json (what save_pretrained writes)")
        if kwargs.get("strip_sep_token") or kwargs.get("tokenizer_mode"):
            raise ModelError(f"{arch}: its tokenizer options {sorted(kwargs)} are not ones nasclip reproduces")
        if not (tokenizer / "tokenizer.json").is_file():
            raise ModelError(f"{tokenizer}: no tokenizer.json in it")
        try:
            return oc.tokenizer.HFTokenizer(str(tokenizer), context_length=length, clean=clean), clean
        except Exception as exc:  # transformers raises many kinds for a folder it cannot read
            raise ModelError(f"{tokenizer}: transformers cannot load this tokenizer: {exc}") from None
    if tokenizer is not None:
        raise ModelError(f"{arch} uses open_clip's own CLIP tokenizer; --tokenizer is only for hub tokenizers")
    return oc.tokenizer.SimpleTokenizer(context_length=length, clean=clean), clean


def _write_tokenizer(oc: Any, reference: Any, source: Path | None, out: Path) -> int:
    """tokenizer.json in out; returns the pad id."""
    if source is None:
        import gzip

        from ..indexing.tokenizer import clip_bpe_from_merges

        with gzip.open(oc.tokenizer.default_bpe()) as merges:
            lines = merges.read().decode("utf-8").split("\n")
        clip_bpe_from_merges(lines).save(str(out / "tokenizer.json"))
        return 0  # open_clip pads with zeros; pooling takes the end-of-text position
    shutil.copyfile(source / "tokenizer.json", out / "tokenizer.json")
    # A transformers text tower masks out its pad id: the manifest's must be that one.
    pad = reference.tokenizer.pad_token_id
    return int(pad) if pad is not None else 0


def _load_weights(oc: Any, model: Any, arch: str, weights: Path) -> None:
    if not weights.is_file():
        raise ModelError(f"{weights}: no such file (the state dict open_clip saves, .pt or .safetensors)")
    try:
        incompatible = oc.load_checkpoint(model, str(weights), strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ModelError(f"{weights}: not weights of {arch}: "
                         f"{' '.join(first[:3])[:600]}") from None
    except Exception as exc:  # unpickling/safetensors errors of a damaged or foreign file
        raise ModelError(f"{weights}: cannot read the weights: {type(exc).__name__}: {exc}") from None
    if incompatible and getattr(incompatible, "missing_keys", None):
        raise ModelError(f"{weights}: lacks {len(incompatible.missing_keys)} of the model's tensors")


def _trimmable_text(oc: Any, model: Any) -> Callable[[Any], Any] | None:
    """encode_text written to run at any length, where cutting the padding changes no vector; else None.

    open_clip's CLIP text tower adds its 77 positions and its causal mask
    whole, so its graph is fixed at 77 tokens; with causal attention the
    output at the end-of-text token reads nothing after it, so the same
    computation sliced to the ids' length gives the same vector. A
    transformers tower masks its pad id itself. SigLIP's tower (no causal
    mask, pooled at the last position) reads the padding: it stays fixed.
    """
    from open_clip.transformer import text_global_pool

    if type(getattr(model, "text", None)).__name__ == "HFTextEncoder":
        return model.encode_text
    if not isinstance(model, oc.CLIP) or model.attn_mask is None or model.text_pool_type not in ("argmax", "eos"):
        return None

    transformer = model.transformer
    if not getattr(transformer, "batch_first", False) or not all(
            type(block).__name__ == "ResidualAttentionBlock" and not hasattr(block, "ln_1_kv")
            for block in transformer.resblocks):
        return None

    def encode_text(text: Any) -> Any:
        length = text.shape[1]
        mask = model.attn_mask[:length, :length]
        dtype = transformer.get_cast_dtype()
        x = model.token_embedding(text).to(dtype) + model.positional_embedding[:length].to(dtype)
        for block in transformer.resblocks:
            # ResidualAttentionBlock.forward, except that key and value are
            # other tensor objects than the query: for q is k is v PyTorch's
            # attention takes a packed projection whose traced reshape keeps
            # the trace's 77 tokens as a constant.
            h = block.ln_1(x)
            attended = block.attn(h, h.view_as(h), h.view_as(h), need_weights=False, attn_mask=mask)[0]
            x = x + block.ls_1(attended)
            x = x + block.ls_2(block.mlp(block.ln_2(x)))
        x = model.ln_final(x)
        x = text_global_pool(x, text, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
        projection = model.text_projection
        if projection is None:
            return x
        return projection(x) if hasattr(projection, "weight") else x @ projection

    return encode_text


def _export_onnx(torch: Any, model: Any, text_fn: Callable[[Any], Any], out: Path, size: int, length: int,
                 trim: bool) -> None:
    class ImageEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, image: Any) -> Any:
            return self.model.encode_image(image)

    class TextEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, text: Any) -> Any:
            return text_fn(text)

    import warnings

    pixels = torch.zeros(2, 3, size, size)
    ids = torch.zeros(2, length, dtype=torch.int64)
    ids[:, :3] = 1
    # In eval mode nn.MultiheadAttention takes a fused kernel the ONNX exporter
    # cannot translate; the plain path computes the same thing.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on shapes: checked against PyTorch after the export
        # TorchScript exporter, as export.py uses; wrappers in eval mode so dropout stays off.
        try:
            _export_both(torch, ImageEncoder().eval(), TextEncoder().eval(), out, pixels, ids, trim)
        except Exception as exc:  # the exporter's own errors name the operator it cannot translate
            raise ModelError(f"PyTorch cannot export this model to ONNX: {type(exc).__name__}: {exc}") from None
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)


def _export_both(torch: Any, image: Any, text: Any, out: Path, pixels: Any, ids: Any, trim: bool) -> None:
    torch.onnx.export(image, (pixels,), str(out / "image.onnx"), input_names=["image"],
                      output_names=["embedding"], opset_version=17, dynamo=False,
                      dynamic_axes={"image": {0: "batch"}, "embedding": {0: "batch"}})
    axes = {0: "batch", 1: "tokens"} if trim else {0: "batch"}
    torch.onnx.export(text, (ids,), str(out / "text.onnx"), input_names=["text"],
                      output_names=["embedding"], opset_version=17, dynamo=False,
                      dynamic_axes={"text": axes, "embedding": {0: "batch"}})


def _check_token_ids(reference: Any, folder: Path, spec_text: str) -> None:
    """nasclip's token ids for SAMPLE_TEXTS must be open_clip's, or the folder is not activated."""
    from ..indexing.tokenizer import TextTokenizer
    from .spec import MANIFEST, load_model_spec

    (folder / MANIFEST).write_text(spec_text, encoding="utf-8")
    ours, _ = TextTokenizer(load_model_spec(folder)).encode(list(SAMPLE_TEXTS))
    want = np.asarray(reference(list(SAMPLE_TEXTS), context_length=ours.shape[1]))
    for text, got, expected in zip(SAMPLE_TEXTS, ours, want):
        if not np.array_equal(got.astype(np.int64), expected.astype(np.int64)):
            raise ModelError(f"nasclip's tokenizer gives other token ids than open_clip's for {text[:40]!r}; "
                             "nothing was installed")


def export_open_clip(arch: str, weights: Path, target: Path, *, pretrained: str | None = None,
                     tokenizer: Path | None = None, replace: bool = False) -> Path:
    """Export open_clip architecture arch with weights into the model folder target; returns target."""
    if target.exists() and not replace:
        raise ModelError(f"{target} already exists; pass --force to replace it")
    oc = open_clip()
    torch = import_torch()
    if arch not in oc.list_models():
        raise ModelError(f"open_clip knows no architecture {arch!r} (`python -c 'import open_clip; "
                         "print(open_clip.list_models())'` lists them)")
    config = oc.get_model_config(arch)
    text_cfg = dict(config.get("text_cfg") or {})
    overrides: dict[str, Any] = {}
    if text_cfg.get("hf_model_name"):
        overrides["text_cfg"] = text_cfg = _local_text_tower(arch, text_cfg, tokenizer)
    tag, contract, quick_gelu = _preprocess_contract(oc, arch, pretrained)
    reference, clean = _reference_tokenizer(oc, arch, text_cfg, tokenizer)
    try:
        with _quiet_root_logger():
            model = oc.create_model(arch, pretrained=None, force_quick_gelu=quick_gelu,
                                    force_preprocess_cfg=contract or None, **overrides)
    except Exception as exc:  # open_clip/timm raise whatever their builders raise
        raise ModelError(f"open_clip cannot build {arch}: {type(exc).__name__}: {exc}") from None
    _load_weights(oc, model, arch, Path(weights))
    model.eval()
    image = _image_spec(oc.get_model_preprocess_cfg(model))
    length = int(text_cfg.get("context_length", 77))
    origin = f"open_clip {arch}" + (f" ({tag})" if tag else "") + f" with weights {Path(weights).resolve()}"
    with Staging(target) as staging:
        staging.clear()
        try:
            pad_id = _write_tokenizer(oc, reference, tokenizer, staging.path)
            steps = CLEAN_STEPS[clean]
            if tokenizer is None:
                steps = tuple(s for s in steps if s != "lower")  # tokenizer.json lower-cases
            trimmed = _trimmable_text(oc, model)
            _export_onnx(torch, model, trimmed or model.encode_text, staging.path, image["size"], length,
                         trimmed is not None)
            image_sha = sha256_file(staging.path / "image.onnx")
            with torch.no_grad():
                dim = int(model.encode_text(torch.zeros(1, length, dtype=torch.int64)).shape[-1])
            spec = ModelSpec(
                format=1, id=f"{target.name}-{image_sha[:12]}", embedding_dim=dim,
                image=ImageSpec(onnx="image.onnx", input_name="image", output_name="embedding", **image),
                text=TextSpec(tokenizer="tokenizer.json", onnx="text.onnx", context_length=length, pad_id=pad_id,
                              input_name="text", dtype="int64", mask_name=None, output_name="embedding",
                              normalize=steps, trim=trimmed is not None),
                languages=("en",) if tokenizer is None else (),
                name=target.name, description=f"Exported by nasclip {__version__} from {origin}")
            manifest = dump_model_spec(spec, f"Exported by nasclip {__version__} from {origin}\n"
                                             "(`nasclip models export --open-clip`). See docs/models.md.")
            _check_token_ids(reference, staging.path, manifest)

            def image_fn(pixels: np.ndarray) -> np.ndarray:
                with torch.no_grad():
                    return np.asarray(model.encode_image(torch.from_numpy(pixels)).numpy())

            def text_fn(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
                with torch.no_grad():
                    return np.asarray(model.encode_text(torch.from_numpy(ids.astype(np.int64))).numpy())

            check_against_reference(staging.path, manifest, image_fn, text_fn, list(SAMPLE_TEXTS))
            return finish(staging, manifest, Provenance(f"export of {origin}", "recorded at export"),
                          replace=replace)
        except BaseException:
            staging.discard()
            raise


__all__ = ["TOLERANCE", "export_open_clip"]
