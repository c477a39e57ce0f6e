"""Opening a media file by path within limits: for tests, benchmarks and tools (the indexer opens its own).

The daemon's indexer opens every file itself, from the share root with no
symbolic link in any component, and hands the decoders a bounded reader of
that descriptor (bounded.open_bounded). Given a path instead, the media
decoders open it here the same way for the last component: never through a
symbolic link, never blocking on a FIFO, and read through the bounded reader.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..indexing.bounded import DecodeLimits, open_bounded
from ..indexing.imaging import opening_error

Source = Path | BinaryIO


@contextmanager
def bounded(source: Source, limits: DecodeLimits) -> Iterator[BinaryIO]:
    """A bounded reader of source (a path is opened here, a file object is used from its start)."""
    if not isinstance(source, (str, os.PathLike)):
        source.seek(0)
        yield source
        return
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise opening_error(exc) from None
    try:
        yield open_bounded(fd, os.fstat(fd).st_size, limits)
    finally:
        os.close(fd)
