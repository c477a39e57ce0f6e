"""The config file: defaults, located errors, relative paths, the documented example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from nasclip.config import Config, check_paths, load_config, parse_config
from nasclip.errors import ConfigError
from nasclip.typedyaml import iter_settings, to_plain

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "nasclip.yaml"

MINIMAL = """\
shares:
  - name: photos
    path: pics
model: models/demo
"""


def parse(text: str, where: Path = Path("/etc/nasclip/nasclip.yaml")) -> Config:
    return parse_config(text, where)


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return str(info.value)


def test_minimal_config_gets_defaults_and_paths_relative_to_the_file() -> None:
    config = parse(MINIMAL, Path("/srv/conf/nasclip.yaml"))
    assert config.shares[0].path == Path("/srv/conf/pics")
    assert config.model == Path("/srv/conf/models/demo")
    assert config.state_dir == Path("/var/lib/nasclip")
    assert config.socket == Path("/run/nasclip/query.sock")
    assert config.indexer.batch_size == 8
    assert config.index.type == "flat"
    assert config.query.socket_mode == 0o660
    assert config.shares[0].watch == "inotify"
    assert ".jpg" in config.shares[0].extensions and "@eaDir" in config.shares[0].exclude


def test_unknown_key_names_line_and_suggests_the_right_one() -> None:
    message = error_of(MINIMAL + "indexer:\n  batchsize: 4\n")
    assert re.search(r"nasclip\.yaml:6: indexer\.batchsize: unknown key \(did you mean 'batch_size'\?\)", message)


def test_wrong_type_missing_key_and_bad_choice_are_all_reported_at_once() -> None:
    message = error_of("shares:\n  - name: 12\nmodel: m\nindex:\n  type: hnsw\nlog_level: loud\n")
    lines = message.splitlines()
    assert any("shares[0].name: expected a string, got int 12" in line for line in lines)
    assert any("shares[0].path: missing" in line for line in lines)
    assert any(":5: index.type: 'hnsw' is not allowed; use one of 'flat', 'fp16', 'sq8'" in line for line in lines)
    assert any("log_level" in line for line in lines)
    assert len(lines) == 4


def test_bad_yaml_names_the_line() -> None:
    message = error_of("shares:\n  - name: photos\n    path: [unclosed\nmodel: m\n")
    assert "not valid YAML" in message and re.search(r"nasclip\.yaml:\d+", message)


def test_duplicate_share_names_and_empty_shares_are_refused() -> None:
    assert "used by more than one share" in error_of(
        "shares:\n  - {name: a, path: x}\n  - {name: a, path: y}\nmodel: m\n")
    assert "no shares configured" in error_of("shares: []\nmodel: m\n")


def test_socket_mode_accepts_octal_forms() -> None:
    for text in ('"0640"', "0640", '"0o640"', '"640"'):
        assert parse(MINIMAL + f"query:\n  socket_mode: {text}\n").query.socket_mode == 0o640
    assert "octal" in error_of(MINIMAL + "query:\n  socket_mode: rw-rw----\n")


def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_config(tmp_path / "empty.yaml")


def test_missing_paths_are_reported_separately(tmp_path: Path) -> None:
    config = parse(MINIMAL, tmp_path / "nasclip.yaml")
    problems = check_paths(config)
    assert any("shares[0].path" in p and "not a directory" in p for p in problems)
    assert any(": model:" in p for p in problems)


def test_example_config_loads_and_documents_every_setting() -> None:
    config = load_config(EXAMPLE)
    assert config.shares[0].name == "photos"
    text = EXAMPLE.read_text()
    for key, field in iter_settings(Config):
        name = key.split(".")[-1].replace("[]", "")
        assert re.search(rf"^\s*#?\s*-?\s*{re.escape(name)}:", text, re.M), f"{key} is not in {EXAMPLE.name}"
        assert field.metadata.get("help"), f"{key} has no help text"


def test_effective_config_round_trips(tmp_path: Path) -> None:
    config = parse(MINIMAL, tmp_path / "nasclip.yaml")
    again = parse(yaml.safe_dump(to_plain(config)), tmp_path / "nasclip.yaml")
    assert again == config
