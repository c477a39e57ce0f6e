"""nasclip-query finds the socket from a config file by reading that one setting, as the daemon resolves it."""

from __future__ import annotations

from pathlib import Path

import pytest

from nasclip.config import parse_config
from nasclip.errors import NasclipError
from nasclip.paths import DEFAULT_SOCKET
from nasclip.query.client import configured_socket, resolve_socket


@pytest.mark.parametrize("setting", ["socket: run/q.sock\n", "socket: ~/q.sock\n", "socket: /srv/x/../q.sock\n",
                                     "socket: '/run/nasclip/other.sock'\n", ""])
def test_the_socket_is_the_one_the_daemon_uses(tmp_path: Path, setting: str) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.yaml").write_text("format: 1\n")
    config = tmp_path / "etc" / "nasclip.yaml"
    config.parent.mkdir()
    text = f"shares:\n  - name: p\n    path: {tmp_path / 'photos'}\nmodel: {tmp_path / 'model'}\n{setting}"
    config.write_text(text)
    assert configured_socket(config) == parse_config(text, config).socket
    assert resolve_socket(None, str(config)) == parse_config(text, config).socket
    if not setting:
        assert configured_socket(config) == DEFAULT_SOCKET


def test_an_unreadable_or_broken_config_is_named(tmp_path: Path) -> None:
    with pytest.raises(NasclipError, match="nope.yaml: cannot read the config file"):
        resolve_socket(None, str(tmp_path / "nope.yaml"))
    (tmp_path / "bad.yaml").write_text("socket: [unclosed\n")
    with pytest.raises(NasclipError, match="bad.yaml: not valid YAML"):
        configured_socket(tmp_path / "bad.yaml")
    (tmp_path / "odd.yaml").write_text("socket: 12\n")
    with pytest.raises(NasclipError, match="odd.yaml: socket: expected a path, got 12"):
        configured_socket(tmp_path / "odd.yaml")
    assert resolve_socket("/x.sock", str(tmp_path / "nope.yaml")) == Path("/x.sock"), "--socket wins"
