"""Reading a photo within limits: a deadline, a byte budget and, from the header, a pixel count.

Decoders read what they are given however they like; a damaged or hostile
file must cost a bounded amount of time, memory and I/O all the same. Used for
photos, RAWs, videos and the web page's originals alike.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass
from typing import BinaryIO, Callable

from ..config import IndexerConfig
from ..errors import DecodeError

# The most BoundedFile.readall asks for in one read (see there).
READALL_CHUNK = 64 << 20


@dataclass(frozen=True)
class DecodeLimits:
    """What one decode may cost: pixels (from the header), file size and wall-clock time.

    The setting names are what a refusal tells the owner to change (videos have their own).
    """

    max_pixels: int
    max_bytes: int = 512 << 20
    timeout: float = 60.0
    bytes_setting: str = "indexer.max_file_bytes"
    timeout_setting: str = "indexer.decode_timeout"


def decode_limits(config: IndexerConfig) -> DecodeLimits:
    """What one decode may cost, from the indexer settings (for shares and --like queries alike)."""
    return DecodeLimits(config.max_pixels, config.max_file_bytes, config.decode_timeout)


class BoundedFile(io.RawIOBase):
    """A read-only view of a descriptor that stops reading at a deadline or a byte budget.

    Pillow reads some damaged files a byte at a time (a JPEG start marker
    followed by a 20 GB hole takes it most of an hour), so every read checks
    the clock and the bytes read so far, and the decode fails with a reason
    instead. Reads use pread at its own offset: the descriptor's offset is
    shared with whoever else reads it (the fingerprint).
    """

    def __init__(self, fd: int, limits: DecodeLimits, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.fd = fd
        self.limits = limits
        self.clock = clock
        self._deadline = clock() + limits.timeout
        self._budget = 2 * limits.max_bytes  # a decoder may seek back and read parts again
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._pread(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        """The rest of the file in as few reads as its size allows.

        The TIFF, WebP, HEIF and AVIF decoders take the whole file at once;
        io's default readall goes 8 KB at a time through readinto, which took
        60-290 ms for a 55 MB TIFF that one plain read gets in about 40 ms.
        A read takes at most READALL_CHUNK (a photo is one read, the deadline
        is still checked between the reads of a huge file) and never more
        than is left of the budget, so a file that grows while it is read
        fails on the budget instead of allocating its new size.
        """
        chunks: list[bytes] = []
        while True:
            left = os.fstat(self.fd).st_size - self._pos
            chunk = self._pread(max(1 << 16, min(left, READALL_CHUNK, self._budget + 1)))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def _pread(self, size: int) -> bytes:
        """Up to size bytes at the current position, within the deadline and the byte budget."""
        if self.clock() > self._deadline:
            raise DecodeError(f"reading it took longer than {self.limits.timeout_setting} "
                              f"({self.limits.timeout:g} s); is it really a photo? raise the setting if it is")
        data = os.pread(self.fd, size, self._pos)
        self._budget -= len(data)
        if self._budget < 0:
            raise DecodeError(f"the decoder read more than twice {self.limits.bytes_setting} "
                              f"({self.limits.max_bytes} bytes); the file keeps growing or is damaged")
        self._pos += len(data)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR:
            offset += self._pos
        elif whence == os.SEEK_END:
            offset += os.fstat(self.fd).st_size
        if offset < 0:
            raise OSError(22, "negative seek position")
        self._pos = offset
        return offset

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:  # the descriptor belongs to the caller
        super().close()


def open_bounded(fd: int, size: int, limits: DecodeLimits) -> BinaryIO:
    """A buffered reader of fd (a regular file of size bytes) within limits; refuses an oversized file at once."""
    if size > limits.max_bytes:
        raise DecodeError(f"{size} bytes is more than {limits.bytes_setting} ({limits.max_bytes}); "
                          "raise the setting if this file is genuine")
    if size == 0:
        raise DecodeError("empty file (0 bytes)", retry=True)
    return io.BufferedReader(BoundedFile(fd, limits), 1 << 16)
