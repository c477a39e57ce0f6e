"""Fingerprints: what makes a moved or copied file reuse its vectors, and an edited one not.

A fingerprint is the file's size and a hash of its bytes: all of them for
small and uncompressed files, the head and tail of big compressed ones (a
video, a RAW, a big JPEG), which is cheap and, since an edit in place also
changes the file's mtime and a changed row never reuses its own old vectors,
enough to recognise a copy.
"""

from __future__ import annotations

import hashlib
import os

FINGERPRINT_CHUNK = 64 * 1024
# Files up to this size are hashed whole (the decoder reads them whole anyway);
# larger ones by their head and tail, unless their format is uncompressed.
FULL_HASH_BYTES = 8 << 20
# Uncompressed formats (BMP, TIFF, PNM): two photos can share the first and last
# 64 KB and differ in between, so their fingerprint always covers every byte.
UNCOMPRESSED_MAGIC = (b"BM", b"II*\x00", b"MM\x00*", b"P1", b"P2", b"P3", b"P4", b"P5", b"P6")
# Marks the whole-file scheme; head-and-tail fingerprints keep the old "size:hash" form,
# so rows written before the change still match their unchanged files.
WHOLE_FILE = "w"


def read_at(fd: int, offset: int, length: int) -> bytes:
    """length bytes at offset, leaving the descriptor's own offset alone."""
    return os.pread(fd, length, offset)


def head_and_tail(fd: int, size: int, head: bytes) -> str:
    """The head-and-tail fingerprint (head: the file's first FINGERPRINT_CHUNK bytes, already read)."""
    digest = hashlib.blake2b(head, digest_size=16)
    if size > FINGERPRINT_CHUNK:
        digest.update(read_at(fd, max(FINGERPRINT_CHUNK, size - FINGERPRINT_CHUNK), FINGERPRINT_CHUNK))
    return f"{size}:{digest.hexdigest()}"


def fingerprint(fd: int, size: int) -> str:
    """Equal for a moved or copied file, different for any edit of a file hashed whole.

    Small and uncompressed files are hashed whole; big compressed ones by size,
    head and tail, which is cheap and as before (an edit of one also changes
    its mtime, and a changed row never reuses its own old vector).
    """
    head = read_at(fd, 0, FINGERPRINT_CHUNK)
    if size > FULL_HASH_BYTES and not head.startswith(UNCOMPRESSED_MAGIC):
        return head_and_tail(fd, size, head)
    digest = hashlib.blake2b(digest_size=16)
    offset = 0
    while offset < size:
        chunk = read_at(fd, offset, 1 << 20)
        if not chunk:
            break
        digest.update(chunk)
        offset += len(chunk)
    return f"{WHOLE_FILE}{size}:{digest.hexdigest()}"
