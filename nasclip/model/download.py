"""Model files over HTTP, and model folders that appear whole or not at all.

``fetch`` downloads one file with a progress bar on stderr, resumes a partial
file with an HTTP Range request (after a dropped connection within a run, and
across runs: the partial file stays in the staging folder), and checks size
and SHA-256. ``Staging`` is the folder a model is assembled in, next to its
final place (``.<name>.partial``); only ``activate`` — after everything is
verified, written and fsynced — renames it into place. A half-finished or
corrupt download therefore never looks like a model folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import http.client
import logging
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import AbstractSet, Callable, TextIO

from .. import __version__
from ..display import human_bytes
from ..errors import DownloadError, ModelError

log = logging.getLogger("nasclip.download")

CHUNK = 1 << 20
USER_AGENT = f"nasclip/{__version__} (model download)"



def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_path(path: Path) -> None:
    """Flush a file or a directory entry to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(folder: Path) -> None:
    """Flush every file directly in folder, then the folder itself: before a rename makes it live."""
    for entry in folder.iterdir():
        if entry.is_file():
            fsync_path(entry)
    fsync_path(folder)


class Progress:
    """Progress of one transfer on a stream: a redrawn bar on a TTY, periodic lines otherwise."""

    def __init__(self, label: str, total: int | None, stream: TextIO | None = None,
                 interval: float | None = None, clock: Callable[[], float] = time.monotonic,
                 verb: str = "downloading") -> None:
        self.label = label
        self.verb = verb
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        # A TTY redraws often; a log (journal, file, pipe) gets a line now and then.
        self.interval = interval if interval is not None else (0.1 if self.tty else 10.0)
        self.clock = clock
        self.started = clock()
        self.first = 0
        self.last_shown = -1e9

    def start(self, done: int) -> None:
        """The transfer begins with done bytes already present (a resumed file)."""
        self.first = done
        self.started = self.clock()
        if not self.tty:
            resumed = f", resuming at {human_bytes(done)}" if done else ""
            size = human_bytes(self.total) if self.total else "unknown size"
            self._write(f"{self.label}: {self.verb} ({size}{resumed})\n")
        self.update(done, force=True)

    def _rate(self, done: int) -> float:
        elapsed = max(self.clock() - self.started, 1e-6)
        return (done - self.first) / elapsed

    def _line(self, done: int) -> str:
        rate = self._rate(done)
        if self.total:
            pct = 100.0 * done / self.total
            eta = (self.total - done) / rate if rate > 0 else None
            eta_text = f", {eta:.0f} s left" if eta is not None and done < self.total else ""
            return (f"{human_bytes(done)} of {human_bytes(self.total)} ({pct:.0f}%), "
                    f"{human_bytes(rate)}/s{eta_text}")
        return f"{human_bytes(done)}, {human_bytes(rate)}/s"

    def update(self, done: int, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self.last_shown < self.interval:
            return
        self.last_shown = now
        if self.tty:
            bar = ""
            if self.total:
                filled = int(24 * min(done, self.total) / self.total)
                bar = "[" + "#" * filled + "." * (24 - filled) + "] "
            self._write(f"\r\033[K{self.label}  {bar}{self._line(done)}")
        elif not force:
            self._write(f"{self.label}: {self._line(done)}\n")

    def finish(self, done: int) -> None:
        elapsed = self.clock() - self.started
        summary = (f"{human_bytes(done)} (100%) in {elapsed:.1f} s, "
                   f"{human_bytes(self._rate(done))}/s")
        if self.tty:
            self._write(f"\r\033[K{self.label}  {summary}\n")
        else:
            self._write(f"{self.label}: done, {summary}\n")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr must not stop a download
            pass


def _total_from(response: http.client.HTTPResponse | urllib.error.HTTPError, offset: int) -> int | None:
    """Full size of the remote file from Content-Range, else offset + Content-Length."""
    content_range = response.headers.get("Content-Range", "")
    if "/" in content_range:
        total = content_range.rsplit("/", 1)[1].strip()
        if total.isdigit():
            return int(total)
    length = response.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def _range_start(response: http.client.HTTPResponse) -> int | None:
    """First byte of a 206 reply (``Content-Range: bytes START-END/TOTAL``)."""
    value = response.headers.get("Content-Range", "")
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


class _Interrupted(Exception):
    """The connection dropped; what arrived so far is kept for the next attempt."""


def fetch(url: str, dest: Path, *, size: int | None = None, sha256: str | None = None,
          label: str | None = None, stream: TextIO | None = None, timeout: float = 30.0,
          retries: int = 4, backoff: float = 1.0) -> str:
    """Download url to dest, resuming what dest already holds; return the file's SHA-256.

    ``size`` and ``sha256``, when known, are enforced: a file of another size
    or hash is deleted and DownloadError names the file, the URL and both
    values. A dropped connection is retried ``retries`` times with a Range
    request (waiting backoff, 2*backoff, ... seconds); if it still fails the
    partial file is kept for the next run.
    """
    label = label or dest.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    attempt = 0
    while True:
        try:
            total = _fetch_once(url, dest, size, label, stream, timeout)
            break
        except _Interrupted as exc:
            attempt += 1
            have = dest.stat().st_size if dest.exists() else 0
            if attempt > retries:
                raise DownloadError(
                    f"{label}: download from {url} stopped at {human_bytes(have)}"
                    f"{f' of {human_bytes(size)}' if size else ''} ({exc}); the {have} bytes received are kept "
                    "in the staging folder — run the same command again to resume, or download the file "
                    "yourself and use `nasclip models install NAME --from FOLDER`") from None
            wait = min(backoff * 2.0 ** (attempt - 1), 30.0)
            log.warning("%s: connection lost at %d bytes (%s); resuming in %.0f s (attempt %d of %d)",
                        label, have, exc, wait, attempt, retries)
            time.sleep(wait)
    actual_size = dest.stat().st_size
    expected_size = size if size is not None else total
    if expected_size is not None and actual_size != expected_size:
        dest.unlink()
        raise DownloadError(f"{label}: {url} gave {actual_size} bytes but {expected_size} were expected; "
                            "the incomplete file was deleted and nothing was installed — run the command again")
    seen = sha256_file(dest)
    if sha256 is not None and seen != sha256.lower():
        dest.unlink()
        raise DownloadError(
            f"{label}: SHA-256 mismatch for {url}: expected {sha256.lower()}, got {seen}; the file was deleted "
            "and nothing was installed. Run the command again to download it afresh; if it keeps failing, "
            "the published file changed (update nasclip, or check docs/models.md)")
    with open(dest, "rb+") as handle:
        os.fsync(handle.fileno())
    return seen


def _fetch_once(url: str, dest: Path, size: int | None, label: str, stream: TextIO | None,
                timeout: float) -> int | None:
    """One HTTP request appending to dest; returns the remote total size if the server said."""
    have = dest.stat().st_size if dest.exists() else 0
    if size is not None and have > size:
        log.warning("%s: partial file is larger than the expected %d bytes; starting over", label, size)
        dest.unlink()
        have = 0
    if size is not None and have == size:
        return size  # complete from an earlier run; the checksum decides
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            # Range not satisfiable: nothing left to send (the file is complete),
            # or the remote file shrank. The size and checksum checks decide.
            total = _total_from(exc, 0) if exc.headers.get("Content-Range") else None
            exc.close()
            if total is not None and total != have:
                dest.unlink()
                raise _Interrupted(f"server has {total} bytes, partial file {have}; starting over") from None
            return total if total is not None else have
        exc.close()
        hint = {404: "the file is gone or moved", 401: "the server wants a login",
                403: "access denied", 429: "too many requests, try later"}.get(exc.code, "server error")
        raise DownloadError(f"{label}: {url} answered HTTP {exc.code} {exc.reason} ({hint}); nothing was "
                            "installed. If the hub is unreachable from this NAS, download the files elsewhere "
                            "and use `nasclip models install NAME --from FOLDER`") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        if have:
            raise _Interrupted(str(reason)) from None
        raise DownloadError(f"{label}: cannot reach {url}: {reason}; check the network, or download the file "
                            "elsewhere and use `nasclip models install NAME --from FOLDER`") from None
    with response:
        if response.status == 206:
            if _range_start(response) != have:
                raise DownloadError(f"{label}: {url} answered a resume request with the wrong range "
                                    f"({response.headers.get('Content-Range')}); delete the staging folder and retry")
            mode = "ab"
        else:
            # The server ignored the Range header: take the whole file again.
            have, mode = 0, "wb"
        total = _total_from(response, have)
        if size is not None and total is not None and total != size:
            dest.unlink(missing_ok=True)
            raise DownloadError(f"{label}: {url} has {total} bytes but the registry says {size}; the file on the "
                                "server is not the one nasclip knows, so nothing was installed")
        progress = Progress(label, total, stream)
        progress.start(have)
        done = have
        if total is not None:
            free = shutil.disk_usage(dest.parent).free
            if total - have > free:
                raise DownloadError(f"{label}: needs {human_bytes(total - have)} more but {dest.parent} has "
                                    f"{human_bytes(free)} free; make room (or use --models-dir) and run again")
        with open(dest, mode) as out:
            while True:
                try:
                    # read1: whatever has arrived (up to CHUNK), so progress moves on slow links too.
                    chunk = response.read1(CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise _Interrupted(str(exc) or type(exc).__name__) from None
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise DownloadError(f"{label}: cannot write {dest}: {exc.strerror or exc}; the bytes so far "
                                        "are kept — fix the disk problem and run the same command again") from None
                done += len(chunk)
                if size is not None and done > size:
                    break
                progress.update(done)
        if size is not None and done > size:
            dest.unlink()
            raise DownloadError(f"{label}: {url} sent more than the {size} bytes the registry expects; "
                                "the file was deleted and nothing was installed")
        if total is not None and done < total:
            # http.client ends a body early without an error when the peer closes.
            raise _Interrupted(f"connection closed after {done} of {total} bytes")
        progress.finish(done)
    return total


class Staging:
    """The folder a model is assembled in, next to its final place, and its activation.

    ``<models_dir>/.<name>.partial`` survives an interrupted run so downloads
    resume; a lock file keeps two installs of the same name apart.
    """

    def __init__(self, target: Path) -> None:
        self.target = target
        self.path = target.parent / f".{target.name}.partial"
        self._lock_path = target.parent / f".{target.name}.lock"
        self._lock_fd: int | None = None

    def __enter__(self) -> "Staging":
        self.target.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise ModelError(f"another nasclip is installing or removing {self.target.name} right now "
                                 f"(lock {self._lock_path}); wait for it to finish") from None
            # The holder before us unlinks the lock file when done: make sure we
            # locked the file that is still there, not the one it just removed.
            try:
                if os.stat(self._lock_path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        self._lock_fd = fd
        self.path.mkdir(exist_ok=True)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.path.rmdir()  # only if empty: nothing worth resuming
        except OSError:
            pass
        if self._lock_fd is not None:
            # Unlink while still holding the lock, so nobody can lock this inode
            # after us and believe it is the current lock file.
            try:
                self._lock_path.unlink()
            except OSError:
                pass
            os.close(self._lock_fd)
            self._lock_fd = None

    def clear(self, keep: AbstractSet[str] = frozenset()) -> None:
        """Delete everything in the staging folder except the names in keep."""
        for entry in self.path.iterdir():
            if entry.name in keep and entry.is_file():
                continue
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def activate(self, replace: bool = False) -> Path:
        """Make the staged folder the model folder: fsync everything, then one rename."""
        if self.target.exists() and not replace:
            raise ModelError(f"{self.target} already exists; `nasclip models remove {self.target.name}` first, "
                             "or install with --force to replace it")
        fsync_folder(self.path)
        old = self.target.parent / f".{self.target.name}.old"
        if old.exists():
            shutil.rmtree(old)
        if self.target.exists():
            os.rename(self.target, old)
        os.rename(self.path, self.target)
        fsync_path(self.target.parent)
        if old.exists():
            shutil.rmtree(old)
        return self.target
