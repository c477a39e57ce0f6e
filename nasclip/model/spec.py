"""Model folders: a ``model.yaml`` manifest naming the files and the input contract.

A model is a folder. Its manifest says which file serves which backend
(ONNX Runtime, AX650N ``.axmodel``), how to tokenize text, and exactly how to
turn a photo into the image encoder's input (size, resize mode, mean/std,
channel order, layout, dtype). Every backend preprocesses from these fields,
so the same photo gives the same tensor everywhere. See docs/models.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from ..errors import ModelError
from ..typedyaml import (
    Problems,
    internal,
    parse_yaml,
    read_yaml_file,
    setting,
    to_plain,
)

MANIFEST = "model.yaml"

# Text clean-ups before tokenizing (nasclip/indexing/textnorm.py says what each does).
NormalizeStep = Literal["clean", "lower", "strip_punct", "t2s"]


@dataclass(frozen=True)
class ImageSpec:
    """The image encoder and its input contract."""

    onnx: str | None = setting(None, "ONNX file of the image encoder (CPU backend)")
    axmodel: str | None = setting(None, "compiled .axmodel of the image encoder (AX650N NPU)")
    input_name: str = setting("pixel_values", "name of the image input tensor")
    output_name: str | None = setting(None, "name of the embedding output; null = the first output")
    size: int = setting(224, "input height and width in pixels")
    resize: Literal["crop", "squash"] = setting(
        "crop", "crop: shortest side to size, then centre crop (OpenAI CLIP); squash: resize to size")
    mean: tuple[float, ...] = setting(
        (0.48145466, 0.4578275, 0.40821073), "mean of the red, green and blue channels (0-1 scale)")
    std: tuple[float, ...] = setting(
        (0.26862954, 0.26130258, 0.27577711), "std of the red, green and blue channels (0-1 scale)")
    channel_order: Literal["RGB", "BGR"] = setting(
        "RGB", "order of the colour channels in the input tensor (mean/std stay in RGB order)")
    layout: Literal["NCHW", "NHWC"] = setting("NCHW", "tensor layout")
    dtype: Literal["float32", "uint8"] = setting(
        "float32", "float32: normalised with mean/std; uint8: raw pixels (normalisation compiled in)")


@dataclass(frozen=True)
class TextSpec:
    """The text encoder and its tokenizer."""

    tokenizer: str = setting(
        help="tokenizer.json (Hugging Face tokenizers: CLIP BPE, WordPiece, ...) or a BERT vocab.txt (WordPiece)")
    onnx: str | None = setting(None, "ONNX file of the text encoder (run on the CPU)")
    axmodel: str | None = setting(
        None, "compiled .axmodel of the text encoder (AX650N NPU); used only when there is no text.onnx")
    context_length: int = setting(77, "token ids per text; shorter texts are padded, longer truncated")
    pad_id: int = setting(0, "token id used for padding")
    input_name: str = setting("input_ids", "name of the token id input tensor")
    dtype: Literal["int64", "int32"] = setting("int64", "integer type of the token id (and mask) inputs")
    mask_name: str | None = setting(None, "name of the attention mask input, if the model takes one")
    output_name: str | None = setting(None, "name of the embedding output; null = the first output")
    normalize: tuple[NormalizeStep, ...] = setting(
        (), "clean-ups before tokenizing, in order: clean (open_clip's ftfy + HTML unescaping + whitespace), "
            "lower, strip_punct (SigLIP), t2s (traditional to simplified Chinese)")
    prefix: str = setting("", "text put before every query after normalising (e.g. a language code)")
    trim: bool = setting(
        False, "the text encoder takes any length up to context_length and its vector does not depend on the "
               "padding (causal attention, or pooling that masks pads): ids are cut after a batch's longest text, "
               "so a short query costs a fraction of a full-length one")


@dataclass(frozen=True)
class ModelSpec:
    """A model folder's manifest."""

    format: int = setting(help="manifest format version (1)")
    id: str = setting(help="model id stored with every vector; change it whenever weights change")
    embedding_dim: int = setting(help="length of the embedding vectors")
    image: ImageSpec = setting(help="image encoder")
    text: TextSpec = setting(help="text encoder")
    name: str = setting("", "human-readable name")
    description: str = setting("", "one paragraph for `nasclip models list`")
    languages: tuple[str, ...] = setting((), "languages the text encoder understands")
    folder: Path = internal(Path("."))

    def path(self, name: str) -> Path:
        """A file of this model."""
        return self.folder / name


def _check(spec: ModelSpec, problems: Problems) -> None:
    if spec.format != 1:
        problems.add(None, "format", f"format {spec.format} is not supported by this nasclip (1)")
    if not spec.image.onnx and not spec.image.axmodel:
        problems.add(None, "image", "names no encoder file; give image.onnx and/or image.axmodel")
    if not spec.text.onnx and not spec.text.axmodel:
        problems.add(None, "text", "names no encoder file; give text.onnx and/or text.axmodel")
    for key in ("mean", "std"):
        if len(getattr(spec.image, key)) != 3:
            problems.add(None, f"image.{key}", "needs three values (one per colour channel)")
    if any(s <= 0 for s in spec.image.std):
        problems.add(None, "image.std", "values must be greater than 0")
    for key, value in (("embedding_dim", spec.embedding_dim), ("image.size", spec.image.size),
                       ("text.context_length", spec.text.context_length)):
        if value < 1:
            problems.add(None, key, "must be at least 1")
    if not spec.id.strip():
        problems.add(None, "id", "must not be empty")


def load_model_spec(folder: Path | str, *, check_files: bool = True) -> ModelSpec:
    """Read a model folder's manifest; ModelError names the file that is missing or malformed."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    try:
        text = read_yaml_file(manifest)
    except FileNotFoundError:
        if not folder.is_dir():
            raise ModelError(f"model folder {folder} does not exist (setting: model)") from None
        raise ModelError(f"{manifest}: missing; a model folder needs a {MANIFEST} (see docs/models.md)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{manifest}: cannot read: {exc}") from None
    spec = parse_yaml(ModelSpec, text, manifest, ModelError, _check)
    spec = dataclasses.replace(spec, folder=folder)
    if check_files:
        for name in model_files(spec):
            if not spec.path(name).is_file():
                raise ModelError(f"{spec.path(name)}: missing; {manifest} names it")
    return spec


def model_files(spec: ModelSpec) -> list[str]:
    """Every file the manifest names, in a stable order."""
    names = [spec.image.onnx, spec.image.axmodel, spec.text.onnx, spec.text.axmodel, spec.text.tokenizer]
    return list(dict.fromkeys(n for n in names if n))


def check_model_spec(spec: ModelSpec, source: str) -> list[str]:
    """Cross-field problems of a manifest built in code (e.g. from the registry), one line each."""
    problems = Problems(source)
    _check(spec, problems)
    for name in model_files(spec):
        if Path(name).is_absolute() or ".." in Path(name).parts:
            problems.add(None, "files", f"{name!r} must be a plain file name inside the model folder")
    return problems.items


class _ManifestDumper(yaml.SafeDumper):
    """Mappings as blocks, lists on one line ([0.48, 0.45, 0.40]) as people write them."""


_ManifestDumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True))


def dump_model_spec(spec: ModelSpec, header: str = "") -> str:
    """The manifest as model.yaml text (every field written out, so the file documents itself)."""
    body = yaml.dump(to_plain(spec), Dumper=_ManifestDumper, sort_keys=False, allow_unicode=True, width=100)
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    return "\n".join(lines + [body]) if lines else body
