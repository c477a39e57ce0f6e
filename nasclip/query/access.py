"""Who is asking, and what they may see.

The query server learns each client's uid and gid from ``SO_PEERCRED`` and
its supplementary groups from ``SO_PEERGROUPS``, both as they were when the
client connected. A result is shown only if that uid, with those groups,
could open the file for reading itself: the file's read permission and the
search (x) permission of every folder above it up to ``/``, each judged by
its POSIX ACL when it has one and by its mode bits otherwise (acl.py). A
folder reached through a symbolic link is judged as the kernel judges it:
every folder on the way to the link's target must be enterable too. A file
or folder with an ACL nasclip cannot evaluate (NFSv4) is seen by root only.
root sees everything. SMB share permissions and NFS export rules are not
consulted: see docs/protocol.md, "Who sees what".
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

from . import acl
from .acl import R, X, permits, rules_of

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


# The kernel gives up after 40 symbolic links in one lookup (MAXSYMLINKS); so does may_enter.
MAX_SYMLINKS = 40


class AccessCheck:
    """Read-permission checks for one request; folder answers are cached within it.

    Nothing is cached across requests, so a chmod or setfacl takes effect at
    the next query. ``reader`` reads extended attributes (injectable: tests
    cannot set NFSv4 ACLs on a local file system).
    """

    def __init__(self, peer: Peer, reader: acl.XattrReader | None = None, *,
                 unknown_acls_by_mode: bool = False) -> None:
        self.peer = peer
        self._reader = reader or acl.read_xattr
        # Searches show files under an ACL nasclip cannot evaluate (NFSv4) to root only. The
        # doctor, judging what the kernel lets nasclipd open, reads their mode bits instead.
        self._unknown_by_mode = unknown_acls_by_mode
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
        return stat.S_ISREG(st.st_mode) and self.allows(path, st, R) and self.may_enter(path.parent)

    def allows(self, target: acl.Target, st: os.stat_result, want: int) -> bool:
        """True if peer gets all of want (R|W|X) on the file target (a path or a descriptor) whose stat is st.

        Only the file itself is judged, not the folders above it.
        """
        if self.peer.is_root:
            return True
        try:
            rules = rules_of(target, self._reader)
        except OSError:
            return False  # gone, or unreadable attributes: as good as unreadable
        if rules.kind == "unknown" and self._unknown_by_mode:
            rules = acl.MODE_ONLY
        return permits(st, rules, self.peer.uid, self.peer.groups, want)

    def may_list(self, folder: Path) -> bool:
        """True if peer could list the names in folder (``ls``): r on it, x on it and on every folder above."""
        if self.peer.is_root:
            return True
        try:
            st = os.lstat(folder)
        except OSError:
            return False
        return stat.S_ISDIR(st.st_mode) and self.allows(folder, st, R) and self.may_enter(folder)

    def may_enter(self, folder: Path, _links: int = 0) -> bool:
        """True if peer may pass through folder and every folder above it (the x bit)."""
        if self.peer.is_root:
            return True
        known = self._folders.get(folder)
        if known is None:
            parent = folder.parent
            known = (parent == folder or self.may_enter(parent, _links)) and self._enter_one(folder, _links)
            self._folders[folder] = known
        return known

    def _enter_one(self, folder: Path, links: int) -> bool:
        try:
            st = os.lstat(folder)  # the folders above were judged already
        except OSError:
            return False
        self.stats += 1
        if stat.S_ISLNK(st.st_mode):
            # The kernel follows it: the folders on the way to the target need the x bit too,
            # else a link in alice's folder would open bob's private one to her.
            if links >= MAX_SYMLINKS:
                return False
            try:
                target = os.readlink(folder)
            except OSError:
                return False
            return self.may_enter(folder.parent / target, links + 1)  # '..' stays: the kernel resolves it
        return stat.S_ISDIR(st.st_mode) and self.allows(folder, st, X)
