"""One user cannot lock the others out: connections are limited per uid (issue 12, finding 8).

Peer credentials come from SO_PEERCRED, so the flood really comes from
another uid: a forked child that drops to nca_flood opens the connections
and holds them without a word.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

import pytest
from conftest import make_scenes, wait_until
from users import accounts, daemon_for_users, needs_root

from nasclip.query.client import Client

pytestmark = needs_root
PER_USER = 8
FLOOD = 200


@pytest.fixture(scope="module")
def people():
    yield from accounts({}, {"nca_flood": [], "nca_dave": []})


def flood(uid: int, gid: int, path: Path) -> tuple[int, int, int]:
    """(pid, ready pipe, go-on pipe) of a child holding FLOOD silent connections as uid.

    Once told to go on it writes how many of them got which reply as JSON to the ready pipe and exits.
    """
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        code = 1
        try:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            held = []
            for _ in range(FLOOD):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(str(path))
                held.append(sock)
            os.write(ready_w, b"r")
            os.read(go_r, 1)
            outcomes: dict[str, int] = {}
            for sock in held:
                sock.settimeout(0.01)
                try:
                    line = sock.makefile("rb").readline()
                    key = json.loads(line)["error"]["code"] if line else "closed"
                except (socket.timeout, OSError):
                    key = "held"
                outcomes[key] = outcomes.get(key, 0) + 1
            os.write(ready_w, json.dumps(outcomes).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(go_r)
    return pid, ready_r, go_w


def test_two_hundred_silent_connections_of_one_user_leave_the_others_served(people) -> None:
    base = Path(tempfile.mkdtemp(prefix="nasclip-limit-"))  # not below pytest's 0700 tmp folder
    base.chmod(0o755)
    make_scenes(base / "photos", 4, seed=61)
    daemon = daemon_for_users(base, {"photos": base / "photos"}, base / "run", query={"timeout": 30}).start()
    children: list[int] = []
    try:
        wait_until(lambda: daemon.status()["photos"]["indexed"] == 4, 60, interval=0.2, what="indexing")
        hog, dave = people["nca_flood"], people["nca_dave"]
        pid, ready, go = flood(hog.uid, hog.gid, daemon.socket)
        children.append(pid)
        assert os.read(ready, 1) == b"r"
        time.sleep(0.5)  # let the server accept them all
        started = time.monotonic()
        ran = dave.run(lambda: print(json.dumps(Client(daemon.socket).request(op="search", text="a red circle",
                                                                               k=2))) or 0)
        took = time.monotonic() - started
        assert ran.code == 0 and ran.json["ok"] and len(ran.json["results"]) == 2, ran
        assert took < 2.0, took
        os.write(go, b"g")
        outcomes = json.loads(os.read(ready, 4096))
        os.waitpid(children.pop(), 0)
        assert outcomes == {"held": PER_USER, "busy": FLOOD - PER_USER}, outcomes
        busy = daemon.request(op="status")["status"]["queries"]["busy"]
        assert busy >= FLOOD - PER_USER
    finally:
        for pid in children:  # a failed assertion left it holding its connections (and its user in use)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        daemon.stop()
        shutil.rmtree(base, ignore_errors=True)
