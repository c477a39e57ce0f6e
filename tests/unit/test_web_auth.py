"""Web passwords, sessions and login rate limits: the real scrypt, the real file, time moved by hand."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest

from nasclip.config import WebConfig
from nasclip.errors import NasclipError
from nasclip.web.auth import MAX_SESSIONS, LoginLimiter, Sessions, peer_of_account
from nasclip.web.passwords import FILE_NAME, Account, Cost, PasswordFile, hash_password, verify_password


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def some_user() -> str:
    """An existing system user other than root (Debian always has 'nobody')."""
    return pwd.getpwuid(65534).pw_name


def test_scrypt_hashes_verify_only_the_right_password_and_are_salted() -> None:
    cheap = Cost(n=1 << 10)
    first, second = hash_password("correct horse", cheap), hash_password("correct horse", cheap)
    assert first != second  # a fresh salt each time
    assert first.startswith("scrypt$1024$8$1$")
    assert verify_password("correct horse", first) and verify_password("correct horse", second)
    assert not verify_password("correct horsE", first)
    assert not verify_password("", first)
    for broken in ("", "scrypt$", "md5$1$2$3$4$5", first.replace("scrypt", "bcrypt"), "scrypt$1$8$1$AA==$AA==",
                   "scrypt$99999999999$8$1$AA==$AA==", first[:-8]):
        assert not verify_password("correct horse", broken), broken


def test_the_default_cost_is_memory_hard() -> None:
    stored = hash_password("a long enough password")
    _, n, r, p, _, _ = stored.split("$")
    assert 128 * int(n) * int(r) >= 32 << 20  # bytes scrypt needs per guess
    assert verify_password("a long enough password", stored)


def test_the_password_file_is_private_reread_when_changed_and_refuses_unknown_users(tmp_path: Path) -> None:
    passwords = PasswordFile(tmp_path)
    user = some_user()
    assert passwords.users() == {}
    assert passwords.check(user, "whatever-pw") is None
    passwords.set(user, "first-password")
    path = tmp_path / FILE_NAME
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text())["users"][user].startswith("scrypt$")
    checked = passwords.check(user, "first-password")
    assert checked is not None and checked[0].name == user and checked[0].uid == 65534
    assert passwords.check(user, "wrong-password") is None
    reader = PasswordFile(tmp_path)  # the daemon's own copy sees later changes
    assert reader.check(user, "first-password") is not None
    passwords.set(user, "second-password")
    assert reader.check(user, "first-password") is None and reader.check(user, "second-password") is not None
    assert passwords.remove(user) and not passwords.remove(user)
    assert reader.users() == {}
    with pytest.raises(NasclipError, match="no system user 'nca_no_such_user'"):
        passwords.set("nca_no_such_user", "long-enough-pw")
    with pytest.raises(NasclipError, match="root"):
        passwords.set("root", "long-enough-pw")
    with pytest.raises(NasclipError, match="8 to 1024 characters"):
        passwords.set(user, "short")
    assert [p.name for p in tmp_path.iterdir()] == [FILE_NAME]  # no temporary file left behind


def test_a_damaged_password_file_is_reported_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_text("{not json")
    with pytest.raises(NasclipError, match="nasclip web passwd USER"):
        PasswordFile(tmp_path).users()
    with pytest.raises(NasclipError, match="does not exist yet"):
        PasswordFile(tmp_path / "missing").set(some_user(), "long-enough-pw")


def test_a_web_user_is_the_accounts_uid_and_groups() -> None:
    entry = pwd.getpwuid(65534)
    peer = peer_of_account(Account(entry.pw_name, entry.pw_uid, entry.pw_gid))
    assert (peer.uid, peer.gid) == (65534, entry.pw_gid) and entry.pw_gid in peer.groups
    assert set(os.getgrouplist(entry.pw_name, entry.pw_gid)) <= peer.groups
    assert not peer.is_root


ALICE = Account("alice", 1001, 1001)


def test_sessions_expire_after_their_lifetime_and_when_idle() -> None:
    clock = Clock()
    sessions = Sessions(WebConfig(session_hours=10, idle_hours=1), clock)
    token = sessions.create(ALICE, "hash-1")
    assert len(token) >= 43  # 256 random bits
    session = sessions.get(token)
    assert session is not None and session.account == ALICE and session.credential == "hash-1"
    for _ in range(10):  # used every 59 minutes: kept alive by use ...
        clock.now += 59 * 60
        assert sessions.get(token) is not None
    clock.now += 10 * 60 + 1  # ... but not past its lifetime of 10 hours
    assert sessions.get(token) is None
    idle = sessions.create(ALICE, "hash-1")
    clock.now += 3601
    assert sessions.get(idle) is None
    assert len(sessions) == 0


def test_sessions_are_found_only_by_their_exact_token_and_end_at_logout() -> None:
    sessions = Sessions(WebConfig(), Clock())
    token = sessions.create(ALICE, "h")
    for wrong in (None, "", token[:-1], token + "x", token.upper(), "x" * 5000):
        assert sessions.get(wrong) is None
    assert token not in repr(vars(sessions))  # only its hash is kept
    other = sessions.create(Account("bob", 1002, 1002), "h")
    sessions.end(token)
    assert sessions.get(token) is None and sessions.get(other) is not None
    assert sessions.end_user("bob") == 1 and sessions.get(other) is None


def test_the_session_table_is_bounded_and_pruned() -> None:
    clock = Clock()
    sessions = Sessions(WebConfig(idle_hours=1), clock)
    first = sessions.create(ALICE, "h")
    for _ in range(MAX_SESSIONS):
        sessions.create(ALICE, "h")
    assert len(sessions) == MAX_SESSIONS and sessions.get(first) is None  # the oldest went first
    clock.now += 3601
    assert sessions.prune() == MAX_SESSIONS and len(sessions) == 0


def test_failed_logins_are_limited_per_user_and_per_address_within_the_window() -> None:
    clock = Clock()
    limiter = LoginLimiter(WebConfig(login_attempts=3, login_attempts_per_address=5, login_window=600), clock)
    for _ in range(3):
        assert limiter.retry_after("alice", "10.0.0.1") == 0
        limiter.failed("alice", "10.0.0.1")
        clock.now += 10
    wait = limiter.retry_after("alice", "10.0.0.2")  # the user is locked from any address
    assert wait == pytest.approx(600 - 30)
    assert limiter.retry_after("bob", "10.0.0.1") == 0  # 3 of the address's 5
    limiter.failed("bob", "10.0.0.1")
    limiter.failed("carol", "10.0.0.1")
    assert limiter.retry_after("dave", "10.0.0.1") > 0  # the address is locked for every name
    assert limiter.retry_after("dave", "10.0.0.9") == 0
    clock.now += wait + 0.001  # the first failure left the window
    assert limiter.retry_after("alice", "10.0.0.2") == 0
    limiter.succeeded("bob")
    limiter.prune()
    clock.now += 600
    limiter.prune()
    assert limiter.retry_after("alice", "10.0.0.1") == 0 and limiter.retry_after("dave", "10.0.0.1") == 0


def test_a_right_password_clears_the_users_count_but_not_the_addresses() -> None:
    clock = Clock()
    limiter = LoginLimiter(WebConfig(login_attempts=2, login_attempts_per_address=3, login_window=600), clock)
    limiter.failed("alice", "10.0.0.1")
    limiter.succeeded("alice")
    limiter.failed("alice", "10.0.0.1")
    assert limiter.retry_after("alice", "10.0.0.5") == 0  # one failure since the success
    limiter.failed("mallory", "10.0.0.1")
    assert limiter.retry_after("anyone", "10.0.0.1") > 0  # three from the address, success or not
