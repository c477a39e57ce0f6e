"""Giving memory back to the system after big decodes (glibc; a no-op elsewhere).

A 100-megapixel photo needs hundreds of MB of pixel buffers for a moment.
glibc's malloc raises its mmap threshold each time such a buffer is freed,
so the next big ones come from the heap and stay there: four concurrent
``--like`` queries of a 119-megapixel PNG left the daemon 2 GB larger for
good. A fixed threshold keeps big buffers in their own mappings, which go
back to the system when freed; ``malloc_trim`` returns what the heaps still
hold after a big decode.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

log = logging.getLogger("nasclip.memory")

M_MMAP_THRESHOLD = -3  # <malloc.h>
MMAP_THRESHOLD = 4 << 20  # buffers of at least this many bytes get their own mapping

try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None)
except OSError:  # pragma: no cover - a platform without dlopen(NULL)
    _LIBC = None


def _function(name: str) -> Any:
    return getattr(_LIBC, name, None) if _LIBC is not None else None


def tune_malloc(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold (called once at daemon start); False where there is no glibc mallopt."""
    mallopt, trim = _function("mallopt"), _function("malloc_trim")
    if mallopt is None or trim is None:  # musl has a mallopt stub but no malloc_trim: not glibc
        return False
    ok = bool(mallopt(ctypes.c_int(M_MMAP_THRESHOLD), ctypes.c_int(threshold)))
    log.debug("malloc: buffers from %d bytes are mapped on their own%s", threshold, "" if ok else " (refused)")
    return ok


def release_memory() -> None:
    """Return freed heap memory to the system (glibc malloc_trim); nothing elsewhere."""
    trim = _function("malloc_trim")
    if trim is not None:
        trim(ctypes.c_size_t(0))
