"""The web front end's rules as pure functions: origins, headers, ranges, the proxy, URL to protocol, doctor."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nasclip.config import parse_config
from nasclip.errors import ConfigError, ProtocolError
from nasclip.query.protocol import SEARCH_KEYS, Request, Term
from nasclip.web.checks import web_findings
from nasclip.web.passwords import FILE_NAME
from nasclip.web.query import NOT_FROM_URL, search_box, validated, web_search
from nasclip.web.security import (
    CSP,
    byte_range,
    client_address,
    proxy_user,
    same_origin,
    security_headers,
    too_large,
)


def test_only_the_pages_own_origin_may_change_state() -> None:
    host = {"host": "nas.local:8840"}
    assert same_origin({**host, "origin": "http://nas.local:8840"}, "http")
    assert same_origin({**host, "origin": "HTTP://NAS.local:8840"}, "http")
    assert same_origin({"host": "nas.local", "origin": "https://nas.local"}, "https")
    assert same_origin({"host": "nas.local:443", "origin": "https://nas.local"}, "https")
    assert same_origin({"host": "[::1]:8840", "origin": "http://[::1]:8840"}, "http")
    for origin in ("http://evil.example", "http://nas.local:8841", "https://nas.local:8840", "null",
                   "http://nas.local:8840.evil.example", "file://", "http://nas.local:8840/path", "javascript:x"):
        assert not same_origin({**host, "origin": origin}, "http"), origin
    # No Origin: a script (curl) or an old browser; a browser's Sec-Fetch-Site must not name another site.
    assert same_origin(host, "http")
    assert same_origin({**host, "sec-fetch-site": "same-origin"}, "http")
    assert not same_origin({**host, "sec-fetch-site": "cross-site"}, "http")
    assert not same_origin({**host, "sec-fetch-site": "same-site"}, "http")
    # Behind the trusted proxy: the host the browser asked the proxy for, under either scheme.
    assert same_origin({"host": "127.0.0.1:8840", "origin": "https://photos.example"}, "http", "photos.example")
    assert not same_origin({"host": "127.0.0.1:8840", "origin": "https://evil.example"}, "http", "photos.example")


def test_every_answer_gets_a_strict_policy_and_hsts_only_under_tls() -> None:
    plain, tls = dict(security_headers(False)), dict(security_headers(True))
    assert plain[b"content-security-policy"] == CSP.encode()
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'",
                      "base-uri 'none'", "form-action 'self'"):
        assert directive in CSP
    assert "unsafe-inline" not in CSP and "unsafe-eval" not in CSP and "*" not in CSP
    assert plain[b"x-content-type-options"] == b"nosniff" and plain[b"x-frame-options"] == b"DENY"
    assert plain[b"referrer-policy"] == b"no-referrer"
    assert b"strict-transport-security" not in plain and tls[b"strict-transport-security"].startswith(b"max-age=")


def test_bodies_are_bounded_by_their_declared_length() -> None:
    assert not too_large({}) and not too_large({"content-length": "200"})
    assert too_large({"content-length": str(1 << 20)}) and too_large({"content-length": "-1"})
    assert too_large({"content-length": "12abc"})


@pytest.mark.parametrize("header, size, expected", [
    (None, 100, None), ("bytes=0-9", 100, (0, 9)), ("bytes=90-", 100, (90, 99)), ("bytes=90-500", 100, (90, 99)),
    ("bytes=-10", 100, (90, 99)), ("bytes=-500", 100, (0, 99)), ("bytes=100-", 100, False), ("bytes=5-2", 100, False),
    ("bytes=-0", 100, False), ("bytes=0-0", 100, (0, 0)), ("bytes=0-1,5-6", 100, None), ("items=0-1", 100, None),
    ("bytes=abc", 100, None), ("bytes=-", 100, None), ("bytes=1-2-3", 100, None), ("bytes=0-", 0, False),
    ("BYTES= 3-4", 100, (3, 4)),
])
def test_range_headers_follow_rfc_9110(header: str | None, size: int, expected: object) -> None:
    assert byte_range(header, size) == expected


def test_the_proxy_header_counts_from_the_trusted_proxy_only() -> None:
    header = {"remote-user": "alice"}
    assert proxy_user("127.0.0.1", header, "127.0.0.1", "Remote-User") == ("alice", False)
    assert proxy_user("::ffff:127.0.0.1", header, "127.0.0.1", "Remote-User") == ("alice", False)
    assert proxy_user("10.0.0.7", header, "127.0.0.1", "Remote-User") == (None, True)  # refused outright
    assert proxy_user("10.0.0.7", header, None, "Remote-User") == (None, True)  # no proxy configured at all
    assert proxy_user("127.0.0.1", {"remote-user": " "}, "127.0.0.1", "Remote-User") == (None, True)
    assert proxy_user("10.0.0.7", {}, "127.0.0.1", "Remote-User") == (None, False)
    assert proxy_user("127.0.0.1", {"x-user": "bob"}, "127.0.0.1", "X-User") == ("bob", False)
    forwarded = {"x-forwarded-for": "203.0.113.9, 192.168.1.20"}
    assert client_address("127.0.0.1", forwarded, "127.0.0.1") == "192.168.1.20"  # the hop the proxy saw
    assert client_address("10.0.0.7", forwarded, "127.0.0.1") == "10.0.0.7"  # nobody else's word counts


def test_a_url_becomes_the_protocols_own_request() -> None:
    wanted = web_search({"q": "a red circle", "k": "20", "after": "2019-06-01", "before": "1700000000",
                         "camera": "canon r5", "sort": "-date", "share": "photos", "path_prefix": "/srv/photos/2019"},
                        60, 1000)
    request = validated(wanted, None, 1000)
    assert request == Request("search", None, (), 20, "photos", "/srv/photos/2019", request.after, 1700000000.0,
                              "canon r5", "-date", q="a red circle", with_ids=True)
    assert request.after is not None
    assert wanted.offset == 0 and wanted.k == 20
    paged = web_search({"q": "red", "offset": "40", "k": "20"}, 60, 1000)
    assert paged.request["k"] == 60 and paged.offset == 40  # the protocol is asked for everything up to the page
    assert web_search({"q": "red"}, 60, 1000).k == 60  # web.page_size


def test_url_params_pass_through_when_the_protocol_knows_them_and_nothing_names_a_file() -> None:
    passed = SEARCH_KEYS - NOT_FROM_URL - {"k"}
    wanted = web_search({key: "x" for key in passed} | {"q": "red"}, 10, 100)
    assert set(wanted.request) == passed | {"op", "k", "q"}
    for key in ("image", "terms", "text", "op", "v", "id", "nonsense"):
        with pytest.raises(ProtocolError, match="unknown parameters"):
            web_search({"q": "red", key: "/etc/passwd"}, 10, 100)
    for params, words in (({"q": "red", "k": "0"}, "'k' must be"), ({"q": "red", "k": "1e3"}, "'k' must be"),
                          ({"q": "red", "offset": "-1"}, "'offset'"), ({"q": "red", "offset": "95", "k": "10"},
                                                                       "at most 100"),
                          ({"like": "abc"}, "'like'"), ({"like": "0"}, "'like'")):
        with pytest.raises(ProtocolError, match=words):
            web_search(params, 10, 100)


def test_the_protocols_own_checks_reject_what_it_rejects() -> None:
    for params, words in (({"q": "red", "sort": "up"}, "'sort'"), ({"q": "red", "after": "soon"}, "'after'"),
                          ({"q": "x" * 5000}, "longer than"), ({"q": "red", "path_prefix": "relative"}, "absolute"),
                          ({"q": "red", "camera": " "}, "must not be empty"), ({}, "needs 'text'"),
                          ({"q": "red", "all": "maybe"}, "'all'"), ({"q": "red", "lang": "fr"}, "'lang'")):
        with pytest.raises(ProtocolError, match=words):
            validated(web_search(params, 10, 100), None, 100)


def test_the_search_box_is_the_protocols_query_box_and_more_like_this_adds_the_resolved_photo() -> None:
    # The daemon parses the box as it parses nasclip-query's words: + and -, operators, dates, places.
    assert search_box("金色头发的小姐姐") == {"q": "金色头发的小姐姐"}
    assert search_box("dog + beach - people place:Lisbon") == {"q": "dog + beach - people place:Lisbon"}
    assert search_box("  ") == {}
    wanted = web_search({"q": "sunset", "like": "42"}, 10, 100)
    assert wanted.like == 42
    request = validated(wanted, "/srv/photos/b\udcffd.jpg", 100)  # a name that is not UTF-8 survives
    assert request.q == "sunset" and request.terms == (Term(1.0, image="/srv/photos/b\udcffd.jpg"),)
    assert validated(web_search({"like": "42"}, 10, 100), "/srv/p.jpg", 100).terms == (Term(1.0, image="/srv/p.jpg"),)


WEB = "shares:\n  - {name: p, path: /srv}\nmodel: m\nstate_dir: %s\n"


def findings(tmp_path: Path, web: str) -> list[tuple[str, str]]:
    config = parse_config(WEB % tmp_path + web, tmp_path / "nasclip.yaml")
    return [(level, message) for level, _, message, _ in web_findings(config)]


def test_the_doctor_warns_of_a_page_on_the_network_without_tls_or_a_proxy(tmp_path: Path) -> None:
    assert findings(tmp_path, "")[0][0] == "ok"  # off
    exposed = findings(tmp_path, "web: {listen: '0.0.0.0:8840'}")
    assert exposed[0][0] == "warn" and "without TLS or a trusted proxy" in exposed[0][1]
    assert findings(tmp_path, "web: {listen: '[::]:8840'}")[0][0] == "warn"
    for safe in ("web: {listen: '127.0.0.1:8840'}", "web: {listen: 'localhost:8840'}",
                 "web: {listen: '0.0.0.0:8840', trusted_proxy: 192.168.1.2}",
                 "web: {listen: '0.0.0.0:8840', tls_cert: c.pem, tls_key: k.pem}"):
        assert findings(tmp_path, safe)[0][0] == "ok", safe
    assert ("warn", "no web users yet: nobody can log in") in findings(tmp_path, "web: {listen: '127.0.0.1:1'}")
    (tmp_path / FILE_NAME).write_text('{"format": 1, "users": {"nobody": "scrypt$x"}}')
    os.chmod(tmp_path / FILE_NAME, 0o644)
    loose = findings(tmp_path, "web: {listen: '127.0.0.1:1'}")
    assert any(level == "fail" and "may be read by others" in message for level, message in loose)
    assert ("ok", "1 web user: nobody") in loose


def test_web_settings_are_checked_with_their_line(tmp_path: Path) -> None:
    for web, words in (("{listen: '8840'}", "not ADDRESS:PORT"), ("{listen: 'nas:8840'}", "not an IP address"),
                       ("{listen: '0.0.0.0:99999'}", "not ADDRESS:PORT"), ("{tls_cert: c.pem}", "go together"),
                       ("{trusted_proxy: proxy.lan}", "not an IP address"),
                       ("{proxy_user_header: 'X User'}", "header name"), ("{thumb_size: 10}", "64 to 2048"),
                       ("{login_attempts: 0}", "at least 1"), ("{session_hours: 0}", "greater than 0")):
        with pytest.raises(ConfigError, match=words) as info:
            parse_config(WEB % tmp_path + f"web: {web}\n", tmp_path / "nasclip.yaml")
        assert "nasclip.yaml:5: web." in str(info.value)
