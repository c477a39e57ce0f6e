"""Counts and folder names shown to a user describe only what that user may see (issue 12, finding 12).

nasclipd runs as the service account nca_svc here (setpriv), reading bob's
private folder through the README's recipe (an ACL for the service), so that
a folder the service cannot read exists too. alice must learn from
``examined``, ``status`` and ``scan`` neither that bob's folder is full nor
the names inside it; bob and root still see their own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import DaemonProcess, make_scenes, wait_until
from users import User, accounts, daemon_for_users, needs_root

from nasclip.query.client import Client

pytestmark = [needs_root, pytest.mark.skipif(shutil.which("setfacl") is None or shutil.which("setpriv") is None,
                                             reason="needs setfacl (apt package acl) and setpriv")]
BOB_PHOTOS = 6


@pytest.fixture(scope="module")
def people():
    yield from accounts({}, {"nca_alice": [], "nca_bob": [], "nca_svc": []})


@pytest.fixture(scope="module")
def setup(people):
    base = Path(tempfile.mkdtemp(prefix="nasclip-counts-"))  # not below pytest's 0700 tmp folder
    base.chmod(0o755)
    share = base / "photos"
    bob, svc = people["nca_bob"], people["nca_svc"]
    make_scenes(share / "alice", 2, seed=71, prefix="a")
    make_scenes(share / "bob", BOB_PHOTOS, seed=72, prefix="b")
    (share / "bob" / "private-2019").mkdir()
    for root, folders, files in os.walk(share / "bob"):
        for name in folders + files:
            os.chown(Path(root) / name, bob.uid, bob.gid)
    os.chown(share / "bob", bob.uid, bob.gid)
    (share / "bob").chmod(0o700)
    subprocess.run(["setfacl", "-R", "-m", "u:nca_svc:rX", str(share / "bob")], check=True)
    (share / "bob" / "private-2019").chmod(0o700)
    subprocess.run(["setfacl", "-b", str(share / "bob" / "private-2019")], check=True)  # not even the service
    state, run = base / "state", base / "run"
    for folder in (state, run):
        folder.mkdir(mode=0o755)
        os.chown(folder, svc.uid, svc.gid)
    daemon = daemon_for_users(base, {"photos": share}, run, state_dir=str(state),
                              prefix=["setpriv", f"--reuid={svc.uid}", f"--regid={svc.gid}", "--clear-groups"])
    daemon.start()
    wait_until(lambda: daemon.status()["photos"]["indexed"] == 2 + BOB_PHOTOS
               and daemon.status()["shares"][0]["last_scan"], 60, interval=0.2, what="indexing")
    yield {"share": share, "daemon": daemon}
    daemon.stop()
    shutil.rmtree(base, ignore_errors=True)


def ask(user: User, daemon: DaemonProcess, **request) -> dict:
    def body() -> int:
        with Client(daemon.socket) as client:
            print(json.dumps(client.request(**request)))
        return 0
    ran = user.run(body)
    assert ran.code == 0, ran
    return ran.json


def test_a_search_in_bobs_folder_examines_nothing_alice_may_see(setup, people) -> None:
    share, daemon = setup["share"], setup["daemon"]
    root = daemon.request(op="search", text="a red circle", k=3, path_prefix=str(share / "bob"))
    assert len(root["results"]) == 3 and root["examined"] >= 3
    reply = ask(people["nca_alice"], daemon, op="search", text="a red circle", k=3, path_prefix=str(share / "bob"))
    assert reply["ok"] and reply["results"] == [] and reply["examined"] == 0, reply
    reply = ask(people["nca_alice"], daemon, op="search", text="a red circle", k=10)
    assert len(reply["results"]) == 2 and reply["examined"] == 2, reply  # bob's 6 are not counted
    reply = ask(people["nca_bob"], daemon, op="search", text="a red circle", k=10, path_prefix=str(share / "bob"))
    assert len(reply["results"]) == BOB_PHOTOS and reply["examined"] == BOB_PHOTOS, reply


def test_status_and_scan_tell_alice_nothing_about_bobs_folder(setup, people) -> None:
    daemon = setup["daemon"]
    hidden = "bob/private-2019"
    as_root = daemon.status()["shares"][0]
    assert hidden in as_root["unreadable_folders"] and as_root["last_scan"]["files"] == 2 + BOB_PHOTOS
    as_bob = ask(people["nca_bob"], daemon, op="status")["status"]["shares"][0]
    assert hidden in as_bob["unreadable_folders"]  # his own folder: he can list it
    as_alice = ask(people["nca_alice"], daemon, op="status")["status"]["shares"][0]
    assert as_alice["unreadable_folders"] == [], as_alice
    assert "files" not in as_alice["last_scan"] and "folders" not in as_alice["last_scan"], as_alice
    assert "settling" not in as_alice, as_alice
    scan = ask(people["nca_alice"], daemon, op="scan")
    assert scan["ok"] and scan["scanning"] == ["photos"] and "retrying" not in scan, scan
    assert "retrying" in daemon.request(op="scan")
