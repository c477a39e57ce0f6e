"""POSIX ACLs decide who sees a photo: real users, real setfacl, the kernel as the oracle.

Every expectation here is checked against what the kernel itself lets each
user do (a forked child running as that user tries to open the file), so a
tree whose ACLs make no difference cannot pass. ``nca_svc`` stands for the
service account that README step 5 grants read access with setfacl.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import DEMO_MODEL, make_scenes, wait_until, write_config
from users import User, accounts, daemon_for_users, needs_root

from nasclip.cli import query
from nasclip.cli.doctor import ServiceUser, run_checks
from nasclip.config import load_config
from nasclip.errors import NasclipError
from nasclip.query import acl
from nasclip.query.access import AccessCheck, Peer

pytestmark = [needs_root, pytest.mark.skipif(shutil.which("setfacl") is None,
                                             reason="needs setfacl/getfacl (apt package acl; make test installs it)")]

USERS = ("nca_bob", "nca_dave", "nca_alice", "nca_svc")


@pytest.fixture(scope="module")
def people():
    """bob and dave in nca_users, alice in nca_other, svc in neither."""
    yield from accounts({"nca_users": [], "nca_other": []},
                        {"nca_bob": ["nca_users"], "nca_dave": ["nca_users"], "nca_alice": ["nca_other"],
                         "nca_svc": []})


def setfacl(path: Path, *args: str) -> None:
    subprocess.run(["setfacl", *args, str(path)], check=True, capture_output=True)


def peer(user: User) -> Peer:
    return Peer(0, user.uid, user.gid, user.groups)


def kernel_opens(user: User, paths: list[Path]) -> set[Path]:
    """The paths user can really open for reading, as the kernel decides."""
    def body() -> int:
        opened = []
        for path in paths:
            try:
                os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
                opened.append(str(path))
            except OSError:
                pass
        print(json.dumps(opened))
        return 0
    ran = user.run(body)
    assert ran.code == 0, ran
    return {Path(p) for p in ran.json}


def nasclip_reads(user: User, paths: list[Path], check: AccessCheck | None = None) -> set[Path]:
    check = check or AccessCheck(peer(user))
    return {p for p in paths if check.may_read(p)}


@pytest.fixture
def base():
    folder = Path(tempfile.mkdtemp(prefix="nasclip-acl-"))  # not below pytest's 0700 tmp folder
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def build_issue_tree(share: Path, people: dict) -> dict[str, Path]:
    """Every case of finding 1, plus a folder grant, the mask, and a named group."""
    make_scenes(share / "open", 7, seed=31, prefix="f")
    make_scenes(share / "bobdir", 1, seed=32, prefix="trip")
    make_scenes(share / "alicedir", 1, seed=33, prefix="gift")
    share.chmod(0o755)
    photos = sorted((share / "open").iterdir())
    files = {"bob_private": photos[0], "not_dave": photos[1], "for_alice": photos[2], "masked": photos[3],
             "for_group": photos[4], "plain": photos[5], "mask_off": photos[6],
             "bob_trip": next((share / "bobdir").iterdir()), "alice_gift": next((share / "alicedir").iterdir())}
    bob, users = people["nca_bob"].uid, people["nca_users"]
    os.chown(files["bob_private"], bob, users)
    for key, mode, entries in [
        ("bob_private", 0o600, "u:nca_svc:r"),  # the issue's own: bob:users, ls shows 0640, users cannot read
        ("not_dave", 0o644, "u:nca_dave:---"),  # world-readable, but not for dave
        ("for_alice", 0o600, "u:nca_alice:r"),  # root's, shared with alice alone
        ("masked", 0o604, "u:nca_alice:rw,m::-w-"),  # the mask voids alice's read; "other" is not for her
        ("mask_off", 0o600, "u:nca_alice:r,m::---"),  # a mask of --- voids every named grant
        ("for_group", 0o600, "g:nca_users:r"),  # a named group
    ]:
        files[key].chmod(mode)
        setfacl(files[key], "-m", entries)
    files["plain"].chmod(0o644)
    # README step 5 on bob's 0700 folder: the mask becomes r-x, so ls shows group users r-x; they still cannot enter.
    os.chown(share / "bobdir", bob, users)
    (share / "bobdir").chmod(0o700)
    files["bob_trip"].chmod(0o644)
    setfacl(share / "bobdir", "-R", "-m", "u:nca_svc:rX")
    # A 0700 folder alice may pass through by a named-user x grant.
    (share / "alicedir").chmod(0o700)
    files["alice_gift"].chmod(0o644)
    setfacl(share / "alicedir", "-m", "u:nca_alice:x")
    return files


def test_the_issue_cases_agree_with_the_kernel(base, people) -> None:
    files = build_issue_tree(base / "photos", people)
    everything = list(files.values())
    bob, dave, alice = people["nca_bob"], people["nca_dave"], people["nca_alice"]
    expected = {
        bob: {"bob_private", "not_dave", "masked", "for_group", "plain", "bob_trip"},
        dave: {"masked", "for_group", "plain"},  # "masked" by its other bits: dave has no entry of his own
        alice: {"not_dave", "for_alice", "plain", "alice_gift"},
    }
    for user, keys in expected.items():
        want = {files[k] for k in keys}
        assert kernel_opens(user, everything) == want, user.name  # the tree means what it says
        assert nasclip_reads(user, everything) == want, user.name


def test_a_changed_acl_counts_at_the_next_check(base, people) -> None:
    photo = make_scenes(base, 1, seed=34, prefix="c")
    path = next(iter(photo))
    path.chmod(0o644)
    dave = people["nca_dave"]
    assert nasclip_reads(dave, [path]) == {path}
    setfacl(path, "-m", "u:nca_dave:---")
    assert nasclip_reads(dave, [path]) == set() == kernel_opens(dave, [path])
    setfacl(path, "-x", "u:nca_dave")
    assert nasclip_reads(dave, [path]) == {path} == kernel_opens(dave, [path])


# ---------------------------------------------------------------------- the parser and getfacl


def getfacl_entries(path: Path) -> set[tuple[int, int, int]]:
    """(tag, perm, id) of every entry as getfacl prints it: the parser's oracle."""
    out = subprocess.run(["getfacl", "-n", "-p", "-E", "-c", str(path)], check=True, capture_output=True,
                         text=True).stdout
    tags = {("user", False): acl.USER_OBJ, ("user", True): acl.USER, ("group", False): acl.GROUP_OBJ,
            ("group", True): acl.GROUP, ("mask", False): acl.MASK, ("other", False): acl.OTHER}
    entries = set()
    for line in out.split():
        kind, who, perms = line.split(":")
        perm = sum(bit for bit, char in zip((4, 2, 1), perms) if char != "-")
        entries.add((tags[(kind, bool(who))], perm, int(who) if who else 0xFFFFFFFF))
    return entries


def random_acl(rng: random.Random, people: dict) -> str:
    """A random setfacl -m argument over the test users and groups, with or without an explicit mask."""
    perms = ["---", "r--", "-w-", "--x", "r-x", "rw-", "rwx", "r-x"]
    parts = [f"u::{rng.choice(perms)}", f"g::{rng.choice(perms)}", f"o::{rng.choice(perms)}"]
    for name in rng.sample(USERS[:3], rng.randint(0, 3)):
        parts.append(f"u:{name}:{rng.choice(perms)}")
    for name in rng.sample(["nca_users", "nca_other"], rng.randint(0, 2)):
        parts.append(f"g:{name}:{rng.choice(perms)}")
    if rng.random() < 0.5:
        parts.append(f"m::{rng.choice(perms)}")
    return ",".join(parts)


def randomise(path: Path, rng: random.Random, people: dict) -> None:
    owner = rng.choice([0] + [people[n].uid for n in USERS[:3]])
    group = rng.choice([0, people["nca_users"], people["nca_other"]])
    os.chown(path, owner, group)
    setfacl(path, "-b")
    setfacl(path, "-m", random_acl(rng, people))


def test_the_parser_reads_what_setfacl_wrote_as_getfacl_does(base, people) -> None:
    rng = random.Random(5)
    for i in range(40):
        path = base / f"f{i}"
        path.write_bytes(b"x")
        randomise(path, rng, people)
        try:
            raw = os.getxattr(path, acl.POSIX_ACCESS)
        except OSError:  # setfacl left only the three base entries: no ACL, the mode bits say it all
            assert len(getfacl_entries(path)) == 3
            assert acl.rules_of(str(path)) == acl.MODE_ONLY
            continue
        assert {(e.tag, e.perm, e.id) for e in acl.parse_acl(raw)} == getfacl_entries(path), path
    with pytest.raises(NasclipError, match="version 3"):
        acl.parse_acl(b"\x03\x00\x00\x00")
    with pytest.raises(NasclipError, match="8-byte entries"):
        acl.parse_acl(b"\x02\x00\x00\x00\x01\x00")


def test_random_acls_on_files_and_folders_agree_with_the_kernel(base, people) -> None:
    """Files with random owners, groups and ACLs; folders likewise, each holding a world-readable file."""
    rng = random.Random(11)
    files = []
    for i in range(80):
        path = base / f"file{i}"
        path.write_bytes(b"photo")
        randomise(path, rng, people)
        files.append(path)
    for i in range(40):
        folder = base / f"dir{i}"
        folder.mkdir()
        inside = folder / "inside"
        inside.write_bytes(b"photo")
        inside.chmod(0o644)
        randomise(folder, rng, people)
        files.append(inside)
    for name in USERS[:3]:
        user = people[name]
        kernel = kernel_opens(user, files)
        assert 0 < len(kernel) < len(files), name  # the random ACLs make a difference
        assert nasclip_reads(user, files) == kernel, name


# ---------------------------------------------------------------------- NFSv4: root only


def test_nfsv4_acls_are_shown_to_root_only(base, people) -> None:
    """system.nfs4_acl cannot be set on a local file system (only an NFS client or ZFS has it), so the
    attribute is injected through AccessCheck's xattr reader; files, folders and mode bits are real."""
    share = base / "photos"
    (share / "zfs").mkdir(parents=True)
    plain, file_acl = share / "plain.jpg", share / "nfs4.jpg"
    below = share / "zfs" / "inside.jpg"
    for path in (plain, file_acl, below):
        path.write_bytes(b"photo")
        path.chmod(0o644)
    carrying = {str(file_acl), str(share / "zfs")}

    def reader(target, name: str) -> bytes:
        if name in acl.NFS4_NAMES[:1] and str(target) in carrying:
            return b"\x00\x00\x00\x01" + b"\x00" * 16  # one ACE; its content does not matter
        return acl.read_xattr(target, name)

    alice = people["nca_alice"]
    check = AccessCheck(peer(alice), reader=reader)
    assert kernel_opens(alice, [plain, file_acl, below]) == {plain, file_acl, below}  # mode bits say all may
    assert nasclip_reads(alice, [plain, file_acl, below], check) == {plain}
    assert acl.rules_of(str(file_acl), reader).kind == "unknown"
    root = AccessCheck(Peer(0, 0, 0, frozenset({0})), reader=reader)
    assert all(root.may_read(p) for p in (plain, file_acl, below))


# ---------------------------------------------------------------------- through the daemon


def test_search_results_follow_acls_end_to_end(base, people, tmp_path) -> None:
    """The issue's reproduction: nasclip-query as each user returns exactly what that user can open."""
    share = base / "photos"
    files = build_issue_tree(share, people)
    daemon = daemon_for_users(tmp_path, {"photos": share}, base / "run").start()
    try:
        wait_until(lambda: daemon.status()["photos"]["indexed"] == len(files), 60, interval=0.2,
                   what="the ACL tree to be indexed")
        for name in ("nca_bob", "nca_dave", "nca_alice"):
            user = people[name]
            ran = user.run(lambda: query.main(["--socket", str(daemon.socket), "--json", "-k", "100",
                                               "a red circle"]))
            assert ran.code == 0, ran
            shown = {Path(r["path"]) for r in ran.json["results"]}
            assert shown == kernel_opens(user, list(files.values())), name
        # A grant withdrawn between two queries counts at the second.
        alice = people["nca_alice"]
        setfacl(files["for_alice"], "-x", "u:nca_alice")
        ran = alice.run(lambda: query.main(["--socket", str(daemon.socket), "--paths", "-k", "100", "a"]))
        assert ran.code == 0 and str(files["for_alice"]).encode() not in ran.out, ran
    finally:
        daemon.stop()


# ---------------------------------------------------------------------- nasclip doctor


def test_doctor_judges_the_service_user_by_acls_and_reports_nfsv4(base, people) -> None:
    """The doctor's judgement of nca_svc (the service) must be the kernel's; NFSv4 ACLs are reported.

    The NFSv4 attribute is injected through ServiceUser's xattr reader (no local file system takes it).
    """
    shutil.copytree(DEMO_MODEL, base / "model")
    share = base / "share"
    granted, refused, search_only = share / "granted", share / "refused", share / "search-only"
    for folder in (granted, refused, search_only):
        folder.mkdir(parents=True)
    share.chmod(0o755)
    granted.chmod(0o700)
    setfacl(granted, "-m", "u:nca_svc:rx")  # root's private folder, open to the service alone
    refused.chmod(0o755)
    setfacl(refused, "-m", "u:nca_svc:---")  # open to all but the service
    search_only.chmod(0o711)  # x without r: the service could not list it
    folders = [share, granted, refused, search_only]

    def listable() -> int:
        print(json.dumps([str(f) for f in folders if not _fails(os.listdir, f)]))
        return 0
    svc = ServiceUser.lookup("nca_svc")
    assert svc is not None
    ran = people["nca_svc"].run(listable)
    assert ran.code == 0 and set(ran.json) == {str(share), str(granted)}, ran  # the kernel's answer

    config = load_config(write_config(base / "nasclip.yaml", {"photos": share}, model=str(base / "model")))
    shares = [c.line() for c in run_checks(config, svc, watch_limit=100_000) if c.topic == "share"]
    assert len(shares) == 1 and "nca_svc cannot read 2 of 4 folders" in shares[0], shares
    assert str(granted) not in shares[0]

    def reader(target, name: str) -> bytes:
        if name == "system.nfs4_acl_xdr" and str(target) == str(granted):
            return b"\x00\x00\x00\x01" + b"\x00" * 16
        return acl.read_xattr(target, name)
    shares = [c.line() for c in run_checks(config, dataclasses.replace(svc, reader=reader), watch_limit=100_000)
              if c.topic == "share"]
    assert any(re.search(rf"1 of 4 folders carry an ACL nasclip cannot evaluate, e\.g\. {re.escape(str(granted))} "
                         r"\(an NFSv4 ACL \(system\.nfs4_acl_xdr\)\): their photos are shown to root only", line)
               for line in shares), shares


def _fails(function, *args) -> bool:
    try:
        function(*args)
    except OSError:
        return True
    return False
