"""Who is asking, and what they may see.

The query server learns each client's uid and gid from ``SO_PEERCRED`` and
its supplementary groups from ``SO_PEERGROUPS``, both as they were when the
client connected. A result is shown only if that uid, with those groups,
could open the file for reading itself, judged by the ownership and mode bits
of the file and the search (x) bit of every folder above it up to ``/``.
root sees everything. POSIX ACLs, SMB share permissions and NFS export rules
are not consulted: see docs/protocol.md, "Limits".
"""

from __future__ import annotations

import errno
import os
import pwd
import socket
import stat
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# Linux <asm-generic/socket.h>; Python does not name it. Linux 4.13+.
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
# Python's getsockopt takes at most 1024 bytes: 256 groups. More falls back to the group database.
_PEERGROUPS_BYTES = 1024


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
    """The primary and supplementary groups of uid by the group database, cached for a minute."""
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


def _peer_groups(conn: socket.socket) -> frozenset[int] | None:
    """The client's own supplementary groups, or None where the kernel cannot tell."""
    try:
        raw = conn.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, _PEERGROUPS_BYTES)
    except OSError as exc:
        if exc.errno in (errno.ENOPROTOOPT, errno.ERANGE, errno.EINVAL):
            return None
        raise
    return frozenset(struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4]))


def peer_of(conn: socket.socket) -> Peer:
    """Credentials of the connected client (Linux SO_PEERCRED and SO_PEERGROUPS).

    The process's real groups are preferred to the group database: a client
    that dropped groups (a web front end, ``setpriv --clear-groups``) sees
    only what it could open itself.
    """
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    groups = _peer_groups(conn)
    return Peer(pid, uid, gid, (groups | {gid}) if groups is not None else groups_of(uid, gid))


def self_peer() -> Peer:
    """This process as a peer (for in-process callers such as the demo)."""
    return Peer(os.getpid(), os.getuid(), os.getgid(), frozenset(os.getgroups()) | {os.getgid()})


def _allowed(st: os.stat_result, peer: Peer, owner_bit: int, group_bit: int, other_bit: int) -> bool:
    # POSIX: the owner class applies to the owner even if group/other bits would allow more.
    if st.st_uid == peer.uid:
        return bool(st.st_mode & owner_bit)
    if st.st_gid in peer.groups:
        return bool(st.st_mode & group_bit)
    return bool(st.st_mode & other_bit)


class AccessCheck:
    """Read-permission checks for one request; folder answers are cached within it.

    Nothing is cached across requests, so a chmod takes effect at the next
    query.
    """

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self._folders: dict[Path, bool] = {}
        self.stats = 0

    def may_read(self, path: Path) -> bool:
        """True if peer could open the regular file at path for reading.

        A symbolic link is never readable here: nasclip does not index them,
        and a link swapped in after indexing could point anywhere.
        """
        if self.peer.is_root:
            return True
        try:
            st = os.lstat(path)
        except OSError:
            return False
        self.stats += 1
        return stat.S_ISREG(st.st_mode) and self.readable(st) and self.may_enter(path.parent)

    def readable(self, st: os.stat_result) -> bool:
        """True if the mode bits of st let peer read it (the folders above are not checked)."""
        return self.peer.is_root or _allowed(st, self.peer, stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH)

    def may_enter(self, folder: Path) -> bool:
        """True if peer may pass through folder and every folder above it (the x bit)."""
        if self.peer.is_root:
            return True
        known = self._folders.get(folder)
        if known is None:
            parent = folder.parent
            known = (parent == folder or self.may_enter(parent)) and self._enter_one(folder)
            self._folders[folder] = known
        return known

    def _enter_one(self, folder: Path) -> bool:
        try:
            st = os.stat(folder)
        except OSError:
            return False
        self.stats += 1
        return stat.S_ISDIR(st.st_mode) and _allowed(st, self.peer, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH)
