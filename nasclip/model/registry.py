"""The models nasclip knows how to install (``registry.yaml``, shipped inside the package).

An entry is one model folder: where each file comes from, its size and
SHA-256 when published, and the manifest the folder gets. Parsed with the
same typed YAML as the config, so a mistake in the file is reported with its
line. See docs/models.md for the format and the reasons behind each entry.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from ..errors import ModelError
from ..typedyaml import Problems, parse_yaml, read_yaml_file, setting
from .spec import ModelSpec, check_model_spec, model_files

REGISTRY_FILE = "registry.yaml"
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
# A Hugging Face download names the commit it comes from: a branch name
# ("main") would let the repository change what the same URL gives.
HF_URL_RE = re.compile(r"^https://huggingface\.co/[^/]+/[^/]+/resolve/(?P<revision>[^/]+)/.+")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class RemoteFile:
    """One file of a model folder and where to download it."""

    name: str = setting(help="file name inside the model folder, as model.yaml names it")
    url: str = setting(help="HTTP(S) URL to download it from")
    size: int | None = setting(None, "size in bytes, when published")
    sha256: str | None = setting(None, "SHA-256 in hex, when published")

    @property
    def verified(self) -> bool:
        return self.size is not None and self.sha256 is not None

    @property
    def revision(self) -> str | None:
        """The commit a Hugging Face URL is pinned to (None for other hosts)."""
        match = HF_URL_RE.match(self.url)
        return match.group("revision") if match else None


@dataclass(frozen=True)
class Recall:
    """A published search-quality figure an entry is chosen for."""

    language: str = setting(help="query language the figure is for (ISO 639-1), one of the entry's languages")
    value: float = setting(help="recall in percent (0-100)")
    benchmark: str = setting(help="the test set, short (shown by `models list`): figures on different sets "
                                  "do not compare")
    metric: str = setting(help="what was measured, e.g. 'zero-shot text-to-image, mean of R@1, R@5, R@10'")
    source: str = setting(help="URL of the published table")


@dataclass(frozen=True)
class Cost:
    """What running the model costs, as measured (bench/bench_models.py) or published for its hardware."""

    image_ms: float = setting(help="image encoder milliseconds per photo (fp32; batch 8 on all cores for cpu)")
    text_ms: float = setting(help="text encoder milliseconds per query (batch 1; one thread for cpu)")
    ram_mb: int = setting(help="peak resident memory with both encoders loaded, in MB")
    image_ms_int8: float | None = setting(
        None, "image ms per photo after `nasclip models quantize` (cpu entries)")
    measured: str = setting("", "where the figures come from: architecture, machine, benchmark")


@dataclass(frozen=True)
class RegistryEntry:
    """A model nasclip can install by name."""

    name: str = setting(help="what `nasclip models install NAME` takes; also the folder name")
    description: str = setting(help="one paragraph for `nasclip models list`")
    languages: tuple[str, ...] = setting(help="languages the text encoder understands (ISO 639-1)")
    hardware: Literal["cpu", "ax650n"] = setting(
        help="cpu: ONNX Runtime on any CPU; ax650n: needs the AX650N NPU runtime (pyaxengine)")
    source: str = setting(help="web page of the files")
    files: tuple[RemoteFile, ...] = setting(help="the files of the model folder")
    manifest: ModelSpec = setting(help="the model.yaml the installed folder gets")
    license: str = setting("", "licence of the weights")
    cost: Cost | None = setting(None, "what it costs to run: image and text ms, RAM")
    recall: tuple[Recall, ...] = setting((), "published search quality, per language, with the source")
    recommended: str = setting("", "for whom this entry is the recommendation (e.g. 'bilingual household'); "
                                   "at most one entry per audience")
    unpinned: str = setting("", "why the URLs name a branch instead of a commit (only until one is found)")

    @property
    def verified(self) -> bool:
        """True when every file has a published size and SHA-256 to check against."""
        return all(f.verified for f in self.files)

    def file(self, name: str) -> RemoteFile:
        for remote in self.files:
            if remote.name == name:
                return remote
        raise KeyError(name)

    def installed_manifest(self) -> ModelSpec:
        """The manifest with name, description and languages filled in from the entry."""
        spec = self.manifest
        return dataclasses.replace(spec, name=spec.name or self.name,
                                   description=spec.description or " ".join(self.description.split()),
                                   languages=spec.languages or self.languages)


@dataclass(frozen=True)
class Registry:
    """The whole registry file."""

    format: int = setting(help="registry format version (1)")
    models: tuple[RegistryEntry, ...] = setting(help="the installable models")

    def entry(self, name: str) -> RegistryEntry | None:
        for entry in self.models:
            if entry.name == name:
                return entry
        return None

    def recommendation(self, audience: str) -> RegistryEntry | None:
        """The entry recommended for audience (its ``recommended`` text), if any."""
        for entry in self.models:
            if entry.recommended == audience:
                return entry
        return None


def _check(registry: Registry, problems: Problems) -> None:
    if registry.format != 1:
        problems.add(None, "format", f"format {registry.format} is not supported by this nasclip (1)")
    seen: set[str] = set()
    audiences: dict[str, str] = {}
    for i, entry in enumerate(registry.models):
        where = f"models[{i}]"
        if entry.name in seen:
            problems.add(None, f"{where}.name", f"{entry.name!r} is used by more than one entry")
        seen.add(entry.name)
        if not NAME_RE.match(entry.name):
            problems.add(None, f"{where}.name", "use lower-case letters, digits, '.', '_' and '-'")
        names = [f.name for f in entry.files]
        for j, remote in enumerate(entry.files):
            if names.count(remote.name) > 1:
                problems.add(None, f"{where}.files[{j}].name", f"{remote.name!r} is listed twice")
            if "/" in remote.name or remote.name in ("", ".", "..", "model.yaml"):
                problems.add(None, f"{where}.files[{j}].name", "must be a plain file name (not model.yaml)")
            if urlparse(remote.url).scheme not in ("http", "https"):
                problems.add(None, f"{where}.files[{j}].url", "must be an http:// or https:// URL")
            if remote.sha256 is not None and not SHA256_RE.match(remote.sha256):
                problems.add(None, f"{where}.files[{j}].sha256", "must be 64 lower-case hex digits")
            if remote.size is not None and remote.size < 0:
                problems.add(None, f"{where}.files[{j}].size", "must not be negative")
            revision = remote.revision
            if revision is not None and not COMMIT_RE.match(revision) and not entry.unpinned:
                problems.add(None, f"{where}.files[{j}].url",
                             f"names the branch {revision!r}: pin the 40-hex commit (/resolve/<commit>/...), "
                             "or say why it cannot be pinned yet in the entry's unpinned")
        if entry.unpinned and all(COMMIT_RE.match(f.revision or "") for f in entry.files):
            problems.add(None, f"{where}.unpinned", "every URL is pinned to a commit: remove unpinned")
        for j, figure in enumerate(entry.recall):
            if not 0 <= figure.value <= 100:
                problems.add(None, f"{where}.recall[{j}].value", "is a percentage: 0 to 100")
            if figure.language not in entry.languages:
                problems.add(None, f"{where}.recall[{j}].language",
                             f"{figure.language!r} is not among the entry's languages {list(entry.languages)}")
            if urlparse(figure.source).scheme not in ("http", "https"):
                problems.add(None, f"{where}.recall[{j}].source", "must be the URL of the published table")
        if entry.cost is not None:
            figures = [entry.cost.image_ms, entry.cost.text_ms, entry.cost.ram_mb, entry.cost.image_ms_int8]
            if any(v is not None and v <= 0 for v in figures):
                problems.add(None, f"{where}.cost", "milliseconds and MB must be greater than 0")
        if entry.recommended:
            if entry.recommended in audiences:
                problems.add(None, f"{where}.recommended",
                             f"{audiences[entry.recommended]} is already the recommendation for "
                             f"{entry.recommended!r}")
            audiences.setdefault(entry.recommended, entry.name)
        for missing in sorted(set(model_files(entry.manifest)) - set(names)):
            problems.add(None, f"{where}.manifest", f"names {missing!r}, which is not among the entry's files")
        for line in check_model_spec(entry.manifest, f"{where}.manifest"):
            problems.items.append(f"{problems.source}: {line}")


def parse_registry(text: str, source: Path) -> Registry:
    """Parse registry text; ModelError lists every problem with its line."""
    return parse_yaml(Registry, text, source, ModelError, _check)


def load_registry(path: Path | None = None) -> Registry:
    """The registry shipped with nasclip (or the file at path)."""
    if path is None:
        text = resources.files("nasclip.model").joinpath(REGISTRY_FILE).read_text(encoding="utf-8")
        return parse_registry(text, Path(__file__).with_name(REGISTRY_FILE))
    try:
        text = read_yaml_file(Path(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: cannot read the model registry: {exc}") from None
    return parse_registry(text, Path(path))
