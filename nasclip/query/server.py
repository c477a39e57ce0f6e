"""The query server: JSON lines over a Unix stream socket, bounded in every direction.

One accept thread; each connection is served by a bounded pool (at most
``query.max_connections`` at once; a client beyond that waits up to
BUSY_GRACE for a slot, then gets a ``busy`` error). One uid holds at most
``query.max_connections_per_user`` of those slots: its next connection gets
``busy`` at once, so one user's silent connections cannot lock the others
out (the uid is the peer's, from SO_PEERCRED, read at accept). Requests have a size
limit and clients a read timeout, so a slow, silent or hostile client costs
one worker for at most ``query.timeout`` seconds and never a crash. The socket file gets the configured group and
mode: connecting needs write permission on it.
"""

from __future__ import annotations

import errno
import grp
import logging
import os
import socket
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from ..config import Config, QueryConfig, file_kind
from ..errors import NasclipError, ProtocolError
from ..lifecycle import Worker
from . import protocol
from .access import Peer, peer_of

log = logging.getLogger("nasclip.server")

Handler = Callable[[protocol.Request, Peer], dict]

SLOW_SECONDS = 2.0  # queries slower than this are logged, with who asked
BUSY_GRACE = 0.25   # seconds a new client may wait for a free slot before 'busy'


def _claim_socket_path(path: Path) -> None:
    """Remove a stale socket file; refuse if a live daemon answers on it, or if it is not a socket at all.

    Only a socket is ever removed: a mistyped ``socket:`` must not cost
    the catalog or anybody's file.
    """
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise NasclipError(f"cannot check the socket path {path}: {exc.strerror}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise NasclipError(f"{path} exists and is not a socket ({file_kind(st)}); nasclipd will not remove it. "
                           "Set `socket:` in the config to a path of its own (default /run/nasclip/query.sock)")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)  # nobody listening: left over from a crash
        return
    finally:
        probe.close()
    raise NasclipError(f"{path}: another nasclipd is already answering on this socket")


class QueryServer:
    """Serves requests on a Unix socket; start/stop/close like every long-running part."""

    def __init__(self, path: Path, config: QueryConfig, handler: Handler,
                 on_cpu: Callable[[float], None] = lambda seconds: None) -> None:
        self.path = path
        self.config = config
        self.handler = handler
        self.on_cpu = on_cpu  # told the CPU each connection cost its worker thread (query work's budget)
        self._listener: socket.socket | None = None
        self._bound: os.stat_result | None = None
        self._pool = ThreadPoolExecutor(config.max_connections, thread_name_prefix="nasclip-query")
        self._active = 0
        self._per_uid: dict[int, int] = {}  # slots held by each uid; entries at 0 are removed
        self._active_lock = threading.Lock()
        self._slot_free = threading.Condition(self._active_lock)
        self._full_since: float | None = None
        self._connections: set[socket.socket] = set()
        self._worker = Worker("nasclip-server", self.step, log, "query server", error_pause=0.5)
        self.served = 0
        self.errors = 0
        self.refused = 0

    def start(self) -> None:
        """Bind the socket (with group and mode) and start accepting."""
        try:
            if not self.path.parent.exists():
                self.path.parent.mkdir(parents=True)
                # nasclipd's umask is 077 (its state is private), but searchers must reach the
                # socket: its own mode and group decide who may connect.
                os.chmod(self.path.parent, 0o755)
        except OSError as exc:
            raise NasclipError(f"cannot create the socket folder {self.path.parent}: {exc.strerror}") from None
        _claim_socket_path(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.path))
        except OSError as exc:
            listener.close()
            raise NasclipError(f"cannot create the query socket {self.path}: {exc.strerror}") from None
        self._set_permissions()
        self._bound = self.path.lstat()
        listener.listen(128)
        listener.settimeout(0.5)  # lets the accept loop see stop()
        self._listener = listener
        self._worker.start()
        log.info("answering queries on %s", self.path)

    def _remove_socket(self) -> None:
        """Remove the socket file, if it is still the one this server bound (never a file put there since)."""
        try:
            st = self.path.lstat()
        except OSError:
            return
        if self._bound is not None and (st.st_dev, st.st_ino) == (self._bound.st_dev, self._bound.st_ino):
            self.path.unlink(missing_ok=True)

    def _set_permissions(self) -> None:
        os.chmod(self.path, self.config.socket_mode)
        group = self.config.socket_group
        if not group:
            return
        try:
            gid = grp.getgrnam(group).gr_gid
            os.chown(self.path, -1, gid)
        except KeyError:
            log.warning("socket group '%s' does not exist; the socket keeps group %s. Create it "
                        "(groupadd %s) and add the users who may search, or set query.socket_group",
                        group, os.getgid(), group)
        except PermissionError:
            log.warning("cannot give the socket to group '%s' (nasclipd must run as root or be a "
                        "member of it); set query.socket_group", group)

    def is_alive(self) -> bool:
        return self._worker.is_alive()

    def stop(self) -> None:
        self._worker.stop()

    def status(self) -> dict[str, int]:
        """Requests answered, answered with an error, and connections refused because every slot was taken."""
        return {"served": self.served, "errors": self.errors, "busy": self.refused}

    def reconfigure(self, config: Config) -> None:
        """Connection limits and timeouts apply to the next connection; socket path, mode and group need a restart."""
        self.config = config.query

    def close(self) -> None:
        """Stop accepting, end open connections, remove the socket file; idempotent."""
        self.stop()
        self._worker.join()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            self._remove_socket()
        with self._active_lock:
            for conn in list(self._connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._pool.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------ accepting

    def step(self) -> float:
        """Accept one connection (waiting at most the listener's timeout) and hand it to a serving thread."""
        listener = self._listener
        assert listener is not None, "the worker runs only between start() and close()"
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            return 0.0
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE) and not self._worker.stopping:
                log.error("out of file descriptors; refusing connections for a moment")
                return 0.5
            return 0.0
        self._admit(conn)
        return 0.0

    def _admit(self, conn: socket.socket) -> None:
        """Give the connection a slot (waiting a short grace when all are taken) or refuse it with a reason."""
        try:
            peer = peer_of(conn)
        except OSError:  # gone already
            conn.close()
            return
        limit = self.config.max_connections_per_user
        with self._slot_free:
            refusal = None
            if self._per_uid.get(peer.uid, 0) >= limit:
                refusal = (f"you have {limit} connections open already (query.max_connections_per_user); "
                           "close one or try again in a moment")
            else:
                if not self._has_slot() and self._full_since is None:
                    self._full_since = time.monotonic()
                if self._slot_free.wait_for(self._has_slot, self._grace()):
                    self._full_since = None
                    self._active += 1
                    self._per_uid[peer.uid] = self._per_uid.get(peer.uid, 0) + 1
                    self._connections.add(conn)
                else:
                    refusal = (f"{self.config.max_connections} clients are being served "
                               "(query.max_connections); try again in a moment")
        if refusal is not None:
            self.refused += 1  # only the accept thread writes it
            self._refuse(conn, refusal)
            return
        self._pool.submit(self._serve, conn, peer)

    def _has_slot(self) -> bool:
        return self._active < self.config.max_connections

    def _grace(self) -> float:
        """How long a new client may still wait for a slot: what is left of BUSY_GRACE since the server filled up.

        A client that just got its reply and reconnects at once would
        otherwise find its old slot not yet released and be told 'busy';
        under a sustained flood refusals stay immediate.
        """
        if self._full_since is None:
            return 0.0  # a slot is free
        return max(0.0, BUSY_GRACE - (time.monotonic() - self._full_since))

    def _refuse(self, conn: socket.socket, message: str) -> None:
        try:
            conn.settimeout(1.0)
            conn.sendall(protocol.encode(protocol.error_reply(protocol.BUSY, message)))
        except OSError:
            pass
        finally:
            conn.close()

    # ------------------------------------------------------------------ one connection

    def _serve(self, conn: socket.socket, peer: Peer) -> None:
        cpu = time.thread_time()
        try:
            buffer = b""
            # One deadline per request line: a client trickling bytes cannot hold a worker.
            deadline = time.monotonic() + self.config.timeout
            while not self._worker.stopping:
                newline = buffer.find(b"\n")
                if newline < 0:
                    if len(buffer) > self.config.max_request_bytes:
                        self._send(conn, protocol.error_reply(
                            protocol.TOO_LARGE, f"request longer than {self.config.max_request_bytes} bytes"))
                        return
                    try:
                        conn.settimeout(max(0.01, deadline - time.monotonic()))
                        chunk = conn.recv(65536)
                    except socket.timeout:
                        if buffer:  # an idle connection (nothing sent since the last reply) just ends
                            self._send(conn, protocol.error_reply(
                                protocol.TIMEOUT, f"no complete request line within {self.config.timeout:g} s"))
                        return
                    if not chunk:
                        # The client finished sending: a last line without its newline
                        # (`printf '{"op":"ping"}' | nc -U`) is still a request.
                        if buffer.strip():
                            self._send(conn, self._answer(buffer, peer))
                        return
                    buffer += chunk
                    continue
                line, buffer = buffer[:newline], buffer[newline + 1:]
                if len(line) > self.config.max_request_bytes:
                    self._send(conn, protocol.error_reply(
                        protocol.TOO_LARGE, f"request longer than {self.config.max_request_bytes} bytes"))
                    return
                if line.strip():
                    self._send(conn, self._answer(line, peer))
                deadline = time.monotonic() + self.config.timeout
        except OSError:
            pass  # the client went away mid-reply
        finally:
            with self._active_lock:
                self._active -= 1
                held = self._per_uid.pop(peer.uid) - 1
                if held:
                    self._per_uid[peer.uid] = held
                self._connections.discard(conn)
                self._slot_free.notify()
            conn.close()
            self.on_cpu(time.thread_time() - cpu)

    def _answer(self, line: bytes, peer: Peer) -> dict:
        started = time.monotonic()
        request_id = None
        ok = False
        try:
            request = protocol.parse_request(line, self.config.max_k)
            request_id = request.id
            reply = self.handler(request, peer)
            ok = True
            return reply
        except ProtocolError as exc:
            return protocol.error_reply(exc.code, str(exc), getattr(exc, "request_id", request_id))
        except NasclipError as exc:
            return protocol.error_reply(protocol.INTERNAL, str(exc), request_id)
        except Exception:
            log.exception("query failed")
            return protocol.error_reply(protocol.INTERNAL, "internal error; see the nasclipd log", request_id)
        finally:
            took = time.monotonic() - started
            with self._active_lock:
                if ok:
                    self.served += 1
                else:
                    self.errors += 1
            if took > SLOW_SECONDS:
                log.info("slow query (%.1f s) from uid %d: %s", took, peer.uid, line[:200].decode("utf-8", "replace"))

    def _send(self, conn: socket.socket, reply: dict) -> None:
        conn.settimeout(self.config.timeout)  # a client that never reads cannot hold us forever
        conn.sendall(protocol.encode(reply))
