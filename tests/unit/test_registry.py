"""The shipped model registry: pinned revisions, verified checksums, manifests as the references need them,
costs and published recall; the registry's own checks; `nasclip models list` showing them side by side.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import yaml

from nasclip.cli import models as model_admin
from nasclip.cli.admin import main as admin_main
from nasclip.errors import ModelError
from nasclip.model.registry import COMMIT_RE, load_registry, parse_registry

IMMICH_OPENAI = "https://huggingface.co/immich-app/ViT-B-32__openai/resolve/a857c8de2c07bbcfa6646adfcf31b798845afa1e"


def test_the_shipped_registry_parses_and_every_hugging_face_url_names_a_commit() -> None:
    registry = load_registry()
    names = [e.name for e in registry.models]
    assert names == ["openai-clip-vit-b32", "vit-b32-laion2b", "siglip2-vit-b16", "xlm-roberta-base-vit-b32",
                     "chinese-clip-vit-b16", "chinese-clip-vit-l14-336-ax650n"]
    for entry in registry.models:
        for remote in entry.files:
            assert remote.revision is not None, f"{entry.name}: {remote.url} is not a Hugging Face download"
            if not entry.unpinned:
                assert COMMIT_RE.match(remote.revision), f"{entry.name}: {remote.url}"
    # The two whose commits could not be looked up say so, and nothing else is unpinned.
    assert [e.name for e in registry.models if e.unpinned] == ["siglip2-vit-b16", "xlm-roberta-base-vit-b32"]


def test_openai_clip_is_verified_at_immichs_pinned_revision() -> None:
    entry = load_registry().entry("openai-clip-vit-b32")
    assert entry is not None and entry.verified
    assert {f.name: (f.url, f.size, f.sha256) for f in entry.files} == {
        "image.onnx": (f"{IMMICH_OPENAI}/visual/model.onnx", 351_613_724,
                       "33a3df41ceef21acdf371af00f6dd0456ec1f9eba24d03a7720f9c3734e40859"),
        "text.onnx": (f"{IMMICH_OPENAI}/textual/model.onnx", 254_193_396,
                      "b80cf0af751533a6712d92247f0ddc0c95208748bc59a1a27f33e67be6864e3b"),
        "tokenizer.json": (f"{IMMICH_OPENAI}/textual/tokenizer.json", 3_642_073,
                           "6d9109cc838977f3ca94a379eec36aecc7c807e1785cd729660ca2fc0171fb35")}
    text = entry.manifest.text
    # Immich traces encode_text with int32 ids into an input named "text"; open_clip cleans with ftfy first.
    assert (text.input_name, text.dtype, text.pad_id, text.context_length, text.normalize) == \
        ("text", "int32", 0, 77, ("clean",))


def test_laion_vit_b32_shares_openais_architecture_tokenizer_and_cost() -> None:
    registry = load_registry()
    laion, openai = registry.entry("vit-b32-laion2b"), registry.entry("openai-clip-vit-b32")
    assert laion is not None and openai is not None and laion.verified
    assert laion.file("tokenizer.json") == openai.file("tokenizer.json")
    assert laion.file("image.onnx").size == openai.file("image.onnx").size
    assert laion.file("image.onnx").sha256 != openai.file("image.onnx").sha256  # other weights
    assert laion.cost == openai.cost
    assert laion.manifest.id != openai.manifest.id
    assert laion.recall[0].value > openai.recall[0].value


def test_multilingual_and_siglip_manifests_say_what_open_clip_does() -> None:
    registry = load_registry()
    xlmr, siglip = registry.entry("xlm-roberta-base-vit-b32"), registry.entry("siglip2-vit-b16")
    assert xlmr is not None and siglip is not None
    assert xlmr.languages == ("zh", "en") and xlmr.recommended
    # open_clip pads XLM-RoBERTa with <pad> = 1 and mean-pools over ids != 1; the export computes that mask itself.
    assert (xlmr.manifest.text.pad_id, xlmr.manifest.text.mask_name, xlmr.manifest.text.normalize) == \
        (1, None, ("clean", "t2s"))
    text, image = siglip.manifest.text, siglip.manifest.image
    assert (text.context_length, text.normalize, text.pad_id) == (64, ("clean", "strip_punct", "lower"), 0)
    assert (image.size, image.resize, image.mean, image.std, siglip.manifest.embedding_dim) == \
        (224, "squash", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 768)


def test_open_clips_own_configs_agree_with_the_manifests() -> None:
    from nasclip.model.reference import open_clip

    oc = open_clip()
    registry = load_registry()
    for name, arch, tag in (("siglip2-vit-b16", "ViT-B-16-SigLIP2", "webli"),
                            ("xlm-roberta-base-vit-b32", "xlm-roberta-base-ViT-B-32", "laion5b_s13b_b90k"),
                            ("vit-b32-laion2b", "ViT-B-32", "laion2b_s34b_b79k")):
        entry = registry.entry(name)
        assert entry is not None
        config, pretrained = oc.get_model_config(arch), oc.get_pretrained_cfg(arch, tag)
        text_cfg = config["text_cfg"]
        assert entry.manifest.embedding_dim == config["embed_dim"]
        assert entry.manifest.text.context_length == text_cfg.get("context_length", 77)
        assert entry.manifest.image.size == config["vision_cfg"]["image_size"]
        assert entry.manifest.image.mean == pytest.approx(pretrained["mean"])
        assert entry.manifest.image.std == pytest.approx(pretrained["std"])
        resize = {"shortest": "crop", "squash": "squash"}[pretrained.get("resize_mode", "shortest")]
        assert entry.manifest.image.resize == resize
        clean = (text_cfg.get("tokenizer_kwargs") or {}).get("clean", "whitespace")
        steps = {"whitespace": ("clean",), "canonicalize": ("clean", "strip_punct", "lower")}[clean]
        assert entry.manifest.text.normalize[:len(steps)] == steps


def test_chinese_clips_vocabulary_is_the_file_cn_clip_ships() -> None:
    import importlib.util

    spec = importlib.util.find_spec("cn_clip")
    if spec is None or spec.origin is None:
        pytest.skip("cn_clip is not installed (the test extra installs it)")
    shipped = Path(spec.origin).parent / "clip" / "vocab.txt"
    data = shipped.read_bytes()
    entry = load_registry().entry("chinese-clip-vit-b16")
    assert entry is not None
    vocab = entry.file("vocab.txt")
    assert (vocab.size, vocab.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert data.count(b"\n") == 21_128


def test_every_entry_says_what_it_costs_and_how_well_it_searches() -> None:
    registry = load_registry()
    for entry in registry.models:
        assert entry.cost is not None and entry.cost.measured, entry.name
        assert entry.recall, entry.name
        for figure in entry.recall:
            assert figure.source.startswith("https://") and figure.benchmark and figure.metric
        if "zh" in entry.languages:
            assert "t2s" in entry.manifest.text.normalize, f"{entry.name}: traditional queries must find the same"
    assert registry.recommendation("bilingual household (Chinese and English)") is registry.entry(
        "xlm-roberta-base-vit-b32")
    immich = {e.name: {f.language: f.value for f in e.recall} for e in registry.models
              if e.recall[0].benchmark == "Crossmodal-3600"}
    assert immich == {"openai-clip-vit-b32": {"en": 59.37}, "vit-b32-laion2b": {"en": 68.78},
                      "siglip2-vit-b16": {"en": 75.19}, "xlm-roberta-base-vit-b32": {"zh": 72.52, "en": 68.33}}


# --------------------------------------------------------------------------- the registry's own checks

MANIFEST = {"format": 1, "id": "m", "embedding_dim": 4,
            "image": {"onnx": "image.onnx"}, "text": {"onnx": "text.onnx", "tokenizer": "vocab.txt"}}
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def entry(name: str = "m", revision: str = COMMIT, **extra: object) -> dict:
    base = f"https://huggingface.co/acme/{name}/resolve/{revision}"
    return {"name": name, "description": "d", "languages": ["en", "zh"], "hardware": "cpu", "source": base,
            "files": [{"name": n, "url": f"{base}/{n}"} for n in ("image.onnx", "text.onnx", "vocab.txt")],
            "manifest": MANIFEST, **extra}


def parse(*entries: dict):
    return parse_registry(yaml.safe_dump({"format": 1, "models": list(entries)}), Path("reg.yaml"))


def test_a_branch_url_is_refused_unless_the_entry_says_why_it_cannot_be_pinned() -> None:
    with pytest.raises(ModelError) as info:
        parse(entry(revision="main"))
    assert re.search(r"reg\.yaml:\d+: models\[0\]\.files\[0\]\.url: names the branch 'main': pin the 40-hex commit",
                     str(info.value))
    assert parse(entry(revision="main", unpinned="no commit known yet")).models[0].unpinned
    with pytest.raises(ModelError, match=r"models\[0\]\.unpinned: every URL is pinned to a commit"):
        parse(entry(unpinned="stale reason"))


def test_recall_costs_and_recommendations_are_checked() -> None:
    good = {"language": "zh", "value": 72.5, "benchmark": "XM3600", "metric": "mean R@1/5/10",
            "source": "https://example.org/table"}
    registry = parse(entry(recall=[good], cost={"image_ms": 100, "text_ms": 50, "ram_mb": 800},
                           recommended="bilingual household"))
    assert registry.models[0].recall[0].value == 72.5 and registry.models[0].cost.ram_mb == 800
    with pytest.raises(ModelError) as info:
        parse(entry(recall=[{**good, "language": "fr"}, {**good, "value": 720, "source": "table.html"}],
                    cost={"image_ms": 0, "text_ms": 50, "ram_mb": 800}, recommended="everyone"),
              entry("n", recommended="everyone"))
    message = str(info.value)
    assert "models[0].recall[0].language: 'fr' is not among the entry's languages ['en', 'zh']" in message
    assert "models[0].recall[1].value: is a percentage: 0 to 100" in message
    assert "models[0].recall[1].source: must be the URL of the published table" in message
    assert "models[0].cost: milliseconds and MB must be greater than 0" in message
    assert "models[1].recommended: m is already the recommendation for 'everyone'" in message
    with pytest.raises(ModelError, match=r"models\[0\]\.cost\.ram_mb: expected a whole number"):
        parse(entry(cost={"image_ms": 1, "text_ms": 1, "ram_mb": "lots"}))


# --------------------------------------------------------------------------- models list

def test_models_list_shows_languages_speed_memory_and_recall_and_marks_the_recommendation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(model_admin, "load_registry", load_registry)
    assert admin_main(["models", "list", "--models-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    head = next(line for line in out.splitlines() if line.lstrip().startswith("NAME"))
    assert re.match(r"^ +NAME +LANG +HARDWARE +PHOTO ms +QUERY ms +RAM MB +RECALL %$", head)
    registry = load_registry()
    rows = {line.split()[1] if line.startswith("*") else line.split()[0]: line
            for line in out.splitlines() if line[:1] in (" ", "*") and len(line.split()) > 5}
    for item in registry.models:
        row = rows[item.name]
        assert row.startswith("* " if item.recommended else "  "), row
        cost = item.cost
        assert cost is not None
        cells = row[2:].split()
        assert cells[1] == ",".join(item.languages) and cells[2] == item.hardware
        photo = f"{cost.image_ms:.0f}" + (f"/{cost.image_ms_int8:.0f}" if cost.image_ms_int8 else "")
        assert cells[3:6] == [photo, f"{cost.text_ms:.0f}" if cost.text_ms >= 10 else f"{cost.text_ms:.1f}",
                              str(cost.ram_mb)], row
        for figure in item.recall:
            assert f"{figure.language} {figure.value:.1f}" in row and f"({figure.benchmark})" in row
    assert re.search(r"^\* xlm-roberta-base-vit-b32 +zh,en +cpu .* zh 72\.5, en 68\.3 \(Crossmodal-3600\)$",
                     out, re.M)
    assert "* recommended for: bilingual household (Chinese and English)" in out
    assert re.search(r"^  siglip2-vit-b16 .*\n +not installed; needs --allow-unverified .*; URLs not pinned", out, re.M)
    assert "different test sets do not compare" in out


def test_models_list_verbose_names_the_sources_of_the_figures(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert admin_main(["models", "list", "-v", "--models-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "recall zh 72.52: Crossmodal-3600, zero-shot text-to-image retrieval" in out
    assert "https://github.com/immich-app/immich/blob/main/docs/docs/features/searching.md" in out
    assert "cost: xlm-roberta-base-ViT-B-32 with random weights, bench/bench_models.py" in out
    assert "unpinned: no commit of immich-app/XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k" in out


# --------------------------------------------------------------------------- docs/models.md against the code

DOCS = Path(__file__).resolve().parents[2] / "docs" / "models.md"


def _table_keys(text: str, heading: str) -> set[str]:
    """The `key` cells of the first table under heading."""
    section = text.split(heading, 1)[1]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break
        if line.startswith("| `"):
            rows.append(line.split("`")[1])
    return set(rows)


def test_models_md_documents_every_registry_and_manifest_key() -> None:
    from nasclip.model.registry import Cost, Recall, RegistryEntry
    from nasclip.model.spec import ImageSpec, ModelSpec, TextSpec
    from nasclip.typedyaml import iter_settings

    text = DOCS.read_text(encoding="utf-8")
    registry_keys = _table_keys(text, "## The registry")
    assert {key for key, _ in iter_settings(RegistryEntry) if "." not in key and "[]" not in key} <= registry_keys
    for cls in (Cost, Recall):
        for key, _ in iter_settings(cls):
            assert f"`{key}`" in text.split("## The registry", 1)[1], f"{cls.__name__}.{key}"
    for cls, heading in ((ModelSpec, "### Top level"), (ImageSpec, "### `image`"), (TextSpec, "### `text`")):
        keys = {key for key, _ in iter_settings(cls) if "." not in key}
        assert keys <= _table_keys(text, heading), (heading, keys - _table_keys(text, heading))


def test_models_md_documents_the_export_and_inspection_options() -> None:
    import argparse

    from nasclip.cli.models import add_models_commands

    parser = argparse.ArgumentParser()
    add_models_commands(parser.add_subparsers())
    text = DOCS.read_text(encoding="utf-8")
    assert "nasclip models export --open-clip ARCH --weights FILE [--pretrained TAG] [--tokenizer DIR] OUT_DIR" in text
    assert "nasclip models tokenize MODEL_DIR [--json] TEXT..." in text
    assert "nasclip models embed MODEL_DIR [--json] [--text T]... [--image FILE]..." in text
    models = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["models"]
    commands = next(a for a in models._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name in ("export", "tokenize", "embed"):
        for action in commands[name]._actions:
            for option in action.option_strings:
                if option.startswith("--") and option not in ("--help", "--models-dir"):
                    assert re.search(rf"(?<![\w-]){re.escape(option)}\b", text), f"{name} {option}"
