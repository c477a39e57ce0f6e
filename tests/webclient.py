"""A small HTTP client for the web front end's system tests: raw requests, one cookie, any source address.

Built on http.client, which sends a path exactly as given (no normalising of
'..' or '%2e'), so traversal-style URLs reach the server as an attacker would
send them.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    cookies: list[str] = field(default_factory=list)

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"HTTP {self.status} {self.headers.get('content-type')} {self.body[:300]!r}"


class WebClient:
    """One browser-like client: keeps the session cookie; source may be another loopback address."""

    def __init__(self, port: int, source: str = "127.0.0.1", host: str = "127.0.0.1",
                 tls: ssl.SSLContext | None = None) -> None:
        self.port = port
        self.source = source
        self.host = host
        self.tls = tls
        self.cookie: str | None = None

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Answer:
        if self.tls is not None:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self.host, self.port, timeout=60, source_address=(self.source, 0), context=self.tls)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=60, source_address=(self.source, 0))
        try:
            sent = dict(headers or {})
            if self.cookie and "Cookie" not in sent:
                sent["Cookie"] = self.cookie
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            data = response.read()
            cookies = response.headers.get_all("set-cookie") or []
            answer = Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data, cookies)
        finally:
            conn.close()
        for cookie in cookies:
            pair = cookie.split(";", 1)[0]
            if pair.startswith("nasclip_session="):
                self.cookie = pair if pair != "nasclip_session=" and "Max-Age=0" not in cookie else None
        return answer

    def get(self, path: str, **headers: str) -> Answer:
        return self.request("GET", path, headers={k.replace("_", "-"): v for k, v in headers.items()})

    def login(self, user: str, password: str) -> Answer:
        return self.request("POST", "/api/login", json.dumps({"user": user, "password": password}).encode(),
                            {"Content-Type": "application/json"})

    def search(self, **params: Any) -> Answer:
        from urllib.parse import urlencode

        return self.get("/api/search?" + urlencode(params))
