"""``nasclip models``: list, install, verify, remove, export, quantize and inspect CLIP models.

Installed models live in ``<state_dir>/models/<name>/`` (state_dir from the
config given with ``nasclip --config``), or wherever ``--models-dir`` says.
Installing prints the ``model:`` line to put in the config.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from pathlib import Path

from ..config import Config, load_config
from ..errors import ModelError, NasclipError
from ..model.download import Staging, fsync_path, human_bytes, sha256_file
from ..model.install import (
    RECORD,
    SUMS,
    check_model,
    install_from_registry,
    install_from_source,
    partial_size,
    read_sums,
)
from ..model.registry import Registry, RegistryEntry, load_registry
from ..model.spec import MANIFEST, load_model_spec, model_files
from ..paths import DEFAULT_CONFIG

log = logging.getLogger("nasclip.models")

DEFAULT_STATE_DIR = Path(str(Config.__dataclass_fields__["state_dir"].default))


def _config(args: argparse.Namespace) -> Config | None:
    """The config named with --config, else the system one if it exists."""
    path = getattr(args, "config", None)
    if path:
        return load_config(path)
    if DEFAULT_CONFIG.is_file():
        return load_config(DEFAULT_CONFIG)
    return None


def models_dir(args: argparse.Namespace) -> Path:
    """--models-dir, else <state_dir>/models of the config (or of the default state_dir)."""
    if args.models_dir:
        return Path(args.models_dir).expanduser().absolute()
    config = _config(args)
    return (config.state_dir if config else DEFAULT_STATE_DIR) / "models"


def _configured_model(args: argparse.Namespace) -> Path | None:
    try:
        config = _config(args)
    except NasclipError:
        return None
    return config.model.resolve() if config else None


def _installed_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and (p / MANIFEST).exists())


def _status(folder: Path) -> str:
    """One phrase about an installed folder: which model, and how its checksums were obtained."""
    try:
        spec = load_model_spec(folder)
    except ModelError as exc:
        return "BROKEN: " + str(exc).splitlines()[0]
    record = folder / RECORD
    how = ""
    if record.is_file():
        text = record.read_text(encoding="utf-8")
        how = ", checksums recorded at install (none published)" if "recorded at install" in text else ""
    return f"installed ({spec.embedding_dim}-d, id {spec.id}{how})"


def _cost_cells(entry: RegistryEntry) -> tuple[str, str, str]:
    """PHOTO ms (fp32/int8), QUERY ms and RAM MB of an entry, '-' where unknown."""
    cost = entry.cost
    if cost is None:
        return "-", "-", "-"
    photo = f"{cost.image_ms:.0f}" + (f"/{cost.image_ms_int8:.0f}" if cost.image_ms_int8 else "")
    query = f"{cost.text_ms:.0f}" if cost.text_ms >= 10 else f"{cost.text_ms:.1f}"
    return photo, query, str(cost.ram_mb)


def _recall_cell(entry: RegistryEntry) -> str:
    """'zh 72.5, en 68.3 (Crossmodal-3600)': figures grouped by test set, which do not compare across sets."""
    groups: dict[str, list[str]] = {}
    for figure in entry.recall:
        groups.setdefault(figure.benchmark, []).append(f"{figure.language} {figure.value:.1f}")
    return "; ".join(f"{', '.join(values)} ({benchmark})" for benchmark, values in groups.items()) or "-"


LIST_HEAD = f"  {'NAME':32} {'LANG':6} {'HARDWARE':8} {'PHOTO ms':>9} {'QUERY ms':>8} {'RAM MB':>6}  RECALL %"


def _list_row(marker: str, name: str, langs: str, hardware: str, cells: tuple[str, str, str], recall: str) -> str:
    photo, query, ram = cells
    return f"{marker} {name:32} {langs:6} {hardware:8} {photo:>9} {query:>8} {ram:>6}  {recall}"


def cmd_list(args: argparse.Namespace) -> int:
    root = models_dir(args)
    registry = load_registry()
    in_use = _configured_model(args)
    print(f"Models folder: {root}")
    print(LIST_HEAD)
    for entry in registry.models:
        folder = root / entry.name
        if (folder / MANIFEST).exists():
            status = _status(folder)
        else:
            partial = partial_size(root, entry.name)
            status = "not installed" if partial is None else \
                f"partial download ({human_bytes(partial)}); run install again to resume"
            if not entry.verified:
                status += "; needs --allow-unverified (no published checksums)"
        if entry.unpinned:
            status += "; URLs not pinned to a commit"
        if in_use == folder.resolve():
            status += " [in use]"
        print(_list_row("*" if entry.recommended else " ", entry.name, ",".join(entry.languages), entry.hardware,
                        _cost_cells(entry), _recall_cell(entry)))
        print(f"      {status}")
        if args.verbose:
            print(f"      {' '.join(entry.description.split())}")
            if entry.recommended:
                print(f"      recommended for: {entry.recommended}")
            if entry.cost is not None and entry.cost.measured:
                print(f"      cost: {' '.join(entry.cost.measured.split())}")
            for figure in entry.recall:
                print(f"      recall {figure.language} {figure.value}: {figure.benchmark}, "
                      f"{' '.join(figure.metric.split())}; {figure.source}")
            if entry.unpinned:
                print(f"      unpinned: {' '.join(entry.unpinned.split())}")
            for remote in entry.files:
                print(f"      {remote.name}: {remote.url}")
    known = {e.name for e in registry.models}
    local = [f for f in _installed_folders(root) if f.name not in known]
    for folder in local:
        status = _status(folder) + (" [in use]" if in_use == folder.resolve() else "")
        try:
            spec = load_model_spec(folder, check_files=False)
            langs = ",".join(spec.languages) or "-"
            hardware = "ax650n" if (spec.image.axmodel and not spec.image.onnx) else "cpu"
        except ModelError:
            langs, hardware = "-", "-"
        print(_list_row(" ", folder.name, langs, hardware, ("-", "-", "-"), "-"))
        print(f"      {status} (local folder)")
    for entry in registry.models:
        if entry.recommended:
            print(f"* recommended for: {entry.recommended}")
    print("PHOTO ms: image encoder per photo, fp32/int8 (`nasclip models quantize`); QUERY ms: text encoder per query;")
    print("RAM MB: peak with both encoders loaded. cpu: a 2-core x86 machine (bench/bench_models.py); ax650n: AXERA's")
    print("NPU figures. RECALL: published, per query language; different test sets do not compare (docs/models.md).")
    if in_use is not None and not str(in_use).startswith(str(root.resolve()) + os.sep):
        print(f"The config uses {in_use}, which is outside the models folder.")
    print("Install one with `nasclip models install NAME`; `nasclip models list -v` shows sources, files and URLs.")
    return 0


def _print_model_line(target: Path, args: argparse.Namespace) -> None:
    print(f"Installed {target.name} in {target}.")
    print("Put this line in the config (then `nasclip config check` and restart nasclipd):")
    print(f"model: {target}")
    configured = _configured_model(args)
    if configured is not None and configured != target.resolve():
        print(f"(the config now says model: {configured}; a new model means background re-encoding, "
              "while the old vectors keep answering)")


def _warn_hardware(hardware: str) -> None:
    from ..indexing.backends import axengine_available

    if hardware == "ax650n" and not axengine_available():
        print("note: this model runs only on the AX650N NPU; the axengine runtime is not installed here, "
              "so it will not load on this machine", file=sys.stderr)


def cmd_install(args: argparse.Namespace) -> int:
    root = models_dir(args)
    registry = load_registry()
    if "/" in args.name or args.name.startswith(".") or not args.name.strip():
        raise ModelError(f"{args.name!r} is not a model name (no '/', no leading '.')")
    entry = registry.entry(args.name)
    target = root / args.name
    try:
        if args.source:
            path = install_from_source(Path(args.source), target, entry, replace=args.force)
        elif entry is None:
            raise ModelError(f"no model named {args.name!r} in the registry (`nasclip models list` shows them); "
                             "to install a model folder or archive you have, add --from PATH")
        else:
            _warn_hardware(entry.hardware)
            path = install_from_registry(entry, target, allow_unverified=args.allow_unverified,
                                         replace=args.force)
    except KeyboardInterrupt:
        print(f"\ninterrupted; what was downloaded is kept in {root}/.{args.name}.partial — "
              "run the same command again to resume", file=sys.stderr)
        return 130
    _print_model_line(path, args)
    return 0


def _registry_sums(registry: Registry, name: str) -> dict[str, str]:
    entry = registry.entry(name)
    return {f.name: f.sha256 for f in entry.files if f.sha256} if entry else {}


def verify_folder(folder: Path, registry: Registry) -> tuple[list[str], list[str]]:
    """(problems, notes) of an installed model folder: manifest, files, checksums, ONNX inputs."""
    try:
        spec = load_model_spec(folder)
    except ModelError as exc:
        return str(exc).splitlines(), []
    problems, notes = [], []
    try:
        recorded = read_sums(folder)
    except ModelError as exc:
        recorded, problems = {}, [str(exc)]
    published = _registry_sums(registry, folder.name)
    if not recorded and not published:
        notes.append(f"no {SUMS} (not installed by nasclip), so only the structure was checked")
    for name in model_files(spec):
        expected = published.get(name) or recorded.get(name)
        if expected is None:
            if recorded:
                problems.append(f"{folder / name}: not listed in {SUMS}")
            continue
        seen = sha256_file(spec.path(name))
        if seen != expected:
            problems.append(f"{folder / name}: SHA-256 mismatch: expected {expected}, got {seen} "
                            f"(the file changed since install; reinstall with `nasclip models install "
                            f"{folder.name} --force`)")
    return problems + check_model(folder, spec), notes


def cmd_verify(args: argparse.Namespace) -> int:
    root = models_dir(args)
    registry = load_registry()
    if args.name:
        folder = root / args.name
        if not (folder / MANIFEST).exists():
            raise ModelError(f"{args.name} is not installed in {root} (`nasclip models list`)")
        folders = [folder]
    else:
        folders = _installed_folders(root)
        if not folders:
            print(f"no models installed in {root}", file=sys.stderr)
            return 0
    failed = 0
    for folder in folders:
        print(f"{folder.name}: checking {folder} ...", file=sys.stderr, flush=True)
        problems, notes = verify_folder(folder, registry)
        for line in problems + notes:
            print(f"{folder.name}: {line}")
        if problems:
            failed += 1
            print(f"{folder.name}: FAILED")
        else:
            print(f"{folder.name}: ok")
    return 1 if failed else 0


def cmd_remove(args: argparse.Namespace) -> int:
    root = models_dir(args)
    target = root / args.name
    partial = root / f".{args.name}.partial"
    if not target.exists() and not partial.exists():
        raise ModelError(f"{args.name} is not installed in {root} (`nasclip models list`)")
    if target.exists() and _configured_model(args) == target.resolve() and not args.force:
        raise ModelError(f"the config uses {target} (model:); point it at another model first, "
                         "or pass --force to remove it anyway")
    with Staging(target):
        if target.exists():
            # Rename first: a half-deleted folder must never look like a model.
            doomed = root / f".{args.name}.removing"
            if doomed.exists():
                shutil.rmtree(doomed)
            os.rename(target, doomed)
            fsync_path(root)
            shutil.rmtree(doomed)
        shutil.rmtree(partial, ignore_errors=True)
    print(f"removed {args.name} from {root}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if args.open_clip:
        from ..model.export_open_clip import export_open_clip

        if not args.weights:
            raise ModelError("--open-clip needs --weights FILE (the state dict open_clip saves)")
        if args.context_length is not None:
            raise ModelError("--context-length is for checkpoints; open_clip models carry their own")
        # With --open-clip the one path is the folder to write.
        target = Path(args.path).absolute() if not args.out else Path(args.out).absolute()
        path = export_open_clip(args.open_clip, Path(args.weights), target, pretrained=args.pretrained,
                                tokenizer=Path(args.tokenizer) if args.tokenizer else None, replace=args.force)
    else:
        from ..model.export import export_checkpoint

        if args.weights or args.pretrained or args.tokenizer:
            raise ModelError("--weights, --pretrained and --tokenizer go with --open-clip ARCH")
        checkpoint = Path(args.path)
        name = args.name or checkpoint.resolve().name
        target = Path(args.out).absolute() if args.out else models_dir(args) / name
        path = export_checkpoint(checkpoint, target, context_length=args.context_length, replace=args.force)
    _print_model_line(path, args)
    return 0


def model_folder(args: argparse.Namespace) -> Path:
    """MODEL_DIR as given: a folder holding model.yaml, or an installed model's name."""
    source = Path(args.model_dir).expanduser()
    if not (source / MANIFEST).exists() and (models_dir(args) / args.model_dir / MANIFEST).exists():
        source = models_dir(args) / args.model_dir
    return source


def cmd_quantize(args: argparse.Namespace) -> int:
    from ..model.quantize import quantize_model

    spec = quantize_model(model_folder(args), args.out, args.id, text=not args.image_only, text_only=args.text_only)
    if args.text_only:
        print("Put this line in the config (then restart nasclipd: the photos' vectors stay as they are, "
              "only searches use the int8 text encoder):")
    else:
        print("Put this line in the config (then `nasclip config check` and restart nasclipd; photos are "
              "re-encoded in the background while the old vectors keep answering):")
    print(f"model: {spec.folder.absolute()}")
    return 0


def add_models_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `nasclip models ...` to the admin tool's subcommands."""
    models = subparsers.add_parser("models", help="list, install, verify, remove and export CLIP models")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--models-dir", help="where installed models live (default: <state_dir>/models "
                        "of the config)")
    commands = models.add_subparsers(dest="models_command", required=True, parser_class=type(models))
    show = commands.add_parser("list", parents=[common], help="known and installed models")
    show.add_argument("-v", "--verbose", action="store_true", help="also descriptions, files and URLs")
    show.set_defaults(func=cmd_list)
    install = commands.add_parser("install", parents=[common],
                                  help="download (or copy with --from) a model and activate it")
    install.add_argument("name", help="registry name (see `nasclip models list`), or any name with --from")
    install.add_argument("--from", dest="source", metavar="DIR_OR_TARBALL",
                         help="install from a folder or .tar.gz instead of downloading (no network)")
    install.add_argument("--allow-unverified", action="store_true",
                         help="install files that have no published checksum (the checksums seen are recorded)")
    install.add_argument("--force", action="store_true", help="replace an installed model of that name")
    install.set_defaults(func=cmd_install)
    verify = commands.add_parser("verify", parents=[common],
                                 help="re-check installed models: checksums, files, ONNX inputs")
    verify.add_argument("name", nargs="?", help="only this model")
    verify.set_defaults(func=cmd_verify)
    remove = commands.add_parser("remove", parents=[common], help="delete an installed model")
    remove.add_argument("name")
    remove.add_argument("--force", action="store_true", help="even if the config uses it")
    remove.set_defaults(func=cmd_remove)
    export = commands.add_parser(
        "export", parents=[common],
        help="turn a local Hugging Face CLIP checkpoint, or open_clip weights, into a model folder "
             "(needs the `export` extra: torch, transformers, onnx, open-clip-torch)",
        description="nasclip models export CHECKPOINT [--out DIR]  |  "
                    "nasclip models export --open-clip ARCH --weights FILE OUT_DIR. "
                    "The folder is activated only if ONNX Runtime reproduces PyTorch's vectors.")
    export.add_argument("path", help="the Hugging Face checkpoint folder (config.json and weights, as "
                                     "save_pretrained writes it); with --open-clip, the model folder to write")
    export.add_argument("--open-clip", metavar="ARCH",
                        help="export open_clip architecture ARCH "
                             "(e.g. ViT-B-32, ViT-B-16-SigLIP2, xlm-roberta-base-ViT-B-32)")
    export.add_argument("--weights", metavar="FILE", help="with --open-clip: the state dict (.pt or .safetensors)")
    export.add_argument("--pretrained", metavar="TAG",
                        help="with --open-clip: open_clip's name of the weights (e.g. openai, laion2b_s34b_b79k), "
                             "which fixes their preprocessing and activation (OpenAI's need QuickGELU); "
                             "without it: the settings all the architecture's weights share, or where they "
                             "differ what open_clip.create_model(ARCH) builds (with a warning)")
    export.add_argument("--tokenizer", metavar="DIR",
                        help="with --open-clip, for architectures whose tokenizer is on the Hugging Face hub "
                             "(SigLIP, XLM-RoBERTa): a folder with its tokenizer.json and tokenizer_config.json, "
                             "and for a transformers text tower (XLM-RoBERTa) also its config.json")
    export.add_argument("--name", help="model folder name (default: the checkpoint folder's name)")
    export.add_argument("--out", help="write the model folder here instead of the models folder")
    export.add_argument("--context-length", type=int, default=None,
                        help="token ids per text (default: 77 for CLIP, 52 for Chinese-CLIP)")
    export.add_argument("--force", action="store_true", help="replace an existing folder")
    export.set_defaults(func=cmd_export)
    from .inspect_model import add_inspect_commands  # it uses model_folder from here

    add_inspect_commands(commands, common)
    quantize = commands.add_parser("quantize", parents=[common],
                                   help="write an int8 copy of a model's encoders as a new model "
                                        "(about 2x faster on a CPU, its own model id); the text encoder only "
                                        "where its vectors stay within cosine 0.99 of the original's")
    quantize.add_argument("model_dir", help="model folder holding model.yaml, or an installed model's name")
    quantize.add_argument("--out", help="folder for the copy (default: MODEL_DIR-int8 beside it)")
    quantize.add_argument("--id", help="model id of the copy (default: the original's id + '-int8')")
    only = quantize.add_mutually_exclusive_group()
    only.add_argument("--image-only", action="store_true", help="keep the original text encoder")
    only.add_argument("--text-only", action="store_true",
                          help="quantise only the text encoder: same model id and photo vectors, cheaper searches "
                               "(default folder: MODEL_DIR-int8text)")
    quantize.set_defaults(func=cmd_quantize)
