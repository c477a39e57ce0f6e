"""Who is asking, and what they may see.

The query server learns each client's uid and gid from ``SO_PEERCRED`` at
connect time and returns only files that this uid, with its groups, could
open for reading itself, judged by ownership and mode bits of the file and
of every folder above it up to the share root (search permission). root sees
everything. POSIX ACLs, SMB share permissions and NFS export rules are not
consulted: see docs/protocol.md, "Limits".
"""

from __future__ import annotations

import os
import pwd
import socket
import stat
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Peer:
    """The process at the other end of a Unix socket."""

    pid: int
    uid: int
    gid: int
    groups: frozenset[int]

    @property
    def is_root(self) -> bool:
        return self.uid == 0


_GROUP_CACHE: dict[tuple[int, int], tuple[float, frozenset[int]]] = {}
_GROUP_LOCK = threading.Lock()
GROUP_TTL = 60.0


def groups_of(uid: int, gid: int) -> frozenset[int]:
    """The primary and supplementary groups of uid, cached for a minute."""
    now = time.monotonic()
    with _GROUP_LOCK:
        cached = _GROUP_CACHE.get((uid, gid))
        if cached and now - cached[0] < GROUP_TTL:
            return cached[1]
    try:
        name = pwd.getpwuid(uid).pw_name
        groups = frozenset(os.getgrouplist(name, gid)) | {gid}
    except KeyError:  # a uid with no passwd entry has only its primary group
        groups = frozenset({gid})
    with _GROUP_LOCK:
        _GROUP_CACHE[(uid, gid)] = (now, groups)
    return groups


def peer_of(conn: socket.socket) -> Peer:
    """Credentials of the connected client (Linux SO_PEERCRED)."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, gid, groups_of(uid, gid))


def self_peer() -> Peer:
    """This process as a peer (for in-process callers such as the demo)."""
    return Peer(os.getpid(), os.getuid(), os.getgid(), groups_of(os.getuid(), os.getgid()))


def _allowed(st: os.stat_result, peer: Peer, owner_bit: int, group_bit: int, other_bit: int) -> bool:
    # POSIX: the owner class applies to the owner even if group/other bits would allow more.
    if st.st_uid == peer.uid:
        return bool(st.st_mode & owner_bit)
    if st.st_gid in peer.groups:
        return bool(st.st_mode & group_bit)
    return bool(st.st_mode & other_bit)


class AccessCheck:
    """Read-permission checks for one request; folder results are cached within it."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self._folders: dict[Path, bool] = {}

    def may_read(self, path: Path, root: Path) -> bool:
        """True if peer could open path for reading (and reach it from root)."""
        if self.peer.is_root:
            return True
        try:
            st = os.stat(path)
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode) or not _allowed(st, self.peer, stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH):
            return False
        folder = path.parent
        chain = []
        while True:
            chain.append(folder)
            if folder == root or folder == folder.parent:
                break
            folder = folder.parent
        return all(self._may_enter(f) for f in chain)

    def _may_enter(self, folder: Path) -> bool:
        known = self._folders.get(folder)
        if known is None:
            try:
                st = os.stat(folder)
                known = _allowed(st, self.peer, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH)
            except OSError:
                known = False
            self._folders[folder] = known
        return known
