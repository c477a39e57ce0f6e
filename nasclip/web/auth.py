"""Who is asking the web front end: sessions, login rate limits, the trusted proxy, the Peer.

A login gives a random 256-bit token in an HttpOnly, SameSite=Strict cookie
(Secure under TLS). The server keeps only the token's SHA-256, so the
dictionary lookup leaks nothing about a token's bytes and a memory dump
holds no usable cookie. Sessions end ``web.session_hours`` after login or
``web.idle_hours`` after their last use, and at logout; they live in memory,
so a restart logs everybody out (the page just asks again).

Failed logins are counted per user name and per client address over
``web.login_window`` seconds; past ``web.login_attempts`` (or
``web.login_attempts_per_address``) the next attempt is refused before its
password is even hashed, until the window has passed. Both tables are
bounded, so a flood of names or addresses cannot grow the daemon.

Everything takes a clock: the unit tests move time instead of sleeping.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable

from ..config import WebConfig
from ..query.access import Peer, groups_of
from .passwords import Account

Clock = Callable[[], float]
MAX_SESSIONS = 10_000
MAX_TRACKED = 10_000  # user names and addresses whose failures are remembered
COOKIE = "nasclip_session"


def peer_of_account(account: Account) -> Peer:
    """The account as the access code sees a socket client: uid, primary and supplementary groups."""
    return Peer(0, account.uid, account.gid, groups_of(account.uid, account.gid))


@dataclass
class Session:
    account: Account
    credential: str  # the password hash it logged in with: a new password (or none) ends the session
    created: float
    last_used: float


def _key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class Sessions:
    """Logged-in browsers, by the hash of their cookie's token."""

    def __init__(self, config: WebConfig, clock: Clock = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self._items: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, account: Account, credential: str) -> str:
        """A new session's token (what the cookie carries)."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            self._items[_key(token)] = Session(account, credential, now, now)
            while len(self._items) > MAX_SESSIONS:
                self._items.popitem(last=False)  # the oldest login goes first
        return token

    def get(self, token: str | None) -> Session | None:
        """The live session of a token, which counts as a use; None for no, unknown or expired tokens."""
        if not token or len(token) > 128:
            return None
        key = _key(token)
        now = self.clock()
        with self._lock:
            session = self._items.get(key)
            if session is None:
                return None
            if self._expired(session, now):
                del self._items[key]
                return None
            session.last_used = now
            return session

    def end(self, token: str | None) -> None:
        if token:
            with self._lock:
                self._items.pop(_key(token), None)

    def end_user(self, name: str) -> int:
        """End every session of a user (their password was removed or changed); how many."""
        with self._lock:
            keys = [k for k, s in self._items.items() if s.account.name == name]
            for key in keys:
                del self._items[key]
        return len(keys)

    def prune(self) -> int:
        """Forget expired sessions; how many."""
        now = self.clock()
        with self._lock:
            keys = [k for k, s in self._items.items() if self._expired(s, now)]
            for key in keys:
                del self._items[key]
        return len(keys)

    def __len__(self) -> int:
        return len(self._items)

    def users(self) -> set[str]:
        with self._lock:
            return {s.account.name for s in self._items.values()}

    def _expired(self, session: Session, now: float) -> bool:
        return (now - session.created > self.config.session_hours * 3600
                or now - session.last_used > self.config.idle_hours * 3600)


@dataclass
class _Failures:
    times: deque[float] = field(default_factory=deque)


class LoginLimiter:
    """Failed logins per user and per address within a window; bounded tables."""

    def __init__(self, config: WebConfig, clock: Clock = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self._users: OrderedDict[str, _Failures] = OrderedDict()
        self._addresses: OrderedDict[str, _Failures] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, user: str, address: str) -> float:
        """0 if a login may be tried now, else the seconds until it may."""
        now = self.clock()
        with self._lock:
            waits = [self._wait(self._users, user, self.config.login_attempts, now),
                     self._wait(self._addresses, address, self.config.login_attempts_per_address, now)]
        return max(waits)

    def failed(self, user: str, address: str) -> None:
        now = self.clock()
        with self._lock:
            for table, key in ((self._users, user), (self._addresses, address)):
                entry = table.get(key)
                if entry is None:
                    entry = table[key] = _Failures()
                    while len(table) > MAX_TRACKED:
                        table.popitem(last=False)
                table.move_to_end(key)
                entry.times.append(now)
                self._trim(entry, now)

    def succeeded(self, user: str) -> None:
        """A right password clears the user's count (not the address's: one good account must not hide guessing)."""
        with self._lock:
            self._users.pop(user, None)

    def prune(self) -> None:
        now = self.clock()
        with self._lock:
            for table in (self._users, self._addresses):
                for key in [k for k, e in table.items() if not self._trim(e, now)]:
                    del table[key]

    def _trim(self, entry: _Failures, now: float) -> int:
        window = self.config.login_window
        while entry.times and now - entry.times[0] >= window:
            entry.times.popleft()
        return len(entry.times)

    def _wait(self, table: OrderedDict[str, _Failures], key: str, allowed: int, now: float) -> float:
        entry = table.get(key)
        if entry is None or self._trim(entry, now) < allowed:
            return 0.0
        # Refused until enough of the counted failures have left the window.
        return entry.times[len(entry.times) - allowed] + self.config.login_window - now
