"""The query protocol's parser: what is accepted, what is refused with which code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nasclip.errors import ProtocolError
from nasclip.query import protocol
from nasclip.query.protocol import parse_request


def parse(obj: object, max_k: int = 1000) -> protocol.Request:
    return parse_request(json.dumps(obj).encode(), max_k)


def refused(line: bytes | object, max_k: int = 1000) -> ProtocolError:
    raw = line if isinstance(line, bytes) else json.dumps(line).encode()
    with pytest.raises(ProtocolError) as caught:
        parse_request(raw, max_k)
    return caught.value


def test_search_forms() -> None:
    request = parse({"v": 1, "op": "search", "id": "q1", "text": "a red circle", "k": 5, "share": "photos",
                     "path_prefix": "/srv/photos/2023", "after": "2023-01-01T00:00:00+00:00", "before": 1.7e9})
    assert request.op == "search" and request.id == "q1" and request.k == 5
    assert request.terms == (protocol.Term(1.0, text="a red circle"),)
    assert request.share == "photos" and request.path_prefix == "/srv/photos/2023"
    assert request.after == 1672531200.0 and request.before == 1.7e9

    request = parse({"op": "search", "terms": [{"text": "dog"}, {"image": "/p/a.jpg", "weight": 0.5},
                                               {"text": "people", "weight": -1}]})
    assert request.k == 10
    assert request.terms == (protocol.Term(1.0, text="dog"), protocol.Term(0.5, image="/p/a.jpg"),
                             protocol.Term(-1.0, text="people"))
    # A file name that is not UTF-8 travels as os.fsdecode's surrogate escapes.
    assert parse({"op": "search", "image": "/p/caf\udce9.jpg"}).terms[0].image == "/p/caf\udce9.jpg"
    assert parse({"op": "ping", "id": 3}).id == 3
    assert parse({"op": "scan", "share": "photos"}).share == "photos"


def test_far_dates_are_clamped_not_refused() -> None:
    request = parse({"op": "search", "text": "x", "before": "9999-12-31", "after": -10 ** 400})
    assert request.before == protocol.TIME_LIMIT and request.after == -protocol.TIME_LIMIT


@pytest.mark.parametrize("line, code", [
    (b"\xff\xfe{}", protocol.BAD_JSON),
    (b"{\"op\": \"search\"", protocol.BAD_JSON),
    (b"[" * 5000, protocol.BAD_JSON),
    (b"{\"op\":\"search\",\"text\":\"x\",\"k\":1" + b"0" * 5000 + b"}", protocol.BAD_JSON),
    (b"NaN", protocol.BAD_REQUEST),
    ([1, 2], protocol.BAD_REQUEST),
    ({"text": "x"}, protocol.BAD_REQUEST),
    ({"op": 7}, protocol.BAD_REQUEST),
    ({"op": "drop_tables"}, protocol.UNKNOWN_OP),
    ({"op": "ping", "v": 2}, protocol.UNSUPPORTED_VERSION),
    ({"op": "ping", "v": True}, protocol.UNSUPPORTED_VERSION),
    ({"op": "ping", "v": "1"}, protocol.UNSUPPORTED_VERSION),
    ({"op": "ping", "verbose": True}, protocol.BAD_REQUEST),
    ({"op": "search", "text": "x", "limit": 3}, protocol.BAD_REQUEST),
    ({"op": "search"}, protocol.BAD_REQUEST),
    ({"op": "search", "text": ""}, protocol.BAD_REQUEST),
    ({"op": "search", "text": "   "}, protocol.BAD_REQUEST),
    ({"op": "search", "text": 5}, protocol.BAD_REQUEST),
    ({"op": "search", "text": "x" * 5000}, protocol.BAD_REQUEST),
    ({"op": "search", "text": "\ud800"}, protocol.BAD_REQUEST),
    ({"op": "search", "text": "x", "k": 0}, protocol.BAD_REQUEST),
    ({"op": "search", "text": "x", "k": 1001}, protocol.BAD_REQUEST),
    ({"op": "search", "text": "x", "k": 10 ** 30}, protocol.BAD_REQUEST),
    ({"op": "search", "text": "x", "k": 2.0}, protocol.BAD_REQUEST),
    ({"op": "search", "text": "x", "k": True}, protocol.BAD_REQUEST),
    ({"op": "search", "text": "x", "k": "10"}, protocol.BAD_REQUEST),
    ({"op": "search", "image": "relative.jpg"}, protocol.BAD_REQUEST),
    ({"op": "search", "image": "/a\u0000b.jpg"}, protocol.BAD_REQUEST),
    ({"op": "search", "image": "/\ud800.jpg"}, protocol.BAD_REQUEST),
    ({"op": "search", "text": "x", "path_prefix": "photos/2023"}, protocol.BAD_REQUEST),
    ({"op": "search", "terms": []}, protocol.BAD_REQUEST),
    ({"op": "search", "terms": "dog"}, protocol.BAD_REQUEST),
    ({"op": "search", "terms": [{"text": "x"}] * 17}, protocol.BAD_REQUEST),
    ({"op": "search", "terms": ["dog"]}, protocol.BAD_REQUEST),
    ({"op": "search", "terms": [{"text": "dog", "image": "/a.jpg"}]}, protocol.BAD_REQUEST),
    ({"op": "search", "terms": [{"weight": 1}]}, protocol.BAD_REQUEST),
    ({"op": "search", "terms": [{"text": "dog", "colour": "red"}]}, protocol.BAD_REQUEST),
    ({"op": "search", "terms": [{"text": "dog", "weight": "1"}]}, protocol.BAD_REQUEST),
    ({"op": "search", "terms": [{"text": "dog", "weight": 1e308}]}, protocol.BAD_REQUEST),
    ({"op": "search", "terms": [{"text": "dog", "weight": -1}]}, protocol.BAD_REQUEST),
    ({"op": "search", "text": "x", "after": "yesterday"}, protocol.BAD_REQUEST),
    ({"op": "search", "text": "x", "after": True}, protocol.BAD_REQUEST),
    ({"op": "search", "text": "x", "share": ["a"]}, protocol.BAD_REQUEST),
    ({"op": "search", "text": "x", "id": {"a": 1}}, protocol.BAD_REQUEST),
    ({"op": "search", "text": "x", "id": "i" * 300}, protocol.BAD_REQUEST),
])
def test_refused(line: bytes | object, code: str) -> None:
    error = refused(line)
    assert error.code == code, str(error)
    assert str(error)  # every refusal explains itself


def test_error_names_the_request_it_answers() -> None:
    assert refused({"op": "search", "id": "q7", "k": -1}).request_id == "q7"
    reply = json.loads(protocol.encode(protocol.error_reply(protocol.BAD_REQUEST, "why", "q7")))
    assert reply == {"v": 1, "ok": False, "id": "q7", "error": {"code": "bad_request", "message": "why"}}


def test_max_k_comes_from_the_config() -> None:
    assert parse({"op": "search", "text": "x", "k": 50}, max_k=50).k == 50
    assert refused({"op": "search", "text": "x", "k": 51}, max_k=50).code == protocol.BAD_REQUEST


def test_reply_lines_are_ascii_and_keep_undecodable_names() -> None:
    line = protocol.encode(protocol.ok_reply(1, results=[{"path": "/p/caf\udce9 日本.jpg"}]))
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and line.isascii()
    assert json.loads(line)["results"][0]["path"] == "/p/caf\udce9 日本.jpg"


def test_docs_name_every_op_key_and_error_code() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")
    codes = [v for k, v in vars(protocol).items() if k.isupper() and isinstance(v, str) and k not in ("VERSION",)]
    assert len(codes) >= 10
    for code in codes:
        assert f"| `{code}` |" in doc, code
    for op in protocol.OPS:
        assert f"### `{op}`" in doc, op
    for key in protocol.SEARCH_KEYS - {"v", "op", "id"}:
        assert f"| `{key}` |" in doc, key
    assert f"version {protocol.VERSION}" in doc


def test_an_image_term_may_name_a_moment_of_a_video_and_pairs_are_one_or_both() -> None:
    request = parse({"op": "search", "terms": [{"image": "/srv/v/party.mp4", "time": 83.5},
                                               {"text": "cake", "weight": 0.5}]})
    assert request.terms == (protocol.Term(1.0, image="/srv/v/party.mp4", time=83.5), protocol.Term(0.5, text="cake"))
    assert request.pairs == "one" and parse({"op": "search", "text": "kayak", "pairs": "both"}).pairs == "both"
    for bad in ({"text": "cake", "time": 3}, {"image": "/a.mp4", "time": -1}, {"image": "/a.mp4", "time": "1:23"},
                {"image": "/a.mp4", "time": True}, {"image": "/a.mp4", "time": 1e12}):
        assert "time" in str(refused({"op": "search", "terms": [bad]})), bad
    assert refused({"op": "search", "text": "kayak", "pairs": "all"}).code == "bad_request"
    assert refused({"op": "search", "image": "/a.mp4", "time": 3}).code == "bad_request"  # only in terms
