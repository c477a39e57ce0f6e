"""--like and results through symbolic links and '..', with real users, real links and the real daemon.

The attack of issue 12, finding 3: alice links bob's folder into her own
and asks for photos like ``alice/l/t1.jpg``; the daemon must not open bob's
photo for her. Results are judged the way the kernel would open them: a
catalog path whose folder became a link to bob's folder is not shown.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import make_scenes, wait_until
from users import User, accounts, daemon_for_users, needs_root

from nasclip.cli import query
from nasclip.errors import PathRefused
from nasclip.fsopen import open_nofollow
from nasclip.query.access import AccessCheck, Peer
from nasclip.query.client import Client

pytestmark = needs_root
REFUSED = b"does not exist or you may not read it (forbidden)"


@pytest.fixture(scope="module")
def people():
    yield from accounts({}, {"nca_alice": [], "nca_bob": []})


@pytest.fixture(scope="module")
def tree(people):
    """share/alice (alice's, open), share/bob (bob's, 0700) holding an open trip/ folder."""
    base = Path(tempfile.mkdtemp(prefix="nasclip-like-"))  # not below pytest's 0700 tmp folder
    base.chmod(0o755)
    share = base / "photos"
    alice, bob = people["nca_alice"], people["nca_bob"]
    own = make_scenes(share / "alice" / "own", 2, seed=41, prefix="own")
    trip = make_scenes(share / "bob" / "trip", 2, seed=42, prefix="t")
    for folder, user in ((share / "alice", alice), (share / "alice" / "own", alice), (share / "bob", bob),
                         (share / "bob" / "trip", bob)):
        os.chown(folder, user.uid, user.gid)
    for path in list(own) + list(trip):
        path.chmod(0o644)
    share.chmod(0o755)
    (share / "bob").chmod(0o700)
    yield {"base": base, "share": share, "own": sorted(own), "trip": sorted(trip), "run": base / "run"}
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def daemon(tree, tmp_path_factory):
    process = daemon_for_users(tmp_path_factory.mktemp("like"), {"photos": tree["share"]}, tree["run"]).start()
    tree["socket"] = process.socket
    wait_until(lambda: process.status()["photos"]["indexed"] == 4, 60, interval=0.2, what="indexing")
    yield process
    process.stop()


def like(user: User, tree, image: str, raw: bool = False):
    """--like image as user: through nasclip-query, or as a raw protocol request (no client-side resolving)."""
    if raw:
        def body() -> int:
            with Client(tree["socket"]) as client:
                reply = client.request(op="search", image=image, k=10)
            print(reply.get("error", {}).get("code", "ok"), reply.get("error", {}).get("message", ""))
            return 0
        return user.run(body)
    return user.run(lambda: query.main(["--socket", str(tree["socket"]), "--paths", "--like", image]))


def test_a_symlinked_folder_does_not_open_bobs_photo_to_alice(tree, daemon, people) -> None:
    alice = people["nca_alice"]
    link = tree["share"] / "alice" / "l"
    link.symlink_to(tree["share"] / "bob" / "trip")
    try:
        photo = str(link / tree["trip"][0].name)
        assert alice.run(lambda: os.close(os.open(photo, os.O_RDONLY)) or 0).code != 0  # the kernel says no
        ran = like(alice, tree, photo)
        assert ran.code == 1 and REFUSED in ran.err and ran.out == b"", ran
        ran = like(alice, tree, photo, raw=True)
        assert ran.out.startswith(b"forbidden cannot use") and b"you may not read it" in ran.out, ran
        # The same link to a folder of her own: nasclip-query resolves it as alice, so it works.
        link.unlink()
        link.symlink_to(tree["share"] / "alice" / "own")
        ran = like(alice, tree, str(link / tree["own"][0].name))
        assert ran.code == 0 and str(tree["own"][0]).encode() in ran.out, ran
        # The raw protocol never follows a link, even one alice could follow herself.
        ran = like(alice, tree, str(link / tree["own"][0].name), raw=True)
        assert ran.out.startswith(b"forbidden"), ran
        # root is told why.
        reply = daemon.request(op="search", image=str(link / tree["own"][0].name))
        assert reply["error"]["code"] == "bad_request" and "symbolic link" in reply["error"]["message"], reply
    finally:
        link.unlink(missing_ok=True)


def test_a_symlinked_photo_and_dotdot_are_refused(tree, daemon, people) -> None:
    alice = people["nca_alice"]
    link = tree["share"] / "alice" / "own" / "looks-mine.jpg"
    link.symlink_to(tree["trip"][0])
    try:
        for image in (str(link), f"{tree['share']}/alice/../bob/trip/{tree['trip'][0].name}",
                      f"{tree['share']}/alice/own/../own/{tree['own'][0].name}"):
            ran = like(alice, tree, image, raw=True)
            assert ran.out.startswith(b"forbidden"), (image, ran)
        ran = like(alice, tree, str(tree["own"][1]))
        assert ran.code == 0 and ran.out.split(b"\n")[0] == str(tree["own"][1]).encode(), ran  # her own: fine
    finally:
        link.unlink()


def test_results_through_a_folder_swapped_for_a_link_are_hidden(tree, people) -> None:
    """A catalog path alice/x/t-0000.jpg, indexed while x was her folder, now leads into bob's folder."""
    alice = people["nca_alice"]
    swapped = tree["share"] / "alice" / "x"
    swapped.symlink_to(tree["share"] / "bob" / "trip")
    try:
        path = swapped / tree["trip"][0].name
        check = AccessCheck(Peer(0, alice.uid, alice.gid, alice.groups))
        assert alice.run(lambda: os.close(os.open(path, os.O_RDONLY)) or 0).code != 0
        assert not check.may_read(path)
        (tree["share"] / "bob").chmod(0o755)  # bob opens his folder: the kernel and nasclip now agree she may
        try:
            assert alice.run(lambda: os.close(os.open(path, os.O_RDONLY)) or 0).code == 0
            assert AccessCheck(check.peer).may_read(path)
        finally:
            (tree["share"] / "bob").chmod(0o700)
    finally:
        swapped.unlink()


# ---------------------------------------------------------------------- open_nofollow itself


def test_open_nofollow_walks_without_links_and_shows_every_folder(tmp_path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f.jpg").write_bytes(b"photo")
    (tmp_path / "link").symlink_to(tmp_path / "a")
    seen: list[int] = []
    fd = open_nofollow(str(tmp_path / "a" / "b" / "f.jpg"), on_folder=lambda fd, st: seen.append(st.st_ino))
    try:
        assert os.read(fd, 10) == b"photo"
    finally:
        os.close(fd)
    folders = [Path("/"), *reversed((tmp_path / "a" / "b").parents[:-1]), tmp_path / "a" / "b"]
    assert seen == [os.stat(f).st_ino for f in folders]  # "/", every folder down to b, in order
    with pytest.raises(PathRefused, match="symbolic link"):
        open_nofollow(str(tmp_path / "link" / "b" / "f.jpg"))
    (tmp_path / "a" / "b" / "g.jpg").symlink_to("f.jpg")
    with pytest.raises(PathRefused, match="symbolic link"):
        open_nofollow(str(tmp_path / "a" / "b" / "g.jpg"))
    with pytest.raises(PathRefused, match=r"'\.\.'"):
        open_nofollow(str(tmp_path / "a" / ".." / "a" / "b" / "f.jpg"))
    # Relative to a base, which may itself be reached through a link (a share root set up that way).
    os.close(open_nofollow("b/f.jpg", base=str(tmp_path / "link")))
    with pytest.raises(PathRefused, match="not below"):
        open_nofollow(str(tmp_path / "a" / "b" / "f.jpg"), base=str(tmp_path / "link"))
    with pytest.raises(OSError) as info:
        open_nofollow(str(tmp_path / "a" / "b" / "f.jpg" / "x"))
    assert info.value.errno == errno.ENOTDIR

    def refuse(fd: int, st: os.stat_result) -> None:
        if st.st_ino == os.stat(tmp_path / "a").st_ino:
            raise PermissionError(errno.EACCES, "the caller says no")
    with pytest.raises(PermissionError, match="the caller says no"):
        open_nofollow(str(tmp_path / "a" / "b" / "f.jpg"), on_folder=refuse)
