"""POSIX ACLs: read ``system.posix_acl_access`` and decide access the way the kernel does.

Once a file has a POSIX ACL its group mode bits are the ACL's *mask*, not
the owning group's rights: one ``setfacl -m u:nasclip:r`` on a 0600 file
makes ``ls -l`` show 0640, yet the owning group still cannot read it. So
mode bits alone are wrong both ways, and every judgement of "could this uid
read this file / enter this folder" goes through :func:`permits` here.

The xattr holds Linux's binary form (``<linux/posix_acl_xattr.h>``): a
little-endian u32 version (2), then 8-byte entries (u16 tag, u16 perm, u32
id). :func:`permits` is the POSIX.1e access check of
``fs/posix_acl.c:posix_acl_permission``: the owner gets USER_OBJ (its
mode bits); a named user gets its entry limited by the mask; otherwise
every matching group entry (owning group and named groups) is tried, the
first one granting all of ``want`` wins (and then the mask decides), and a
match that grants nothing denies; only a process matching none of them gets
OTHER. One Linux twist, found by comparing with the kernel: with a mask of
``---`` the ACL is skipped and the mode bits decide, so a named user denied
by the mask falls back to "other".

NFSv4 ACLs (``system.nfs4_acl`` from the Linux NFS client,
``system.nfs4_acl_xdr`` from OpenZFS with ``acltype=nfsv4``) have allow and
deny entries evaluated in order, inheritance flags and owner/group
special-cases that mode bits do not reflect. nasclip does not evaluate them:
such files and folders are judged "unknown" and shown to root only.
"""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass
from typing import Callable, Literal, Union

from ..errors import NasclipError

R, W, X = 4, 2, 1

POSIX_ACCESS = "system.posix_acl_access"
NFS4_NAMES = ("system.nfs4_acl", "system.nfs4_acl_xdr")

USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_VERSION = 2
_HEADER = struct.Struct("<I")
_ENTRY = struct.Struct("<HHI")
_KNOWN_TAGS = {USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER}

# What "no such attribute" looks like: the file has none, or the file system knows no ACLs at all.
_ABSENT = {errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP}

# A file to read attributes of: a path (never followed if it is a symlink) or an open descriptor.
Target = Union[str, bytes, "os.PathLike[str]", int]
XattrReader = Callable[[Target, str], bytes]


@dataclass(frozen=True)
class AclEntry:
    """One entry of a POSIX ACL; id is meaningful only for USER and GROUP."""

    tag: int
    perm: int
    id: int


@dataclass(frozen=True)
class Rules:
    """What decides access to one file: its mode bits, a POSIX ACL, or an ACL nasclip cannot evaluate."""

    kind: Literal["mode", "posix", "unknown"]
    entries: tuple[AclEntry, ...] = ()
    why: str = ""  # for "unknown": which attribute, for doctor and the logs


MODE_ONLY = Rules("mode")


def parse_acl(raw: bytes) -> tuple[AclEntry, ...]:
    """The entries of a ``system.posix_acl_access`` value; NasclipError if it is not one."""
    if len(raw) < _HEADER.size or (len(raw) - _HEADER.size) % _ENTRY.size:
        raise NasclipError(f"POSIX ACL of {len(raw)} bytes: not a 4-byte header and 8-byte entries")
    (version,) = _HEADER.unpack_from(raw)
    if version != _VERSION:
        raise NasclipError(f"POSIX ACL version {version}; only version {_VERSION} exists")
    entries = tuple(AclEntry(*fields) for fields in _ENTRY.iter_unpack(raw[_HEADER.size:]))
    unknown = [e.tag for e in entries if e.tag not in _KNOWN_TAGS]
    if unknown:
        raise NasclipError(f"POSIX ACL with unknown entry tag {unknown[0]:#x}")
    return entries


def read_xattr(target: Target, name: str) -> bytes:
    """The value of attribute name of target; a symlink's own attributes, never its target's."""
    if isinstance(target, int):
        # fgetxattr refuses O_PATH descriptors (EBADF); the /proc link names the very same inode.
        return os.getxattr(f"/proc/self/fd/{target}", name)
    return os.getxattr(target, name, follow_symlinks=False)


def rules_of(target: Target, reader: XattrReader = read_xattr) -> Rules:
    """How access to target is decided. reader is injectable: tests cannot set ``system.nfs4_acl``.

    An OSError other than "no such attribute" (the file is gone, an I/O
    error) propagates: the caller treats the file as unreadable.
    """
    for name in NFS4_NAMES:
        try:
            reader(target, name)
        except OSError as exc:
            if exc.errno in _ABSENT:
                continue
            raise
        return Rules("unknown", why=f"an NFSv4 ACL ({name})")
    try:
        raw = reader(target, POSIX_ACCESS)
    except OSError as exc:
        if exc.errno in _ABSENT:
            return MODE_ONLY
        raise
    try:
        return Rules("posix", parse_acl(raw))
    except NasclipError as exc:
        return Rules("unknown", why=str(exc))


def _mode_permits(st: os.stat_result, uid: int, groups: frozenset[int], want: int) -> bool:
    # POSIX: the owner class applies to the owner even if group/other bits would allow more.
    if st.st_uid == uid:
        bits = st.st_mode >> 6
    elif st.st_gid in groups:
        bits = st.st_mode >> 3
    else:
        bits = st.st_mode
    return (bits & want) == want


def _acl_permits(st: os.stat_result, entries: tuple[AclEntry, ...], uid: int, groups: frozenset[int],
                 want: int) -> bool:
    if st.st_uid == uid or not st.st_mode & 0o070:
        # Linux (fs/namei.c:acl_permission_check) consults the ACL only when the group bits, which
        # are the mask, grant something; else the mode bits decide, and "other" applies to named entries.
        return _mode_permits(st, uid, groups, want)
    mask = next((e.perm for e in entries if e.tag == MASK), 7)
    by_tag: dict[int, list[AclEntry]] = {}
    for entry in entries:
        by_tag.setdefault(entry.tag, []).append(entry)
    for entry in by_tag.get(USER, ()):
        if entry.id == uid:
            return (entry.perm & mask & want) == want
    matched = False
    for entry in by_tag.get(GROUP_OBJ, []) + by_tag.get(GROUP, []):
        if (entry.tag == GROUP_OBJ and st.st_gid in groups) or (entry.tag == GROUP and entry.id in groups):
            matched = True
            if (entry.perm & want) == want:
                return (entry.perm & mask & want) == want
    if matched:
        return False
    return any((e.perm & want) == want for e in by_tag.get(OTHER, ()))


def permits(st: os.stat_result, rules: Rules, uid: int, groups: frozenset[int], want: int) -> bool:
    """True if a process of uid with these groups gets all of want (R|W|X) on the file (uid 0 excluded).

    st must be the file's own stat (not a symlink's); root's overrides are
    the caller's business, because "root may read" and "root may execute"
    differ.
    """
    if rules.kind == "unknown":
        return False
    if rules.kind == "posix":
        return _acl_permits(st, rules.entries, uid, groups, want)
    return _mode_permits(st, uid, groups, want)

