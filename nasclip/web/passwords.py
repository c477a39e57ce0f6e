"""Web passwords of the NAS's own users: scrypt hashes in one 0600 file under state_dir.

Accounts are system accounts: ``nasclip web passwd USER`` gives an existing
user (never root: root would see every photo) a web password, and a login
becomes that user's uid and groups, judged by the same access code as the
socket. Only a memory-hard hash is stored (scrypt, N=2^15, r=8: 32 MiB and
tens of milliseconds per guess, which is what makes a stolen file slow to
attack). The file belongs to the owner of state_dir, whoever runs the
command (usually root for the daemon's account), so nasclipd can read it;
it is written whole to a temporary file and renamed, so a reader never sees
half of it. The daemon re-reads it when its mtime or size changes: a new
password works at once, a removed user cannot log in again.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import json
import os
import pwd
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import NasclipError

FILE_NAME = "web-users.json"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 15, 8, 1
SCRYPT_MAXMEM = 64 << 20  # N=2^15, r=8 needs 32 MiB; OpenSSL's default ceiling is just below it
MIN_LENGTH, MAX_LENGTH = 8, 1024
FORMAT = 1


@dataclass(frozen=True)
class Cost:
    """scrypt's parameters (tests may not lower them: the stored hash names its own)."""

    n: int = SCRYPT_N
    r: int = SCRYPT_R
    p: int = SCRYPT_P


def hash_password(password: str, cost: Cost = Cost()) -> str:
    """'scrypt$N$r$p$salt$hash' (base64) of password, with a fresh random salt."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, cost)
    return "$".join(["scrypt", str(cost.n), str(cost.r), str(cost.p), _b64(salt), _b64(digest)])


def verify_password(password: str, stored: str) -> bool:
    """True if password matches the stored hash; constant-time in the compared bytes, False if malformed."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        cost = Cost(int(n), int(r), int(p))
        expected = base64.b64decode(digest)
        if kind != "scrypt" or not (2 <= cost.n <= 1 << 20 and 1 <= cost.r <= 32 and 1 <= cost.p <= 16):
            return False
        got = _scrypt(password, base64.b64decode(salt), cost)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


# Checked for unknown users too, so that the answer takes as long whether the user exists or not.
_DUMMY = "scrypt$32768$8$1$" + "A" * 22 + "==$" + "A" * 43 + "="


def _scrypt(password: str, salt: bytes, cost: Cost) -> bytes:
    return hashlib.scrypt(password.encode("utf-8", "surrogatepass"), salt=salt, n=cost.n, r=cost.r, p=cost.p,
                          maxmem=SCRYPT_MAXMEM, dklen=32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def check_new_password(password: str) -> None:
    """NasclipError saying why a new password is refused."""
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise NasclipError(f"a web password needs {MIN_LENGTH} to {MAX_LENGTH} characters")
    if password != password.strip():
        raise NasclipError("a web password may not start or end with spaces")


@dataclass(frozen=True)
class Account:
    """A system account as the access code needs it."""

    name: str
    uid: int
    gid: int


def system_account(name: str) -> Account | None:
    """The system user of this name, if it exists and may have a web login (not root)."""
    try:
        entry = pwd.getpwnam(name)
    except (KeyError, ValueError):  # ValueError: a NUL in the name
        return None
    if entry.pw_uid == 0:
        return None
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid)


class PasswordFile:
    """The web users' hashes in state_dir; read by nasclipd, written by `nasclip web`."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._users: dict[str, str] = {}

    def users(self) -> dict[str, str]:
        """{user: hash}, re-read when the file changed; {} when there is none."""
        with self._lock:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                self._seen, self._users = None, {}
                return {}
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
            if key != self._seen:
                self._users = self._read()
                self._seen = key
            return dict(self._users)

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_bytes()[: 16 << 20])
            users = data["users"]
            if data.get("format") != FORMAT or not isinstance(users, dict):
                raise ValueError("unknown format")
            return {str(k): str(v) for k, v in users.items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise NasclipError(f"{self.path}: cannot read the web passwords ({exc}); set them again with "
                               "`nasclip web passwd USER`") from None

    def check(self, user: str, password: str) -> tuple[Account, str] | None:
        """(account, its stored hash) if user has a web password and this is it; None otherwise.

        As slow for a user without a password as for a wrong one.
        """
        stored = self.users().get(user)
        ok = verify_password(password, stored or _DUMMY)
        account = system_account(user) if ok and stored is not None else None
        return (account, stored) if account is not None and stored is not None else None

    # ------------------------------------------------------------------ writing (the CLI)

    def set(self, user: str, password: str) -> None:
        if system_account(user) is None:
            raise NasclipError(f"there is no system user '{user}' (or it is root, which has no web login); "
                               "web accounts are the NAS's own users")
        check_new_password(password)
        self._update(lambda users: users.__setitem__(user, hash_password(password)))

    def remove(self, user: str) -> bool:
        removed: list[str] = []
        self._update(lambda users: removed.append(user) if users.pop(user, None) is not None else None)
        return bool(removed)

    def _update(self, change: Callable[[dict[str, str]], object]) -> None:
        folder = self.path.parent
        if not folder.is_dir():
            raise NasclipError(f"the state directory {folder} does not exist yet: start nasclipd once, or create it "
                               "as README says")
        owner = os.stat(folder)
        # One writer at a time: two `nasclip web passwd` at once must not lose one of them.
        lock = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            users = self._read() if self.path.exists() else {}
            change(users)
            data = json.dumps({"format": FORMAT, "users": dict(sorted(users.items()))}, indent=1).encode()
            temp = folder / f".{FILE_NAME}.{os.getpid()}.tmp"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                try:
                    os.fchmod(fd, 0o600)
                    if os.geteuid() == 0:
                        os.fchown(fd, owner.st_uid, owner.st_gid)  # nasclipd runs as the state directory's owner
                    os.write(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.rename(temp, self.path)
            except BaseException:
                temp.unlink(missing_ok=True)
                raise
        finally:
            os.close(lock)
