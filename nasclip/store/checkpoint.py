"""The index checkpoint file: a checksummed header, then the FAISS serialisation.

Facts behind the format. FAISS writes through a ``FILE*`` and reports a short
write only at ``fclose`` (if at all), so on a full disk ``write_index`` may
leave a truncated file that looks written; a flipped bit in a stored vector
loads without complaint and tops every search with a score of hundreds.
So nasclip writes the payload itself through ``faiss.PyCallbackIOWriter``
(ENOSPC raises at the write that fails), fsyncs it, reads it back and checks
length and checksum *before* the file may replace anything. On load the
checksum is verified before FAISS parses a byte.

Layout (little-endian), ``HEADER``::

    magic "NCLIPIDX" | version u32 | header size u32 | payload length u64 |
    vector-log seq covered u64 | vector count u64 | BLAKE2b-256 of payload |
    CRC-32 of everything before it

Files without the magic are checkpoints of nasclip before format 1: they load
as plain FAISS files (no checksum to check; their vectors are still checked
for unit length by the store).
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import faiss

from ..errors import DiskFull, StoreError, is_disk_full

MAGIC = b"NCLIPIDX"
VERSION = 1
HEADER = struct.Struct("<8sIIQQQ32sI")
CHUNK = 1 << 20


class CheckpointDamaged(StoreError):
    """A checkpoint file fails its checksum or cannot be parsed."""


@dataclass(frozen=True)
class Header:
    """What a checkpoint says about itself."""

    length: int
    log_seq: int
    count: int
    digest: bytes


def _pack(length: int, log_seq: int, count: int, digest: bytes) -> bytes:
    head = HEADER.pack(MAGIC, VERSION, HEADER.size, length, log_seq, count, digest, 0)[:-4]
    return head + struct.pack("<I", zlib.crc32(head))


def _read_header(handle: BinaryIO, path: Path) -> Header | None:
    """The header, None for a legacy (header-less) file; CheckpointDamaged if it is garbled."""
    raw = handle.read(HEADER.size)
    if not raw.startswith(MAGIC):
        return None
    if len(raw) < HEADER.size:
        raise CheckpointDamaged(f"{path}: checkpoint header is truncated")
    magic, version, size, length, log_seq, count, digest, crc = HEADER.unpack(raw)
    if zlib.crc32(raw[:-4]) != crc:
        raise CheckpointDamaged(f"{path}: checkpoint header failed its checksum")
    if version != VERSION or size != HEADER.size:
        raise StoreError(f"{path}: checkpoint format {version} is newer than this nasclip understands; upgrade")
    return Header(length, log_seq, count, digest)


def _check_payload(handle: BinaryIO, path: Path, header: Header) -> None:
    """Stream the payload through BLAKE2b; CheckpointDamaged unless length and digest match."""
    digest = hashlib.blake2b(digest_size=32)
    length = 0
    while chunk := handle.read(CHUNK):
        digest.update(chunk)
        length += len(chunk)
    if length != header.length:
        raise CheckpointDamaged(f"{path}: checkpoint is {length} bytes long, its header says {header.length}")
    if digest.digest() != header.digest:
        raise CheckpointDamaged(f"{path}: checkpoint failed its checksum (damaged on disk)")


def _parse(handle: BinaryIO, path: Path) -> faiss.Index:
    try:
        return faiss.read_index(faiss.PyCallbackIOReader(handle.read))  # type: ignore[attr-defined]
    except (RuntimeError, MemoryError) as exc:
        raise CheckpointDamaged(f"{path}: unreadable index checkpoint: {str(exc).splitlines()[0]}") from None


def read(path: Path) -> tuple[faiss.Index, int | None]:
    """(index, vector-log seq it covers); seq None for a legacy file. CheckpointDamaged if it fails its checks."""
    try:
        with open(path, "rb") as handle:
            header = _read_header(handle, path)
            if header is not None:
                _check_payload(handle, path, header)
            handle.seek(HEADER.size if header is not None else 0)
            return _parse(handle, path), (header.log_seq if header is not None else None)
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the index checkpoint: {exc.strerror}") from None


def salvage(path: Path) -> faiss.Index | None:
    """Parse a damaged checkpoint anyway (the caller checks every vector); None if FAISS cannot."""
    try:
        with open(path, "rb") as handle:
            handle.seek(HEADER.size if handle.read(len(MAGIC)) == MAGIC else 0)
            return _parse(handle, path)
    except (OSError, CheckpointDamaged):
        return None


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write(index: faiss.Index, path: Path, log_seq: int) -> int:
    """Write a checkpoint to path (a temporary name), fsync it, read it back; returns its size.

    DiskFull when the file system is full, StoreError for other failures; in
    both cases path is removed and nothing else was touched.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            _write_all(fd, bytes(HEADER.size))
            digest = hashlib.blake2b(digest_size=32)
            length = 0

            def sink(chunk: bytes) -> int:
                nonlocal length
                _write_all(fd, chunk)
                digest.update(chunk)
                length += len(chunk)
                return len(chunk)

            faiss.write_index(index, faiss.PyCallbackIOWriter(sink))  # type: ignore[attr-defined]
            _write_all_at(fd, _pack(length, log_seq, int(index.ntotal), digest.digest()))
            os.fsync(fd)
        finally:
            os.close(fd)
        with open(path, "rb") as handle:  # what is on disk, not what we meant to write
            header = _read_header(handle, path)
            if header is None:
                raise CheckpointDamaged(f"{path}: the header did not reach the disk")
            _check_payload(handle, path, header)
        return HEADER.size + length
    except BaseException as exc:
        path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and is_disk_full(exc):
            raise DiskFull(f"cannot write the index checkpoint {path.parent}: {exc.strerror}",
                           path=str(path.parent)) from None
        if isinstance(exc, OSError):
            raise StoreError(f"cannot write the index checkpoint {path}: {exc.strerror}") from None
        if isinstance(exc, RuntimeError):
            raise StoreError(f"cannot write the index checkpoint {path}: {str(exc).splitlines()[0]}") from None
        raise


def _write_all_at(fd: int, data: bytes) -> None:
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], done)


def previous(path: Path) -> Path:
    """The older generation kept beside a checkpoint."""
    return path.with_name(path.name + ".prev")


def set_aside(path: Path) -> Path:
    """Move a damaged checkpoint out of the way (kept for inspection and salvage)."""
    aside = path.with_name(path.name + ".corrupt")
    path.replace(aside)
    return aside
