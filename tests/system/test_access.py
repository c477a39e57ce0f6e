"""Two real uids against the real daemon: nobody never sees a photo only root may read.

The photo tree mixes every way POSIX mode bits can hide a file (file mode,
owner class, group class, a folder without the search bit, a folder above
the share). Which files `nobody` can really open is asked of the kernel
itself, in a process running as nobody, so the test cannot pass on a tree
whose permissions make no difference. Clients run as nobody in a forked
child that drops to uid/gid 65534 (exec is impossible: the interpreter may
live below a folder nobody cannot enter).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from conftest import (
    DEMO_MODEL,
    DaemonProcess,
    make_scenes,
    wait_until,
    write_config,
    write_scene,
)
from users import Ran, as_user

from nasclip.cli import query
from nasclip.indexing.encoder import Encoder
from nasclip.model.spec import load_model_spec
from nasclip.query import search
from nasclip.query.access import AccessCheck, Peer
from nasclip.query.client import Client
from nasclip.query.protocol import Request, Term
from nasclip.store.store import Encoded, Seen, Store
from tools.scenes import Scene

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the test switches to the 'nobody' uid")

NOBODY = 65534  # uid nobody, gid nogroup on Debian


def nobody(body: Callable[[], int], groups: list[int] | None = None) -> Ran:
    return as_user(NOBODY, NOBODY, groups or [], body)


def cli(argv: list[str], groups: list[int] | None = None) -> Ran:
    """nasclip-query as nobody."""
    return nobody(lambda: query.main(argv), groups)


def raw(socket: Path, groups: list[int] | None = None, **request) -> dict:
    """One protocol request as nobody; the reply."""
    def body() -> int:
        with Client(socket) as client:
            print(json.dumps(client.request(**request)))
        return 0
    ran = nobody(body, groups)
    assert ran.code == 0, ran
    return ran.json


@pytest.fixture(scope="module")
def tree():
    """The photo tree, owned and moded to hide some photos from nobody in every possible way."""
    base = Path(tempfile.mkdtemp(prefix="nasclip-access-"))  # not below pytest's 0700 tmp folder
    base.chmod(0o755)
    share = base / "photos"
    public, private, listable = share / "public", share / "private", share / "listable"
    files: dict[str, Path] = {}
    for i, path in enumerate(make_scenes(public, 8, seed=11, prefix="pub")):
        files[f"pub{i}"] = path
    for i, path in enumerate(make_scenes(private, 3, seed=12, prefix="priv")):
        files[f"priv{i}"] = path
    files["listable"] = write_scene(listable / "inside.jpg", Scene("red", "circle", "white"), seed=3)
    # Byte-for-byte copy of a public photo: "more like pub0" ranks it first for root.
    files["secret"] = public / "secret-copy.jpg"
    shutil.copyfile(files["pub0"], files["secret"])
    files["mine"] = write_scene(public / "mine.jpg", Scene("blue", "star", "yellow"), seed=4)
    files["mine_noread"] = write_scene(public / "mine-noread.jpg", Scene("blue", "star", "white"), seed=5)
    files["group_ok"] = write_scene(public / "group-nogroup.jpg", Scene("green", "square", "black"), seed=6)
    files["group_no"] = write_scene(public / "group-root.jpg", Scene("green", "square", "white"), seed=7)
    files["broken_public"] = public / "broken-public.jpg"
    files["broken_public"].write_bytes(b"this is not a JPEG at all" * 20)
    files["broken_secret"] = public / "broken-secret.jpg"
    files["broken_secret"].write_bytes(b"nor is this one" * 20)
    for path in files.values():
        path.chmod(0o644)
    files["secret"].chmod(0o600)
    files["broken_secret"].chmod(0o600)
    os.chown(files["mine"], NOBODY, NOBODY)
    files["mine"].chmod(0o400)
    os.chown(files["mine_noread"], NOBODY, NOBODY)
    files["mine_noread"].chmod(0o044)  # POSIX: the owner class decides, even if "other" could read
    os.chown(files["group_ok"], 0, NOBODY)
    files["group_ok"].chmod(0o640)
    files["group_no"].chmod(0o640)  # root:root
    private.chmod(0o700)
    listable.chmod(0o744)  # nobody may list it but not enter it
    run = base / "run"
    run.mkdir(mode=0o755)
    yield {"base": base, "share": share, "files": files, "socket": run / "query.sock"}
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def daemon(tree, tmp_path_factory):
    config = write_config(tmp_path_factory.mktemp("access") / "nasclip.yaml", {"photos": tree["share"]},
                          socket=str(tree["socket"]), query={"socket_group": None, "socket_mode": "0666"})
    process = DaemonProcess(config).start()
    images = [p for k, p in tree["files"].items() if not k.startswith("broken")]

    def indexed() -> bool:
        photos = process.status()["photos"]
        return photos["indexed"] == len(images) and photos["failed"] == 2
    wait_until(indexed, 60, interval=0.2, what="the access tree to be indexed")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def readable(tree) -> set[str]:
    """The photos nobody can open, as the kernel says."""
    candidates = [str(p) for p in tree["files"].values()]

    def body() -> int:
        opened = []
        for path in candidates:
            try:
                with open(path, "rb"):
                    opened.append(path)
            except OSError:
                pass
        print(json.dumps(opened))
        return 0
    ran = nobody(body)
    assert ran.code == 0, ran
    return set(ran.json)


def names(tree, keys: list[str]) -> set[str]:
    return {str(tree["files"][k]) for k in keys}


def paths(results: list[dict]) -> set[str]:
    return {r["path"] for r in results}


def test_the_tree_really_hides_photos_from_nobody(tree, readable) -> None:
    visible = names(tree, [f"pub{i}" for i in range(8)] + ["mine", "group_ok", "broken_public"])
    assert readable == visible  # the oracle below is the kernel's own answer


def test_text_search_returns_only_readable_photos(tree, daemon, readable) -> None:
    socket = tree["socket"]
    everything = daemon.search("a red circle", k=1000)
    images = {str(p) for k, p in tree["files"].items() if not k.startswith("broken")}
    assert paths(everything) == images  # root sees all, so the hidden ones are really indexed

    for text in ("a red circle", "a blue star", "a green square on a white background"):
        ran = cli(["--socket", str(socket), "--json", "-k", "1000", text])
        assert ran.code == 0, ran
        assert paths(ran.json["results"]) == readable & images, text
    # -k smaller than the index: the search widens past hidden photos and still fills k.
    ran = cli(["--socket", str(socket), "--paths", "-k", "9", "a blue star on a white background"])
    found = set(os.fsdecode(p) for p in ran.out.split(b"\n") if p)
    assert ran.code == 0 and len(found) == 9 and found <= readable


def test_more_like_this_and_filters_never_leak(tree, daemon, readable) -> None:
    socket, files = tree["socket"], tree["files"]
    like = ["--socket", str(socket), "--json", "--like", str(files["pub0"])]
    as_root = daemon.request(op="search", image=str(files["pub0"]), k=3)["results"]
    assert {as_root[0]["path"], as_root[1]["path"]} == names(tree, ["pub0", "secret"])  # twins, score 1

    ran = cli(like + ["-k", "3"])
    assert ran.code == 0, ran
    assert ran.json["results"][0]["path"] == str(files["pub0"])
    assert paths(ran.json["results"]) <= readable

    combined = cli(like + ["-k", "1000", "red", "circle", "-", "white"])
    assert combined.code == 0 and paths(combined.json["results"]) <= readable
    assert len(combined.json["results"]) == len(readable) - 1  # all but the broken one

    for extra, expected in [
        (["--in", str(tree["share"] / "private")], set()),
        (["--in", str(tree["share"] / "listable")], set()),
        (["--in", str(tree["share"] / "public")], readable - names(tree, ["broken_public"])),
        (["--share", "photos", "--after", "2000-01-01"], readable - names(tree, ["broken_public"])),
        (["--before", "2000-01-01"], set()),
    ]:
        ran = cli(like + ["-k", "1000"] + extra)
        assert ran.code == 0, (extra, ran)
        assert paths(ran.json["results"]) == expected, extra


def test_unreadable_photos_cannot_be_used_as_queries(tree, daemon) -> None:
    files = tree["files"]
    for path in (files["secret"], files["priv0"], files["listable"], files["mine_noread"],
                 files["pub0"].with_name("no-such-photo.jpg")):
        ran = cli(["--socket", str(tree["socket"]), "--like", str(path)])
        assert ran.code == 1, (path, ran)
        # The same words whether the photo exists or not: no probing of hidden folders.
        assert b"does not exist or you may not read it (forbidden)" in ran.err, ran
        assert ran.out == b""
    missing = daemon.request(op="search", image=str(files["pub0"].with_name("no-such-photo.jpg")))
    assert missing["error"]["code"] == "not_found"  # root is simply told it is missing


def test_groups_come_from_the_connecting_process(tree, daemon) -> None:
    target = str(tree["files"]["group_no"])  # root:root 0640
    request = {"op": "search", "image": str(tree["files"]["pub1"]), "k": 1000}
    plain = raw(tree["socket"], **request)
    assert target not in paths(plain["results"])
    # The same uid in a process that carries group root: the kernel lets it read, so does nasclip.
    with_root_group = raw(tree["socket"], groups=[0], **request)
    assert target in paths(with_root_group["results"])


def test_status_shows_only_failures_the_asker_may_read(tree, daemon) -> None:
    files = tree["files"]
    as_root = {f["path"] for f in daemon.status()["recent_failures"]}
    assert as_root == names(tree, ["broken_public", "broken_secret"])
    reply = raw(tree["socket"], op="status")
    assert {f["path"] for f in reply["status"]["recent_failures"]} == {str(files["broken_public"])}
    failed = raw(tree["socket"], op="failed")
    assert failed["ok"] is False and failed["error"]["code"] == "forbidden"


def test_a_socket_nobody_may_not_open_exits_3(tree, daemon) -> None:
    socket = tree["socket"]
    socket.chmod(0o660)  # root:root: nobody is not in the group
    try:
        ran = cli(["--socket", str(socket), "a red circle"])
    finally:
        socket.chmod(0o666)
    assert ran.code == 3, ran
    assert b"permission denied" in ran.err and b"group 'root'" in ran.err
    assert ran.out == b""

    # As systemd sets it up: /run/nasclip is 0750 nasclip:nasclip, so the folder's group decides.
    hidden = tree["base"] / "hidden-run"
    hidden.mkdir(mode=0o750, exist_ok=True)
    ran = cli(["--socket", str(hidden / "query.sock"), "a red circle"])
    assert ran.code == 3 and b"only members of group 'root' may search" in ran.err, ran
    assert cli(["--socket", str(socket), "--paths", "a red circle"]).code == 0  # and back again


def test_narrow_filters_through_the_catalog_keep_permissions(tree, monkeypatch) -> None:
    """In-process: a filter too narrow for post-filtering goes to the catalog; still nothing leaks."""
    monkeypatch.setattr(search, "POST_FILTER_LIMIT", 2)
    spec = load_model_spec(DEMO_MODEL)
    encoder = Encoder.open(spec, threads=1, image=False)
    state = Path(tempfile.mkdtemp(prefix="nasclip-access-state-"))
    store = Store(state, spec.id, spec.embedding_dim)
    try:
        share = tree["share"]
        files = {k: p for k, p in tree["files"].items() if not k.startswith("broken")}
        store.apply([Seen("photos", str(p.relative_to(share)), p.stat().st_size, p.stat().st_mtime_ns)
                     for p in files.values()])
        rows = [store.catalog.get("photos", str(p.relative_to(share))) for p in files.values()]
        # Hidden photos get the vectors closest to the query: any leak would rank first.
        query = encoder.encode_texts(["a red circle"])[0]
        rng = np.random.default_rng(0)
        results = []
        for key, row in zip(files, rows):
            noise = rng.normal(size=spec.embedding_dim).astype(np.float32)
            hidden = key in ("secret", "priv0", "priv1", "priv2", "listable", "mine_noread", "group_no")
            vector = query * (3.0 if hidden else 1.0) + 0.3 * noise
            results.append(Encoded(row, f"fp{row.id}", vector=vector / np.linalg.norm(vector)))
        store.record(results)
        searcher = search.Searcher(store, encoder, {"photos": share}, 10 ** 8)
        peer = Peer(0, NOBODY, NOBODY, frozenset({NOBODY}))
        visible = names(tree, [f"pub{i}" for i in range(8)] + ["mine", "group_ok"])
        for prefix, expected in [(share / "private", set()), (share / "public", visible),
                                 (share / "public" / "secret-copy.jpg", set()), (share, visible)]:
            request = Request("search", terms=(Term(1.0, text="a red circle"),), k=20, path_prefix=str(prefix))
            hits, info = searcher.search(request, peer)
            assert info["filtered_by"] == "catalog", prefix
            assert {h.path for h in hits} == expected, prefix
        root_hits, _ = searcher.search(Request("search", terms=(Term(1.0, text="a red circle"),), k=3,
                                               path_prefix=str(share / "private")), Peer(0, 0, 0, frozenset({0})))
        assert {h.path for h in root_hits} == names(tree, ["priv0", "priv1", "priv2"])
        assert AccessCheck(peer).may_read(tree["files"]["mine"]) and not AccessCheck(peer).may_read(
            tree["files"]["mine_noread"])
    finally:
        store.close()
        encoder.close()
        shutil.rmtree(state, ignore_errors=True)


def test_stdout_capture_of_children_is_separate() -> None:
    """The helper itself: the child really runs as nobody; its output and exit code come back."""
    ran = nobody(lambda: (print("from", os.getuid(), os.getgid(), os.getgroups()), sys.stderr.write("err\n"), 5)[-1])
    assert (ran.code, ran.out, ran.err) == (5, b"from 65534 65534 []\n", b"err\n")


def test_symlinks_are_never_readable_for_others(tree) -> None:
    links = tree["base"] / "links"
    links.mkdir(mode=0o755, exist_ok=True)
    link = links / "looks-public.jpg"
    link.unlink(missing_ok=True)
    link.symlink_to(tree["files"]["pub0"])
    peer = Peer(0, NOBODY, NOBODY, frozenset({NOBODY}))
    check = AccessCheck(peer)
    assert check.may_read(tree["files"]["pub0"]) and not check.may_read(link)
    assert not check.may_read(tree["files"]["priv0"]) and not check.may_enter(tree["share"] / "private")
    assert AccessCheck(Peer(0, 0, 0, frozenset({0}))).may_read(link)
