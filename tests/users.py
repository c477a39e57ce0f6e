"""Real users and groups for permission tests, and running code as one of them.

Accounts are created with useradd/groupadd, named ``nca_*`` so that they can
never collide with a real account, and removed again by the fixture that
made them, also after a failed test. Code runs as a user in a forked child
that drops its uid and groups: exec is not needed, and would be impossible
where the interpreter lives below a folder the user cannot enter.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from conftest import DaemonProcess, write_config

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates users and switches to them")


class Ran:
    """What a child process wrote and how it exited."""

    def __init__(self, code: int, out: bytes, err: bytes) -> None:
        self.code, self.out, self.err = code, out, err

    @property
    def json(self):
        return json.loads(self.out)

    def __repr__(self) -> str:
        return f"exit {self.code}\nstdout: {self.out[:2000]!r}\nstderr: {self.err[-2000:]!r}"


def as_user(uid: int, gid: int, groups: list[int], body: Callable[[], int]) -> Ran:
    """Run body() in a forked child with these credentials; its stdout/stderr are captured."""
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()  # opened before the uid drop
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        code = 99
        try:
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            os.setgroups(groups)
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            try:
                code = body()
            except SystemExit as exc:  # argparse
                code = exc.code if isinstance(exc.code, int) else 1
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    out.seek(0)
    err.seek(0)
    return Ran(os.waitstatus_to_exitcode(status), out.read(), err.read())


@dataclass(frozen=True)
class User:
    """A test account: its name, uid, primary gid and every group it is in."""

    name: str
    uid: int
    gid: int
    groups: frozenset[int]

    def run(self, body: Callable[[], int]) -> Ran:
        return as_user(self.uid, self.gid, sorted(self.groups), body)


def _quiet(*command: str) -> None:
    subprocess.run(command, check=False, capture_output=True)


def _create(groups: dict[str, list[str]], users: dict[str, list[str]]) -> dict[str, User | int]:
    for name in users:  # left over from an interrupted run
        _quiet("userdel", name)
    for name in groups:
        _quiet("groupdel", name)
    made: dict[str, User | int] = {}
    for name in groups:
        subprocess.run(["groupadd", name], check=True, capture_output=True)
        made[name] = grp.getgrnam(name).gr_gid
    for name, member_of in users.items():
        # -U: a primary group of its own, so group rights come only from the groups named here.
        command = ["useradd", "-M", "-U", "-s", "/usr/sbin/nologin"]
        if member_of:
            command += ["-G", ",".join(member_of)]
        subprocess.run(command + [name], check=True, capture_output=True)
        entry = pwd.getpwnam(name)
        made[name] = User(name, entry.pw_uid, entry.pw_gid,
                          frozenset(os.getgrouplist(name, entry.pw_gid)) | {entry.pw_gid})
    return made


def _remove(groups: dict[str, list[str]], users: dict[str, list[str]]) -> None:
    for name in users:
        _quiet("userdel", name)  # also removes the user's own group
    for name in groups:
        _quiet("groupdel", name)


def accounts(groups: dict[str, list[str]], users: dict[str, list[str]]) -> Iterator[dict[str, User | int]]:
    """For a fixture: create the groups, then users in the groups listed; yield {name: User or gid}; remove all."""
    assert all(n.startswith("nca_") for n in [*groups, *users]), "test accounts are named nca_*"
    try:
        yield _create(groups, users)
    finally:
        _remove(groups, users)


def daemon_for_users(folder: Path, shares: dict[str, Path], run: Path, prefix: list[str] | None = None,
                     **overrides: Any) -> DaemonProcess:
    """nasclipd (not started yet) with its socket in run, a folder made for it that every user may enter.

    The socket is 0666, so that the test users may connect; the config is written to folder.
    """
    run.mkdir(mode=0o755, exist_ok=True)
    query = {"socket_group": None, "socket_mode": "0666", **overrides.pop("query", {})}
    config = write_config(folder / "nasclip.yaml", shares, socket=str(run / "query.sock"), query=query, **overrides)
    return DaemonProcess(config, prefix=prefix)


def open_folder(prefix: str) -> Path:
    """A new folder every user may enter (pytest's own are 0700), for shares and sockets others use."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    return base


def request_as(uid: int, gid: int, socket: Path, **request: Any) -> dict:
    """One protocol request sent by a process with this uid and gid (no other groups); the reply."""
    from nasclip.query.client import Client

    def body() -> int:
        with Client(socket) as client:
            print(json.dumps(client.request(**request)))
        return 0
    ran = as_user(uid, gid, [], body)
    assert ran.code == 0, ran
    return ran.json
