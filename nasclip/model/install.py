"""Putting model folders in place: from the registry, from a folder or archive, or from an export.

Every path ends the same way (``finish``): the files sit in a staging folder
next to the target, their SHA-256 are checked or recorded (``SHA256SUMS``),
``model.yaml`` and ``install.yaml`` are written, the manifest is loaded and
the ONNX files are opened to check they take the inputs the manifest names —
and only then is the folder renamed into place. ``check_model`` is also what
``nasclip models verify`` runs.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO
from urllib.parse import urlparse

import yaml

from .. import __version__
from ..errors import DownloadError, ModelError
from .download import CHUNK, Progress, Staging, fetch, sha256_file
from .registry import RegistryEntry
from .spec import MANIFEST, ModelSpec, dump_model_spec, load_model_spec, model_files

log = logging.getLogger("nasclip.models")

SUMS = "SHA256SUMS"
RECORD = "install.yaml"
_UNPACKED = "_unpacked"


@dataclass
class Provenance:
    """Where a model folder's files came from, for install.yaml."""

    source: str
    checksums: str  # "published", "recorded", "source SHA256SUMS"
    files: dict[str, dict] = field(default_factory=dict)


def read_sums(folder: Path) -> dict[str, str]:
    """name -> sha256 from a folder's SHA256SUMS (``sha256sum`` format); empty if there is none."""
    path = folder / SUMS
    if not path.is_file():
        return {}
    sums = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name:
            raise ModelError(f"{path}:{number}: not a 'SHA256  NAME' line")
        sums[name.lstrip("*")] = digest.lower()
    return sums


def _write(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def check_model(folder: Path, spec: ModelSpec | None = None) -> list[str]:
    """Problems that would stop this model from running, one line each (empty: fine).

    Loads the manifest (files present?) and opens every ONNX file with ONNX
    Runtime to compare its inputs with the manifest: names, integer/float
    types, fixed sizes. An .axmodel is only opened where the NPU runtime exists.
    """
    try:
        spec = spec or load_model_spec(folder)
    except ModelError as exc:
        return str(exc).splitlines()
    problems: list[str] = []
    image, text = spec.image, spec.text
    if image.onnx:
        problems += _check_onnx(spec.path(image.onnx), "image", {
            image.input_name: ("tensor(float)" if image.dtype == "float32" else "tensor(uint8)",
                               _image_shape(spec))}, image.output_name)
    if text.onnx:
        wanted = {text.input_name: (f"tensor({text.dtype})", (None, text.context_length))}
        if text.mask_name:
            wanted[text.mask_name] = (f"tensor({text.dtype})", (None, text.context_length))
        problems += _check_onnx(spec.path(text.onnx), "text", wanted, text.output_name)
    for which, name, input_name, shape, dtype in (
            ("image", image.axmodel, image.input_name, _image_shape(spec), image.dtype),
            ("text", text.axmodel, text.input_name, (None, text.context_length), text.dtype)):
        if name:
            problems += _check_axmodel(spec.path(name), which, input_name, shape, dtype)
    try:
        from ..indexing.tokenizer import TextTokenizer

        TextTokenizer(spec).encode(["a photo"])
    except ModelError as exc:
        problems.append(str(exc))
    return problems


def _image_shape(spec: ModelSpec) -> tuple:
    size = spec.image.size
    return (None, 3, size, size) if spec.image.layout == "NCHW" else (None, size, size, 3)


def _check_onnx(path: Path, which: str, wanted: dict[str, tuple[str, tuple]], output: str | None) -> list[str]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    # Structure only: skip graph optimisation, which costs seconds on big models.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        return [f"{path}: ONNX Runtime cannot load it ({exc}); the file is damaged or not an ONNX model"]
    inputs = {i.name: i for i in session.get_inputs()}
    problems = []
    for name, (dtype, shape) in wanted.items():
        found = inputs.get(name)
        if found is None:
            problems.append(f"{path}: has no input {name!r} (it has {', '.join(inputs)}); "
                            f"fix {which}.input_name / {which}.mask_name in model.yaml")
            continue
        if found.type != dtype:
            problems.append(f"{path}: input {name!r} is {found.type}, model.yaml says {dtype} "
                            f"(fix {which}.dtype)")
        dims = list(found.shape)
        if len(dims) != len(shape):
            problems.append(f"{path}: input {name!r} has shape {dims}, expected {len(shape)} dimensions")
            continue
        for got, want in zip(dims[1:], shape[1:]):
            if want is not None and isinstance(got, int) and got != want:
                problems.append(f"{path}: input {name!r} has shape {dims}, model.yaml implies {list(shape)} "
                                f"(check {which}.size / layout / context_length)")
                break
    for name in inputs:
        if name not in wanted:
            problems.append(f"{path}: also needs input {name!r}, which nasclip does not feed")
    outputs = [o.name for o in session.get_outputs()]
    if output and output not in outputs:
        problems.append(f"{path}: has no output {output!r} (it has {', '.join(outputs)}); "
                        f"fix {which}.output_name in model.yaml")
    return problems


def _check_axmodel(path: Path, which: str, input_name: str, shape: tuple, dtype: str) -> list[str]:
    """An .axmodel is opened only where the NPU runtime exists; elsewhere it must at least not be empty."""
    from ..indexing.backends import axengine_available

    if path.stat().st_size == 0:
        return [f"{path}: empty file ({which}.axmodel)"]
    if not axengine_available():
        return []
    import axengine

    try:
        session = axengine.InferenceSession(str(path))
    except Exception as exc:  # the vendor runtime raises its own errors
        return [f"{path}: axengine cannot load it: {exc}"]
    inputs = {i.name: i for i in session.get_inputs()}
    found = inputs.get(input_name)
    if found is None:
        return [f"{path}: has no input {input_name!r} (it has {', '.join(inputs)}); fix {which}.input_name"]
    problems = []
    dims = list(found.shape)
    if len(dims) != len(shape) or any(w is not None and g != w for g, w in zip(dims[1:], shape[1:])):
        problems.append(f"{path}: input {input_name!r} has shape {dims}, model.yaml implies {list(shape)}")
    # axengine reports numpy dtypes or ONNX-style names such as "tensor(float)".
    reported = str(found.dtype).lower().replace("tensor(", "").rstrip(")")
    if {"float": "float32", "int": "int32", "long": "int64"}.get(reported, reported) != dtype:
        problems.append(f"{path}: input {input_name!r} is {found.dtype}, model.yaml says {dtype} "
                        f"(fix {which}.dtype)")
    return problems


def finish(staging: Staging, manifest_text: str, provenance: Provenance, *, replace: bool) -> Path:
    """Write model.yaml, SHA256SUMS and install.yaml into the staging folder, check, activate."""
    folder = staging.path
    _write(folder / MANIFEST, manifest_text)
    spec = load_model_spec(folder)
    names = model_files(spec)
    sums = {name: provenance.files.get(name, {}).get("sha256") or sha256_file(folder / name) for name in names}
    _write(folder / SUMS, "".join(f"{sums[name]}  {name}\n" for name in names))
    record = {
        "installed": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "nasclip": __version__,
        "from": provenance.source,
        "checksums": provenance.checksums,
        "files": {name: {**provenance.files.get(name, {}), "size": (folder / name).stat().st_size,
                         "sha256": sums[name]} for name in names},
    }
    _write(folder / RECORD, "# How this model folder was installed (written by nasclip).\n"
           + yaml.safe_dump(record, sort_keys=False, allow_unicode=True))
    extra = [p.name for p in folder.iterdir() if p.name not in set(names) | {MANIFEST, SUMS, RECORD}]
    for name in extra:  # leftovers from an earlier attempt, unpacked archives
        path = folder / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    problems = check_model(folder, spec)
    if problems:
        raise ModelError(f"{staging.target.name} was not installed; the model would not run:\n  "
                         + "\n  ".join(problems))
    return staging.activate(replace=replace)


def install_from_registry(entry: RegistryEntry, target: Path, *, allow_unverified: bool = False,
                          replace: bool = False, stream: TextIO | None = None,
                          retries: int = 4, timeout: float = 30.0, backoff: float = 1.0) -> Path:
    """Download entry's files (resuming a partial earlier run), verify, and activate target."""
    if not entry.verified and not allow_unverified:
        unpinned = [f.name for f in entry.files if not f.verified]
        raise ModelError(
            f"{entry.name}: no published size and SHA-256 for {', '.join(unpinned)}, so a damaged or replaced "
            "download could not be told from the real one. Pass --allow-unverified to install anyway: the "
            f"checksums seen are recorded in {target}/{SUMS} and `nasclip models verify` checks them later")
    if target.exists() and not replace:
        raise ModelError(f"{target} already exists; use `nasclip models verify {entry.name}`, or install with "
                         "--force to download and replace it")
    with Staging(target) as staging:
        staging.clear(keep={f.name for f in entry.files})
        provenance = Provenance(f"registry entry {entry.name}",
                                "published" if entry.verified else "recorded at install (none published)")
        for number, remote in enumerate(entry.files, 1):
            label = f"[{number}/{len(entry.files)}] {entry.name}/{remote.name}"
            seen = fetch(remote.url, staging.path / remote.name, size=remote.size, sha256=remote.sha256,
                         label=label, stream=stream, retries=retries, timeout=timeout, backoff=backoff)
            provenance.files[remote.name] = {"url": remote.url, "sha256": seen,
                                             "published_sha256": remote.sha256 is not None}
        header = (f"Installed by nasclip {__version__} from registry entry {entry.name}\n"
                  f"({entry.source}). See docs/models.md for every field.")
        return finish(staging, dump_model_spec(entry.installed_manifest(), header), provenance, replace=replace)


def _copy(source: Path, dest: Path, label: str, stream: TextIO | None) -> str:
    """Copy a file, fsync it, and return its SHA-256."""
    digest = hashlib.sha256()
    size = source.stat().st_size
    progress = Progress(label, size, stream, verb="copying")
    progress.start(0)
    done = 0
    with open(source, "rb") as src, open(dest, "wb") as out:
        while chunk := src.read(CHUNK):
            out.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            progress.update(done)
        out.flush()
        os.fsync(out.fileno())
    progress.finish(done)
    return digest.hexdigest()


def _safe_extract(archive: Path, into: Path) -> None:
    """Unpack a tar archive refusing absolute paths, '..', links out of it and device files."""
    try:
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(into, filter="data")
                return
            for member in tar.getmembers():
                path = Path(member.name)
                if path.is_absolute() or ".." in path.parts or not (member.isfile() or member.isdir()):
                    raise ModelError(f"{archive}: refusing to unpack {member.name!r} (unsafe path or not a file)")
            tar.extractall(into)
    except getattr(tarfile, "FilterError", ()) as exc:
        raise ModelError(f"{archive}: refusing to unpack: {exc}") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ModelError(f"{archive}: cannot unpack: {exc} (a damaged or incomplete archive?)") from None


def _model_root(folder: Path) -> Path:
    """The folder inside an unpacked archive that holds the model (it may be one level down)."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if not (folder / MANIFEST).exists() and len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return folder


def _find_loose(root: Path, remote_name: str, url: str) -> Path | None:
    """A registry file in a folder of files someone downloaded by hand."""
    repo_path = urlparse(url).path.split("/resolve/", 1)[-1].split("/", 1)[-1]
    for candidate in (root / remote_name, root / repo_path, root / Path(repo_path).name):
        if candidate.is_file():
            return candidate
    return None


def install_from_source(source: Path, target: Path, entry: RegistryEntry | None, *, replace: bool = False,
                        stream: TextIO | None = None) -> Path:
    """Install a model from a folder or a .tar/.tar.gz archive, with no network.

    The source is either a model folder (with model.yaml; its SHA256SUMS, if
    any, is checked) or, for a registry NAME, the entry's files as downloaded
    by hand (found by their folder name, their path in the repository, or
    their file name). Published checksums of the registry entry are enforced.
    """
    if not source.exists():
        raise ModelError(f"{source}: no such folder or archive (--from)")
    if target.exists() and not replace:
        raise ModelError(f"{target} already exists; `nasclip models remove {target.name}` first, "
                         "or install with --force to replace it")
    with Staging(target) as staging:
        staging.clear()
        try:
            if source.is_dir():
                root, origin = source, f"folder {source.resolve()}"
            elif tarfile.is_tarfile(source):
                unpacked = staging.path / _UNPACKED
                unpacked.mkdir()
                _safe_extract(source, unpacked)
                root, origin = _model_root(unpacked), f"archive {source.resolve()}"
            else:
                raise ModelError(f"{source}: neither a folder nor a tar archive (.tar, .tar.gz)")
            path = _install_files(root, origin, staging, entry, stream, replace)
        except BaseException:
            staging.discard()
            raise
    return path


def _install_files(root: Path, origin: str, staging: Staging, entry: RegistryEntry | None,
                   stream: TextIO | None, replace: bool) -> Path:
    published = {f.name: f for f in entry.files} if entry else {}
    if (root / MANIFEST).is_file():
        spec = load_model_spec(root)
        source_sums = read_sums(root)
        provenance = Provenance(origin, "source SHA256SUMS" if source_sums else "recorded at install")
        pairs = [(name, root / name) for name in model_files(spec)]
        manifest_text = (root / MANIFEST).read_text(encoding="utf-8")
    elif entry is not None:
        source_sums = {}
        provenance = Provenance(f"{origin} (files of registry entry {entry.name})",
                                "published" if entry.verified else "recorded at install (none published)")
        pairs = []
        for remote in entry.files:
            found = _find_loose(root, remote.name, remote.url)
            if found is None:
                raise ModelError(f"{root}: has no {remote.name} (download it from {remote.url})")
            pairs.append((remote.name, found))
        header = f"Installed by nasclip {__version__} from {origin}, registry entry {entry.name}."
        manifest_text = dump_model_spec(entry.installed_manifest(), header)
    else:
        raise ModelError(f"{root}: has no {MANIFEST}, and {staging.target.name} is not a model in the registry "
                         "(`nasclip models list`), so nasclip cannot tell what the files are")
    nested = [name for name, _ in pairs if Path(name).name != name]
    if nested:
        raise ModelError(f"{root}: model.yaml names {', '.join(nested)}; nasclip installs model folders whose "
                         "files sit directly in the folder")
    for number, (name, path) in enumerate(pairs, 1):
        seen = _copy(path, staging.path / name, f"[{number}/{len(pairs)}] {name}", stream)
        expected = source_sums.get(name)
        published_file = published.get(name)
        if published_file is not None and published_file.sha256 is not None:
            expected = published_file.sha256
        if expected is not None and seen != expected:
            raise DownloadError(f"{path}: SHA-256 mismatch: expected {expected}, got {seen}; the copy is damaged "
                                "or not the published file — nothing was installed")
        if published_file is not None and published_file.size is not None \
                and path.stat().st_size != published_file.size:
            raise DownloadError(f"{path}: {path.stat().st_size} bytes, the registry says {published_file.size}; "
                                "nothing was installed")
        provenance.files[name] = {"copied_from": str(path.resolve()), "sha256": seen}
    return finish(staging, manifest_text, provenance, replace=replace)


def partial_size(models_dir: Path, name: str) -> int | None:
    """Bytes of an interrupted download of name waiting to be resumed, or None."""
    staging = models_dir / f".{name}.partial"
    if not staging.is_dir():
        return None
    return sum(p.stat().st_size for p in staging.iterdir() if p.is_file())
