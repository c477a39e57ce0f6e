"""The real daemon under 1,000 malformed or hostile requests, then a normal query.

Every hostile request must get an error reply or a timeout (a timeout
error, or the connection closed after query.timeout when nothing was sent);
never an internal error, a crash or a stuck worker. query.timeout is 1 s
here so that the slow attacks (half-sent lines, trickled bytes, idle
connections beyond the cap) finish quickly; fast and slow attacks run side
by side.
"""

from __future__ import annotations

import json
import os
import random
import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import DaemonProcess, make_scenes, wait_until, write_config

from nasclip.query.client import RequestFailed, call

TIMEOUT = 1.0
MAX_CONNECTIONS = 8
MAX_BYTES = 4096
KNOWN_ERRORS = {"bad_json", "bad_request", "unknown_op", "too_large", "timeout", "busy", "not_found",
                "forbidden", "unsupported_version"}


@dataclass
class Case:
    """One attack: chunks sent with a pause between them; `replies` error lines expected."""

    name: str
    chunks: list[bytes]
    expect: set[str]
    replies: int = 1
    pause: float = 0.0
    half_close: bool = False
    outcomes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def line(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def exchange(path: Path, case: Case, retry_busy: bool) -> None:
    """Run one case; outcomes are error codes, 'ok', or 'eof' (closed without a reply)."""
    for attempt in range(200):
        started = time.monotonic()
        outcomes: list[str] = []
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(TIMEOUT + 5)
            sock.connect(str(path))
            try:
                for i, chunk in enumerate(case.chunks):
                    if i and case.pause:
                        time.sleep(case.pause)
                    sock.sendall(chunk)
                if case.half_close:
                    sock.shutdown(socket.SHUT_WR)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server hung up on us (too large, or busy): its reply is still readable
            reader = sock.makefile("rb")
            while len(outcomes) < case.replies:
                try:
                    reply = reader.readline()
                except (ConnectionResetError, socket.timeout):
                    reply = b""
                if not reply:
                    outcomes.append("eof")
                    break
                data = json.loads(reply)
                outcomes.append("ok" if data.get("ok") else data["error"]["code"])
        if retry_busy and outcomes[:1] == ["busy"] and attempt < 199:
            time.sleep(0.02)
            continue
        case.outcomes, case.seconds = outcomes, time.monotonic() - started
        return


def fast_cases(rng: random.Random, fifo: Path, photo: Path, target: int) -> list[Case]:
    """Requests answered at once, `target` replies in all."""
    cases: list[Case] = []
    search = {"op": "search", "text": "a red circle"}
    bad_values = {
        "text": [5, 1.5, True, [], {}, "", "   ", "\ud800", None and 0],
        "k": ["10", 1.5, True, -1, 0, 1001, 10 ** 9, 10 ** 100, [], {"k": 1}],
        "share": [1, [], {}, "", "s" * 300],
        "path_prefix": [1, "relative/path", "/nul\u0000here", "", [], "/\ud800"],
        "after": ["yesterday", "2023-13-45", True, [], {}, "x" * 100],
        "before": ["tomorrow", False, [1], "1.1.2020"],
        "terms": ["dog", [], {}, [1], [[]], [{"text": "a", "image": "/a.jpg"}], [{"weight": 2}],
                  [{"text": "a", "weight": "1"}], [{"text": "a", "weight": 1e300}], [{"text": "a", "weight": -1}],
                  [{"text": "a", "extra": 1}], [{"text": "a"}] * 17, [{"image": "rel.jpg"}]],
        "image": [1, "relative.jpg", "", "/\u0000", [], str(fifo), "/dev/zero", "/etc/passwd", "/",
                  "/proc/self/status", str(photo.parent)],
        "id": [{}, [], True, 1.5, "i" * 300],
        "v": [2, "1", True, 0, None and 3, 1.0],
    }
    for key, values in bad_values.items():
        for value in values:
            if value is None:
                continue
            base = {"op": "search"} if key == "terms" else search
            cases.append(Case(f"{key}={str(value)[:30]}", [line({**base, key: value})],
                              {"bad_request", "unsupported_version"}))
    # A search for terms that cancel out leaves nothing to search for.
    cases.append(Case("cancelled", [line({"op": "search", "terms": [{"text": "a", "weight": 1},
                                                                    {"text": "a", "weight": -1}]})],
                      {"bad_request"}))
    for op in ["", "SEARCH", "delete", "drop table files", "__init__", "status ", "ping\u0000", "x" * 1000]:
        cases.append(Case(f"op={op[:20]!r}", [line({"op": op})], {"unknown_op"}))
    for obj in [{}, {"text": "x"}, {"op": None}, {"op": 5}, {"op": ["search"]}, [], [1], 1, "search", None,
                True, {"op": "search"}, {"op": "search", "k": 5}, {"op": "ping", "extra": 1},
                {"op": "status", "share": "x"}, {"op": "scan", "share": 5}, {"op": "scan", "share": "nope"},
                {"op": "search", "text": "x", "share": "nope"}]:
        cases.append(Case(f"obj={str(obj)[:30]}", [line(obj)], {"bad_request", "not_found"}))
    for depth in (50, 900, 2000, 4000):  # unclosed, and deeper than Python's recursion limit
        cases.append(Case(f"nested[{depth}", [b"[" * depth + b"\n"], {"bad_json"}))
    for depth in (10, 300, 680):  # complete objects, 6 bytes a level: the deepest stays below 4096 bytes
        cases.append(Case(f"nested-obj{depth}", [b'{"a":' * depth + b"1" + b"}" * depth + b"\n"], {"bad_request"}))
    for depth in (10, 300, 510):  # two levels in 8 bytes: 1,020 levels, past the recursion limit
        cases.append(Case(f"nested-mixed{depth}", [b'{"a":[' * depth + b"1" + b"]}" * depth + b"\n"],
                          {"bad_request", "bad_json"}))
    template = line({"op": "search", "text": "a red circle", "k": 5, "share": "photos"}).rstrip(b"\n")
    # Ten bad requests pipelined on one connection: ten replies.
    for _ in range(10):
        cases.append(Case("pipelined", [b"".join([b"{nope\n", line({"op": "nope"}), b"\xff\n"] * 3 + [b"[\n"])],
                          {"bad_json", "unknown_op"}, replies=10))
    for size in (MAX_BYTES + 1, 20_000, 70_000, 1_000_000):
        cases.append(Case(f"huge-line {size}", [b"x" * size + b"\n"], {"too_large"}))
        cases.append(Case(f"huge-no-newline {size}", [b"[" * size], {"too_large"}))
        cases.append(Case(f"huge-json {size}", [line({"op": "search", "text": "y" * size})], {"too_large"}))
    # Half-sent and closed for writing: the unterminated last line is still judged.
    for cut in (1, 5, 17, 30):
        cases.append(Case("half-closed", [template[:cut]], {"bad_json"}, half_close=True))
    # Random filler up to the target count.
    while sum(c.replies for c in cases) < target:
        kind = rng.randrange(5)
        if kind == 0:  # bytes that are not UTF-8
            junk = bytes(rng.randrange(128, 256) for _ in range(rng.randrange(1, 200)))
            cases.append(Case("non-utf8", [junk + b"\n"], {"bad_json"}))
        elif kind == 1:  # a valid request cut short, then a newline
            cut = rng.randrange(1, len(template) - 1)
            cases.append(Case("truncated", [template[:cut] + b"\n"], {"bad_json"}))
        elif kind == 2:  # printable garbage
            junk = "".join(rng.choice("{}[]\":,0123456789abcnulltrue \\") for _ in range(rng.randrange(1, 300)))
            cases.append(Case("garbage", [junk.encode() + b"\n"], {"bad_json", "bad_request"}))
        elif kind == 3:  # a valid request with one byte flipped to a non-UTF-8 one
            at = rng.randrange(len(template))
            cases.append(Case("flipped", [template[:at] + b"\xc3\x28" + template[at + 1:] + b"\n"],
                              {"bad_json"}))
        else:  # JSON of the wrong shape
            obj = rng.choice([[], 0, "x", None, 3.5, {"op": rng.random()}, {"op": "search", "k": rng.random()}])
            cases.append(Case("shape", [line(obj)], {"bad_request"}))
    return cases


def slow_cases() -> list[Case]:
    """Requests that must end in a timeout error."""
    request = line({"op": "search", "text": "a red circle"})
    cases = [Case("half-sent", [request[:n]], {"timeout"}) for n in (1, 3, 10, 20, 30, 40) * 3]
    # Slowloris: a byte every 0.3 s; the deadline is per request, not per byte.
    cases += [Case("trickle", [bytes([b]) for b in request[:12]], {"timeout"}, pause=0.3) for _ in range(6)]
    cases += [Case("whitespace-trickle", [b" "] * 8, {"timeout"}, pause=0.25) for _ in range(2)]
    return cases


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    make_scenes(base / "photos", 12, seed=21)
    config = write_config(base / "nasclip.yaml", {"photos": base / "photos"},
                          query={"timeout": TIMEOUT, "max_connections": MAX_CONNECTIONS,
                                 "max_request_bytes": MAX_BYTES, "socket_group": None})
    process = DaemonProcess(config).start()
    wait_until(lambda: process.status()["photos"]["indexed"] == 12, 60, interval=0.2, what="indexing")
    yield process, base
    process.stop()


def test_a_thousand_hostile_requests_then_a_normal_query(daemon) -> None:
    process, base = daemon
    path = process.socket
    fifo = base / "fifo"
    os.mkfifo(fifo)
    photo = next((base / "photos").iterdir())
    rng = random.Random(7)
    slow = slow_cases()
    crowd = [Case("beyond-the-cap", [], {"busy", "eof"}) for _ in range(60)]
    fast = fast_cases(rng, fifo, photo, 1000 - len(slow) - len(crowd))
    total = sum(c.replies for c in fast + slow + crowd)
    assert total == 1000, total

    started = time.monotonic()
    with ThreadPoolExecutor(6) as pool:  # 2 fast lanes + 4 slow lanes: below the cap of 8
        slow_jobs = [pool.submit(exchange, path, c, False) for c in slow]
        fast_lanes = [threading.Thread(target=lambda part: [exchange(path, c, True) for c in part], args=(part,))
                      for part in (fast[0::2], fast[1::2])]
        for lane in fast_lanes:
            lane.start()
        for lane in fast_lanes:
            lane.join()
        for job in slow_jobs:
            job.result()
    # Then 60 clients at once, each holding its connection without a word.
    with ThreadPoolExecutor(60) as pool:
        list(pool.map(lambda c: exchange(path, c, False), crowd))
    took = time.monotonic() - started

    for case in fast + slow:
        assert len(case.outcomes) == case.replies and set(case.outcomes) <= case.expect, \
            (case.name, case.chunks[0][:80] if case.chunks else b"", case.outcomes)
    for case in slow:
        assert TIMEOUT * 0.9 <= case.seconds < TIMEOUT + 1.5, (case.name, case.seconds)
    busy = [c for c in crowd if c.outcomes == ["busy"]]
    idle = [c for c in crowd if c.outcomes == ["eof"]]
    assert len(busy) + len(idle) == len(crowd)
    assert len(idle) <= MAX_CONNECTIONS and len(busy) >= len(crowd) - MAX_CONNECTIONS
    assert all(TIMEOUT * 0.9 <= c.seconds < TIMEOUT + 1.5 for c in idle)  # closed at the idle timeout
    assert took < 30, took
    seen = {o for c in fast + slow + crowd for o in c.outcomes}
    assert seen == KNOWN_ERRORS - {"forbidden"} | {"eof"}, seen  # every kind of refusal was exercised

    # Alive, not wedged, and answering normally.
    assert process.proc.poll() is None
    t0 = time.monotonic()
    results = process.search("a red circle", k=5)
    assert len(results) == 5 and time.monotonic() - t0 < 2.0
    status = process.status()
    assert status["healthy"] and status["queries"]["busy"] >= len(busy)
    log = process.log()
    assert "Traceback" not in log and "query failed" not in log


def test_valid_but_unusual_requests_succeed(daemon) -> None:
    process, base = daemon
    unusual = ["🐶 on a 🏖️", "金色头发的小姐姐", "שלום", "a\u200bred\u200bcircle", "x" * 4000, "a\u0000b",
               "'; DROP TABLE files; --", "<script>alert(1)</script>"]
    for text in unusual:
        reply = process.request(op="search", text=text, k=3, id="ü-1")
        assert reply["ok"] and reply["id"] == "ü-1" and len(reply["results"]) == 3, (text[:20], reply)
    terms = [{"text": f"shape {i}", "weight": (-1) ** i * 0.5} for i in range(15)] + [{"text": "red"}]
    reply = process.request(op="search", terms=terms, k=1000, after=0, before="2200-01-01",
                            path_prefix=str(base / "photos"), share="photos")
    assert reply["ok"] and len(reply["results"]) == 12
    # A last request without its newline, as `printf ... | nc -U` sends it.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(process.socket))
        sock.sendall(b'{"op": "ping"}')
        sock.shutdown(socket.SHUT_WR)
        assert json.loads(sock.makefile("rb").readline())["ok"] is True


def hold_every_slot(path: Path) -> list[socket.socket]:
    """MAX_CONNECTIONS idle connections the server has admitted.

    One connected while the server had not yet released the slot of a
    connection just closed may be refused (a 'busy' line, then EOF): it is
    replaced until none is, which also shows the others were admitted.
    """
    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(path))
        return sock

    holders = [connect() for _ in range(MAX_CONNECTIONS)]
    for _ in range(10):
        refused, _, _ = select.select(holders, [], [], 0.3)
        if not refused:
            return holders
        for sock in refused:
            holders.remove(sock)
            sock.close()
            holders.append(connect())
    raise AssertionError("the server kept refusing connections it had slots for")


def test_a_client_waits_out_a_full_server(daemon) -> None:
    """Every slot held by idle connections: `call` retries on 'busy' until a slot frees at the idle timeout."""
    process, _ = daemon
    holders = []
    try:
        for _ in range(MAX_CONNECTIONS):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(process.socket))
            holders.append(sock)
        time.sleep(0.1)  # let the server accept them all
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.connect(str(process.socket))
            assert json.loads(probe.makefile("rb").readline())["error"]["code"] == "busy"
        started = time.monotonic()
        reply = call(process.socket, op="ping")
        assert reply["ok"] and 0.5 < time.monotonic() - started < TIMEOUT + 2
        for sock in holders:  # full again, and no patience: the busy error comes through
            sock.close()
        holders = hold_every_slot(process.socket)
        with pytest.raises(RequestFailed, match="busy"):
            call(process.socket, patience=0, op="ping")
    finally:
        for sock in holders:
            sock.close()
