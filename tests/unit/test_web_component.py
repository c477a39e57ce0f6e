"""The web front end as a daemon part: start, one loop() at a time, stop, close; start-up mistakes named."""

from __future__ import annotations

import http.client
import socket
from pathlib import Path

import pytest

from nasclip.config import Config, parse_config
from nasclip.errors import NasclipError
from nasclip.web.app import Backend
from nasclip.web.component import WebServer
from nasclip.web.passwords import Account


def config_for(tmp_path: Path, listen: str) -> Config:
    text = f"shares:\n  - {{name: p, path: {tmp_path}}}\nmodel: m\nstate_dir: {tmp_path}\nweb: {{listen: '{listen}'}}\n"
    return parse_config(text, tmp_path / "nasclip.yaml")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server(config: Config) -> WebServer:
    def no_search(*_: object) -> dict:
        raise AssertionError("not asked in this test")
    return WebServer(config, Backend(lambda: config, no_search, no_search, no_search))  # type: ignore[arg-type]


def test_it_serves_until_closed_and_close_is_idempotent(tmp_path: Path) -> None:
    web = server(config_for(tmp_path, f"127.0.0.1:{free_port()}"))
    web.start()
    try:
        assert web.is_alive() and web.url.startswith("http://127.0.0.1:")
        port = int(web.url.rsplit(":", 1)[1].strip("/"))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/api/me")
        answer = conn.getresponse()
        assert answer.status == 401 and answer.getheader("x-frame-options") == "DENY"
        conn.close()
        assert web.status()["sessions"] == 0
    finally:
        web.close()
    assert not web.is_alive()
    web.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_a_port_in_use_is_a_start_up_error_naming_the_setting(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        web = server(config_for(tmp_path, f"127.0.0.1:{port}"))
        with pytest.raises(NasclipError, match=f"web.listen 127.0.0.1:{port}: cannot listen there"):
            web.start()
        web.close()


def test_one_loop_forgets_expired_sessions(tmp_path: Path) -> None:
    web = server(config_for(tmp_path, "127.0.0.1:8840"))  # never started
    now = [0.0]
    web.sessions.clock = web.limiter.clock = lambda: now[0]
    token = web.sessions.create(Account("alice", 1001, 1001), "hash")
    web.limiter.failed("alice", "10.0.0.1")
    assert web.loop() > 0 and len(web.sessions) == 1
    now[0] += web.config.web.idle_hours * 3600 + 1
    web.loop()
    assert len(web.sessions) == 0 and web.sessions.get(token) is None
    assert web.limiter.retry_after("alice", "10.0.0.1") == 0
