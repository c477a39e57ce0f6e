"""`nasclip config check` and `config show`: every mistake located, every setting explained."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import MISSING
from pathlib import Path

import pytest
import yaml

from nasclip.cli import admin
from nasclip.config import Config, load_config
from nasclip.typedyaml import iter_settings

ROOT = Path(__file__).resolve().parents[2]
# Settings without a default: a config is meaningless without them.
REQUIRED = {"shares", "shares[].name", "shares[].path", "model"}


@pytest.fixture
def good(tmp_path: Path) -> str:
    """A config whose paths exist (model folder with a manifest, a share)."""
    (tmp_path / "photos").mkdir()
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.yaml").write_text("format: 1\n")
    return "shares:\n  - name: photos\n    path: photos\nmodel: model\nstate_dir: state\n"


def check(tmp_path: Path, name: str, text: str, capsys: pytest.CaptureFixture) -> tuple[int, list[str]]:
    path = tmp_path / name
    path.write_text(text)
    code = admin.main(["config", "check", str(path)])
    captured = capsys.readouterr()
    return code, [line for line in (captured.err + captured.out).splitlines() if line.strip()]


# Each broken config (a change to the good one) and what its message must say.
BROKEN = {
    "unknown-key": (lambda g: g + "indexer:\n  batchsize: 4\n",
                    r":7: indexer\.batchsize: unknown key \(did you mean 'batch_size'\?\)"),
    "wrong-type": (lambda g: g + "indexer:\n  batch_size: eight\n",
                   r":7: indexer\.batch_size: expected a whole number, got str 'eight'"),
    "missing-share-path": (lambda g: g.replace("path: photos", "path: nowhere"),
                           r":3: shares\[0\]\.path: .*/nowhere is not a directory: it does not exist"),
    "share-path-is-a-file": (lambda g: g.replace("path: photos", "path: model/model.yaml"),
                             r":3: shares\[0\]\.path: .*model\.yaml is not a directory: it is a file"),
    "bad-yaml": (lambda g: g + "query:\n  max_k: [1000\n",
                 r":\d+: not valid YAML: "),
    "duplicate-share": (lambda g: g.replace("model: model", "  - name: photos\n    path: photos\nmodel: model"),
                        r":4: shares\[1\]\.name: 'photos' is used by more than one share"),
    "bad-enum": (lambda g: g + "index:\n  type: hnsw\n",
                 r":7: index\.type: 'hnsw' is not allowed; use one of 'flat', 'fp16', 'sq8'"),
    "negative-number": (lambda g: g + "indexer:\n  settle_seconds: -2\n",
                        r":7: indexer\.settle_seconds: must not be negative, got -2"),
    "missing-model-folder": (lambda g: g.replace("model: model", "model: models/gone"),
                             r":4: model: .*/models/gone does not exist; install a model there"),
    "model-without-manifest": (lambda g: g.replace("model: model", "model: photos"),
                               r":4: model: .*/photos has no model\.yaml"),
    "missing-required-key": (lambda g: g.replace("model: model\n", ""),
                             r":1: model: missing: model folder holding model\.yaml"),
    "bad-octal": (lambda g: g + "query:\n  socket_mode: rw-rw----\n",
                  r":7: query\.socket_mode: expected permission bits in octal such as 0660"),
    "key-twice": (lambda g: g + "log_level: debug\nlog_level: info\n",
                  r":7: log_level: given twice"),
    "nice-out-of-range": (lambda g: g + "indexer:\n  nice: 25\n",
                          r":7: indexer\.nice: must be from 0 \(the daemon's own priority\) to 19 .*got 25"),
    "zero-timeout": (lambda g: g + "service:\n  stop_timeout: 0\n",
                     r":7: service\.stop_timeout: must be greater than 0, got 0"),
}


def test_the_good_config_passes(tmp_path: Path, good: str, capsys: pytest.CaptureFixture) -> None:
    code, lines = check(tmp_path, "good.yaml", good, capsys)
    assert code == 0, lines
    assert lines == [f"{tmp_path / 'good.yaml'}: ok (1 share, model {tmp_path / 'model'}); "
                     "apply it with `systemctl reload nasclip`"]


def test_broken_configs_give_distinct_located_messages(tmp_path: Path, good: str,
                                                       capsys: pytest.CaptureFixture) -> None:
    messages = {}
    for name, (breaks, expected) in BROKEN.items():
        path = tmp_path / f"{name}.yaml"
        code, lines = check(tmp_path, path.name, breaks(good), capsys)
        assert code == 1, f"{name}: {lines}"
        assert len(lines) == 1, f"{name}: exactly one problem expected, got {lines}"
        line = lines[0]
        assert line.startswith(f"{path}:"), f"{name}: not located in the file: {line}"
        assert re.search(expected, line), f"{name}: {line!r} does not match {expected!r}"
        # file:line: key: message (bad YAML has no key, but it has a line)
        assert re.match(rf"{re.escape(str(path))}:\d+: ([\w.\[\]]+|not valid YAML): .+", line), line
        messages[name] = line.split(":", 2)[2]  # without the file name and line
    assert len(set(messages.values())) == len(BROKEN) >= 10


def test_every_problem_is_reported_at_once(tmp_path: Path, good: str, capsys: pytest.CaptureFixture) -> None:
    def located(text: str) -> list[tuple[str, str]]:
        code, lines = check(tmp_path, "many.yaml", text, capsys)
        assert code == 1
        return [re.search(r":(\d+): ([\w.\[\]]+):", line).groups() for line in lines]

    # Type problems first (rules between settings need the types right) ...
    assert located(good.replace("path: photos", "path: [a]") + "indexer:\n  batch_size: x\nquery:\n  max_kk: 5\n") == [
        ("3", "shares[0].path"), ("7", "indexer.batch_size"), ("9", "query.max_kk")]
    # ... then every rule between settings.
    text = good.replace("model:", "  - {name: photos, path: photos}\nmodel:")
    assert located(text + "indexer:\n  batch_size: 0\n  threads: -1\n") == [
        ("4", "shares[1].name"), ("8", "indexer.batch_size"), ("9", "indexer.threads")]


def test_the_command_line_entry_point(tmp_path: Path, good: str) -> None:
    """The installed `nasclip` script, as a person runs it."""
    path = tmp_path / "nasclip.yaml"
    path.write_text(good + "indexer:\n  batchsize: 4\n")
    nasclip = Path(sys.executable).parent / "nasclip"
    done = subprocess.run([str(nasclip), "config", "check", str(path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert f"{path}:7: indexer.batchsize: unknown key" in done.stderr


def test_every_setting_has_a_default_and_a_one_line_help() -> None:
    for key, field in iter_settings(Config):
        text = field.metadata.get("help", "")
        assert text and "\n" not in text and len(text) <= 120, f"{key}: help must be one line: {text!r}"
        has_default = field.default is not MISSING or field.default_factory is not MISSING
        assert has_default or key in REQUIRED, f"{key} has no default"


def test_config_show_prints_the_effective_config_with_help(tmp_path: Path, good: str,
                                                           capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "nasclip.yaml"
    path.write_text(good + "indexer:\n  batch_size: 4\n")
    assert admin.main(["config", "show", str(path)]) == 0
    out = capsys.readouterr().out
    config = load_config(path)
    # It is a valid config meaning exactly the same.
    shown = tmp_path / "shown.yaml"
    shown.write_text(out)
    assert load_config(shown) == config
    lines = out.splitlines()
    assert any(re.match(r"\s+batch_size: 4\s+# photos per encoder batch$", line) for line in lines)
    assert any(re.match(r"\s+decode_threads: 2\s+# .+ \(default\)$", line) for line in lines)
    assert any(re.match(rf"state_dir: {re.escape(str(tmp_path / 'state'))}\s+# ", line) for line in lines)
    for key, _ in iter_settings(Config):
        name = key.split(".")[-1].replace("[]", "")
        assert any(re.match(rf"\s*(- )?{name}:.*# \S", line) for line in lines), f"{key} not shown with help"
    assert yaml.safe_load(out)["service"]["stall_seconds"] == 300.0
