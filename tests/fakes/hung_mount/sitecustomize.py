"""Test-only: a hung network mount, for a nasclipd started with this folder on PYTHONPATH.

A read of a file that only blocks (a hung NFS or SMB mount) cannot exist
here: nasclip refuses FIFOs, and there is no network mount. This fake makes
every ``os.pread`` of a file whose name starts with ``hung-`` block, as the
kernel does on a hung mount, until a file named ``.release`` exists in the
same folder. Nothing else changes.
"""

import os
import time

_pread = os.pread


def _hung_pread(fd: int, length: int, offset: int) -> bytes:
    try:
        path = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        path = ""
    if os.path.basename(path).startswith("hung-"):
        release = os.path.join(os.path.dirname(path), ".release")
        while not os.path.exists(release):
            time.sleep(0.05)
    return _pread(fd, length, offset)


os.pread = _hung_pread
