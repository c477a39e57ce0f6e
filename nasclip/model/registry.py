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


def _check(registry: Registry, problems: Problems) -> None:
    if registry.format != 1:
        problems.add(None, "format", f"format {registry.format} is not supported by this nasclip (1)")
    seen: set[str] = set()
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
