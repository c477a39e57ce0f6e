"""The web front end over real HTTP, with two real system users, against the real daemon.

alice and bob each own a 0700 folder of photos in one share; a third folder
is everybody's. Each logs in with the web password `nasclip web passwd`
gave them, and each must see exactly the photos the kernel lets their uid
open — in search results, thumbnails and originals — the same set the
socket gives them when they connect as themselves. A photo someone may not
read answers exactly as one that does not exist. Then the hostile part:
no session, wrong passwords until refusal, the trusted proxy's header from
the wrong address, cross-site posts, traversal-style and oversized
requests; the daemon answers throughout.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import make_scenes, wait_until, write_scene
from PIL import Image
from users import User, accounts, daemon_for_users, needs_root
from videos import CODECS, Segment, segment_video
from webclient import WebClient, free_port

from nasclip.query.client import Client
from tools.scenes import Scene

pytestmark = needs_root

PASSWORDS = {"nca_walice": "alice-web-pw-1", "nca_wbob": "bob-web-pw-2", "nca_wcarol": "carol-web-pw-3",
             "nca_wdave": "dave-web-pw-4"}
PARTY = [Segment(Scene("blue", "star", "yellow"), 0.0, 3.0), Segment(Scene("green", "square", "white"), 3.0, 6.0)]
PROXY = "127.0.0.2"  # the trusted proxy's address; tests reach the server from 127.0.0.1 and 127.0.0.3 too


@pytest.fixture(scope="module")
def people():
    yield from accounts({}, {name: [] for name in PASSWORDS})


@pytest.fixture(scope="module")
def tree(people):
    base = Path(tempfile.mkdtemp(prefix="nasclip-web-"))  # not below pytest's 0700 folders
    base.chmod(0o755)
    share = base / "photos"
    files: dict[str, set[Path]] = {"nca_walice": set(), "nca_wbob": set(), "shared": set()}
    for owner, seed in (("nca_walice", 1), ("nca_wbob", 2)):
        folder = share / owner
        files[owner] = set(make_scenes(folder, 12, seed=seed, prefix=owner))
        user: User = people[owner]
        for path in [folder, *files[owner]]:
            os.chown(path, user.uid, user.gid)
        folder.chmod(0o700)
        for path in files[owner]:
            path.chmod(0o600)
    files["shared"] = set(make_scenes(share / "shared", 6, seed=3, prefix="shared"))
    files["shared"].add(write_scene(share / "shared" / "red-circle.jpg", Scene("red", "circle", "white"), seed=9))
    rng = random.Random(19)  # a video of two scenes: found at its moment, its thumbnail that moment's frame
    files["shared"].add(segment_video(share / "shared" / "party.mp4", PARTY, CODECS["h264-mp4"], rng))
    for path in files["shared"]:
        path.chmod(0o644)
    yield {"base": base, "share": share, "files": files}
    shutil.rmtree(base, ignore_errors=True)


def admin(config: Path, *argv: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nasclip.cli.admin", "-c", str(config), *argv], input=stdin,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def web(tree, tmp_path_factory):
    port = free_port()
    folder = tmp_path_factory.mktemp("web")
    process = daemon_for_users(folder, {"photos": tree["share"]}, tree["base"] / "run",
                               web={"listen": f"127.0.0.1:{port}", "login_attempts": 3,
                                    "login_attempts_per_address": 6, "trusted_proxy": PROXY})
    process.start()
    for user, password in PASSWORDS.items():
        done = admin(process.config_path, "web", "passwd", user, stdin=password + "\n")
        assert done.returncode == 0, done.stderr
    total = sum(len(v) for v in tree["files"].values())
    wait_until(lambda: process.status()["photos"]["indexed"] == total, 90, interval=0.2, what="indexing")
    yield {"daemon": process, "port": port, "total": total}
    assert process.stop() == 0
    assert "Traceback" not in process.log(), process.log()[-3000:]


def logged_in(web, user: str) -> WebClient:
    client = WebClient(web["port"])
    answer = client.login(user, PASSWORDS[user])
    assert answer.status == 200 and answer.json["user"] == user, answer
    return client


def visible(tree, user: str) -> set[str]:
    return {str(p) for p in tree["files"][user] | tree["files"]["shared"]}


def socket_view(web, user: User) -> set[str]:
    """What the user gets over the socket, connected as themselves."""
    def body() -> int:
        with Client(web["daemon"].socket) as client:
            print(json.dumps(client.request(op="search", text="a red circle", k=1000)))
        return 0
    ran = user.run(body)
    assert ran.code == 0, ran
    return {r["path"] for r in ran.json["results"]}


def all_ids(web) -> dict[str, int]:
    """path -> id of every photo, read from the catalog (the socket's replies carry no ids)."""
    daemon = web["daemon"]
    roots = {share["name"]: share["path"] for share in daemon.config["shares"]}
    with sqlite3.connect(f"file:{Path(daemon.config['state_dir']) / 'catalog.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT id, share, relpath FROM files WHERE state='indexed'").fetchall()
    return {f"{roots[share]}/{os.fsdecode(relpath)}": row_id for row_id, share, relpath in rows}


def test_the_password_file_is_private_and_lists_the_users(web) -> None:
    daemon = web["daemon"]
    path = Path(daemon.config["state_dir"]) / "web-users.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert "scrypt$" in path.read_text() and "alice-web-pw-1" not in path.read_text()
    listed = admin(daemon.config_path, "web", "users")
    assert listed.returncode == 0 and set(listed.stdout.split()) == set(PASSWORDS)
    refused = admin(daemon.config_path, "web", "passwd", "nca_nosuchuser", stdin="whatever-123\n")
    assert refused.returncode == 1 and "no system user 'nca_nosuchuser'" in refused.stderr
    refused = admin(daemon.config_path, "web", "passwd", "root", stdin="whatever-123\n")
    assert refused.returncode == 1 and "root" in refused.stderr


def test_without_a_session_every_api_answers_401(web) -> None:
    client = WebClient(web["port"])
    for path in ("/api/search?q=red", "/api/thumb/1", "/api/photo/1", "/api/status", "/api/me"):
        answer = client.get(path)
        assert answer.status == 401 and answer.json["error"]["code"] == "unauthorized", (path, answer)
    client.cookie = "nasclip_session=forged-token-" + "x" * 40
    assert client.get("/api/search?q=red").status == 401


def test_each_user_sees_only_what_they_may_read_exactly_as_on_the_socket(web, tree, people) -> None:
    for user in ("nca_walice", "nca_wbob"):
        client = logged_in(web, user)
        answer = client.search(q="a red circle", k=1000)
        assert answer.status == 200, answer
        found = {r["path"] for r in answer.json["results"]}
        assert found == visible(tree, user)
        assert found == socket_view(web, people[user])  # the same access code, the same answer
        for result in answer.json["results"]:
            assert {"path", "share", "score", "size", "mtime", "taken", "taken_from", "camera", "id"} <= set(result)
    carol = logged_in(web, "nca_wcarol")  # owns nothing: only the shared folder
    assert {r["path"] for r in carol.search(q="a blue star", k=1000).json["results"]} == visible(tree, "shared")


def test_pages_filters_and_the_box_syntax_reach_the_protocol(web, tree) -> None:
    alice = logged_in(web, "nca_walice")
    everything = [r["id"] for r in alice.search(q="a red circle", k=100).json["results"]]
    first, second = alice.search(q="a red circle", k=5).json, alice.search(q="a red circle", k=5, offset=5).json
    assert [r["id"] for r in first["results"] + second["results"]] == everything[:10] and first["more"]
    shared = alice.search(q="a red circle", k=100, path_prefix=str(tree["share"] / "shared")).json["results"]
    assert {r["path"] for r in shared} == visible(tree, "shared")
    assert alice.search(q="a red circle", before="2000-01-01").json["results"] == []
    combined = alice.search(q="red circle + white - blue", k=3)
    assert combined.status == 200 and combined.json["results"], combined
    for params, words in (({"q": "red", "k": "0"}, "'k' must be"), ({"q": "red", "sort": "sideways"}, "'sort'"),
                          ({"q": "red", "image": "/etc/passwd"}, "unknown parameters"),
                          ({"q": "x" * 5000}, "longer than"), ({"q": "red", "after": "yesterday"}, "'after'")):
        answer = alice.search(**params)
        assert answer.status == 400 and words in answer.json["error"]["message"], (params, answer)
    assert alice.get("/api/search?q=red&q=blue").status == 400


def test_thumbnails_and_originals_follow_read_permission_and_hide_existence(web, tree) -> None:
    ids = all_ids(web)
    missing_id = max(ids.values()) + 1000
    for user in ("nca_walice", "nca_wbob"):
        client = logged_in(web, user)
        nothing = client.get(f"/api/photo/{missing_id}")
        assert nothing.status == 404
        for path, photo_id in ids.items():
            thumb, original = client.get(f"/api/thumb/{photo_id}"), client.get(f"/api/photo/{photo_id}")
            if path in visible(tree, user):
                assert thumb.status == 200 and thumb.headers["content-type"] == "image/jpeg", thumb
                assert thumb.body[:2] == b"\xff\xd8"
                assert original.status == 200 and original.body == Path(path).read_bytes()
            else:
                for answer in (thumb, original):  # indistinguishable from a photo that does not exist
                    assert (answer.status, answer.body) == (nothing.status, nothing.body)
                    assert {k: v for k, v in answer.headers.items() if k != "date"} == \
                        {k: v for k, v in nothing.headers.items() if k != "date"}


def test_originals_answer_range_requests(web, tree) -> None:
    alice = logged_in(web, "nca_walice")
    path = sorted(tree["files"]["nca_walice"])[0]
    photo_id = all_ids(web)[str(path)]
    data = path.read_bytes()
    part = alice.get(f"/api/photo/{photo_id}", Range="bytes=10-99")
    assert part.status == 206 and part.body == data[10:100]
    assert part.headers["content-range"] == f"bytes 10-99/{len(data)}"
    tail = alice.get(f"/api/photo/{photo_id}", Range="bytes=-50")
    assert tail.status == 206 and tail.body == data[-50:]
    beyond = alice.get(f"/api/photo/{photo_id}", Range=f"bytes={len(data) + 5}-")
    assert beyond.status == 416 and beyond.headers["content-range"] == f"bytes */{len(data)}"
    stale = alice.get(f"/api/photo/{photo_id}", Range="bytes=0-9", If_Range='"an-old-etag"')
    assert stale.status == 200 and stale.body == data
    head = alice.request("HEAD", f"/api/photo/{photo_id}")
    assert head.status == 200 and head.body == b"" and head.headers["content-length"] == str(len(data))
    assert head.headers["content-type"] == "image/jpeg" and head.headers["accept-ranges"] == "bytes"


def test_a_video_is_found_at_its_moment_shown_at_that_frame_and_served_in_ranges(web, tree) -> None:
    bob = logged_in(web, "nca_wbob")
    answer = bob.search(q="a green square", k=3)
    assert answer.status == 200, answer
    video = next(r for r in answer.json["results"] if r["path"].endswith("party.mp4"))
    assert video["kind"] == "video" and PARTY[1].holds(video["time"]) and abs(video["duration"] - 6.0) < 0.3
    frames = {}
    for at in (None, video["time"]):
        thumb = bob.get(f"/api/thumb/{video['id']}" + ("" if at is None else f"?t={at}"))
        assert thumb.status == 200 and thumb.headers["content-type"] == "image/jpeg", thumb
        frames[at] = Image.open(io.BytesIO(thumb.body)).convert("RGB").resize((1, 1)).getpixel((0, 0))
    # The start shows the blue star on yellow; the moment found, the green square on white.
    assert frames[None] != frames[video["time"]]
    assert bob.get(f"/api/thumb/{video['id']}?t=later").status == 400
    data = (tree["share"] / "shared" / "party.mp4").read_bytes()
    part = bob.get(f"/api/photo/{video['id']}", Range="bytes=100-199")
    assert part.status == 206 and part.body == data[100:200] and part.headers["content-type"] == "video/mp4"


def test_more_like_this_names_a_photo_by_id_and_only_a_readable_one(web, tree) -> None:
    ids = all_ids(web)
    alice = logged_in(web, "nca_walice")
    mine = sorted(tree["files"]["nca_walice"])[3]
    answer = alice.search(like=ids[str(mine)], k=5)
    assert answer.status == 200 and answer.json["results"][0]["path"] == str(mine), answer
    assert {r["path"] for r in answer.json["results"]} <= visible(tree, "nca_walice")
    bobs = sorted(tree["files"]["nca_wbob"])[0]
    refused, missing = alice.search(like=ids[str(bobs)]), alice.search(like=max(ids.values()) + 77)
    assert refused.status == missing.status == 404 and refused.body == missing.body


def test_wrong_passwords_get_401_and_then_refusal_per_user_and_per_address(web) -> None:
    client = WebClient(web["port"])
    for _ in range(3):  # web.login_attempts
        answer = client.login("nca_wcarol", "not-the-password")
        assert answer.status == 401 and answer.json["error"]["code"] == "unauthorized"
    refused = client.login("nca_wcarol", PASSWORDS["nca_wcarol"])  # even the right one, for now
    assert refused.status == 429 and int(refused.headers["retry-after"]) > 0
    assert client.login("nca_nosuchuser", "whatever").status == 401  # no hint that the user does not exist
    elsewhere = WebClient(web["port"], source="127.0.0.3")  # another address: per-address limit (6)
    for i in range(6):
        assert elsewhere.login(f"nca_guess{i}", "guess").status == 401
    assert elsewhere.login("nca_walice", PASSWORDS["nca_walice"]).status == 429
    assert logged_in(web, "nca_walice").get("/api/me").status == 200  # others are not locked out


def test_the_proxy_header_is_believed_from_the_trusted_proxy_only(web, tree) -> None:
    header = {"Remote-User": "nca_wbob"}
    stranger = WebClient(web["port"]).get("/api/search?q=a+red+circle&k=100", **header)
    assert stranger.status == 403 and stranger.json["error"]["code"] == "forbidden"
    proxy = WebClient(web["port"], source=PROXY)
    answer = proxy.get("/api/search?q=a+red+circle&k=100", **header)
    assert answer.status == 200 and {r["path"] for r in answer.json["results"]} == visible(tree, "nca_wbob")
    assert proxy.get("/api/me", Remote_User="root").status == 401  # root has no web login
    assert proxy.get("/api/me").status == 401  # no header and no session: not logged in


def test_sessions_end_at_logout_and_when_the_password_is_removed(web) -> None:
    alice = logged_in(web, "nca_walice")
    assert alice.request("POST", "/api/logout").status == 200
    assert alice.get("/api/me").status == 401
    dave = logged_in(web, "nca_wdave")
    cookie = dave.cookie
    done = admin(web["daemon"].config_path, "web", "remove", "nca_wdave")
    assert done.returncode == 0, done.stderr
    assert dave.get("/api/me").status == 401
    assert dave.login("nca_wdave", PASSWORDS["nca_wdave"]).status == 401
    dave.cookie = cookie
    assert dave.get("/api/search?q=red").status == 401


def test_headers_cookie_flags_and_the_page(web) -> None:
    client = WebClient(web["port"])
    page = client.get("/")
    assert page.status == 200 and b"/static/app.js" in page.body
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["x-frame-options"] == "DENY"
    for name in ("app.js", "app.css", "i18n.js", "icon.svg"):
        assert client.get(f"/static/{name}").status == 200
    login = client.login("nca_walice", PASSWORDS["nca_walice"])
    cookie = login.cookies[0].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie  # no TLS here
    assert client.get("/api/me").headers["cache-control"] == "no-store"


def test_hostile_requests_get_errors_and_the_daemon_runs_on(web) -> None:
    alice = logged_in(web, "nca_walice")
    for path in ("/static/../../../../etc/passwd", "/static/..%2f..%2fetc%2fpasswd", "/static/%2e%2e/%2e%2e/etc/passwd",
                 "/api/photo/..%2f..%2f..%2fetc%2fpasswd", "/api/thumb/-1", "/api/photo/0",
                 "/api/photo/99999999999999999999999999", "/api/photo/1%00", "/etc/passwd", "/static/index.html",
                 "/api/photo/%2fetc%2fpasswd", "/static/app.js%2f..%2f..%2fcatalog.db"):
        answer = alice.get(path)
        assert answer.status in (400, 404), (path, answer)
        assert b"root:" not in answer.body
    huge = alice.request("POST", "/api/login", b"{}", {"Content-Type": "application/json",
                                                       "Content-Length": str(50 << 20)})
    assert huge.status == 413
    for body, kind, status in ((b"{not json", "application/json", 400), (b'{"user": 1, "password": 2}',
                                                                          "application/json", 400),
                               (b"user=a&password=b", "application/x-www-form-urlencoded", 415)):
        assert alice.request("POST", "/api/login", body, {"Content-Type": kind}).status == status
    cross = alice.request("POST", "/api/logout", b"", {"Origin": "http://evil.example"})
    assert cross.status == 403 and alice.get("/api/me").status == 200  # still logged in
    assert alice.request("POST", "/api/logout", b"", {"Origin": "null"}).status == 403
    assert alice.request("DELETE", "/api/photo/1", b"", {"Origin": f"http://127.0.0.1:{web['port']}"}).status == 405
    big_header = alice.get("/api/me", X_Junk="a" * 40_000)
    assert big_header.status in (400, 413, 431)
    with __import__("socket").create_connection(("127.0.0.1", web["port"]), timeout=10) as raw:
        raw.sendall(b"\x16\x03\x01garbage that is no HTTP\r\n\r\n")
        reply = raw.recv(100)
        assert reply == b"" or reply.startswith(b"HTTP/1.1 400"), reply  # h11 answers 400, or just closes
    assert alice.get("/api/me").status == 200
    assert web["daemon"].request(op="ping")["ok"]
    assert alice.search(q="a red circle", k=3).status == 200


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a test certificate")
def test_tls_serves_https_with_secure_cookies_and_a_bad_certificate_stops_the_start(tree, tmp_path) -> None:
    import ssl

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    port = free_port()
    process = daemon_for_users(tmp_path, {"photos": tree["share"]}, tree["base"] / "run-tls",
                               web={"listen": f"127.0.0.1:{port}", "tls_cert": str(cert), "tls_key": str(key)})
    process.start()
    try:
        assert admin(process.config_path, "web", "passwd", "nca_walice", stdin="alice-tls-pw-9").returncode == 0
        plain = WebClient(port)
        with pytest.raises((ConnectionError, http_client_error())):
            plain.get("/api/me")  # no clear text on a TLS port
        client = WebClient(port, tls=ssl.create_default_context(cafile=str(cert)))
        login = client.login("nca_walice", "alice-tls-pw-9")
        assert login.status == 200 and "secure" in login.cookies[0].lower()
        assert client.get("/api/me").headers["strict-transport-security"].startswith("max-age=")
    finally:
        assert process.stop() == 0
    key.write_text("not a key")
    process.start(wait=False)
    assert process.proc is not None and process.proc.wait(60) != 0
    assert "web.tls_cert / web.tls_key: cannot load" in process.log()


def http_client_error() -> type[Exception]:
    import http.client

    return http.client.HTTPException
