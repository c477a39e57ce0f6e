"""The web front end as one more part of nasclipd: start, loop, stop, close.

uvicorn serves the Starlette app on its own thread and event loop. The
listening socket is bound in ``start()``, and TLS files are loaded there
too, so a port in use or a bad certificate stops nasclipd at start-up with
a message naming the setting, like every other part's mistakes. ``loop()``
(one housekeeping step, which a test calls directly) forgets expired
sessions and stale login failures. ``stop()`` asks uvicorn to finish the
requests in flight; ``close()`` waits for it (a few seconds, then it drops
the connections left) and is idempotent. uvicorn installs no signal
handlers off the main thread: SIGTERM stays the daemon's.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from typing import Any

import uvicorn

from ..config import Config, parse_listen
from ..errors import NasclipError
from ..indexing.bounded import decode_limits
from ..lifecycle import Worker
from ..media.video import video_limits
from .app import Backend, WebApp
from .auth import LoginLimiter, Sessions
from .middleware import Guard
from .passwords import PasswordFile
from .thumbs import ThumbCache

log = logging.getLogger("nasclip.web")

HOUSEKEEPING = 60.0  # seconds between prunes of sessions and login failures
START_TIMEOUT = 10.0
STOP_GRACE = 5  # seconds requests in flight get at close()


def bind(listen: str) -> socket.socket:
    """A listening TCP socket on web.listen; NasclipError naming the setting if it cannot be had."""
    host, port = parse_listen(listen)
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise NasclipError(f"web.listen {listen}: cannot listen there: {exc.strerror or exc} (under systemd the "
                           "unit needs the network: see docs/web.md)") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # '::' takes IPv4 too
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
            hint = "another program on that port, or not an address of this machine? change web.listen"
        else:  # EACCES below port 1024; EAFNOSUPPORT or EPERM under the shipped unit's sandbox
            hint = ("under systemd the unit needs the network: PrivateNetwork=no and RestrictAddressFamilies="
                    "AF_UNIX AF_INET AF_INET6 in a drop-in (docs/web.md); ports below 1024 need root")
        raise NasclipError(f"web.listen {listen}: cannot listen there: {exc.strerror or exc} ({hint})") from None
    sock.set_inheritable(True)
    return sock


class WebServer:
    """The web front end; the daemon holds it as a Component."""

    def __init__(self, config: Config, backend: Backend) -> None:
        self.config = config
        web = config.web
        self.passwords = PasswordFile(config.state_dir)
        self.sessions = Sessions(web)
        self.limiter = LoginLimiter(web)
        self.thumbs = ThumbCache(config.state_dir, web.thumb_cache_bytes, web.thumb_size, decode_limits(config.indexer),
                                 web.thumb_workers, video_limits(config))
        self.tls = web.tls_cert is not None
        self.backend = backend
        self.app = WebApp(backend, self.passwords, self.sessions, self.limiter, self.thumbs, self.tls)
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._worker = Worker("nasclip-web-housekeeping", self.loop, log, "web housekeeping")
        self.url = ""

    def start(self) -> None:
        web = self.config.web
        assert web.listen is not None, "started only when web.listen is set"
        settings = uvicorn.Config(
            Guard(self.app.app, lambda: self.backend.config().web, self.tls),
            log_config=None, access_log=False, proxy_headers=False, server_header=False, lifespan="off",
            ws="none", http="h11", loop="asyncio", limit_concurrency=web.max_connections, timeout_keep_alive=5,
            h11_max_incomplete_event_size=16 << 10, timeout_graceful_shutdown=int(STOP_GRACE),
            ssl_certfile=str(web.tls_cert) if web.tls_cert else None,
            ssl_keyfile=str(web.tls_key) if web.tls_key else None)
        try:
            settings.load()  # reads the TLS files: a bad one is a start-up error, not a dead thread
        except Exception as exc:  # ssl.SSLError, OSError, ...
            raise NasclipError(f"web.tls_cert / web.tls_key: cannot load {web.tls_cert} and {web.tls_key}: "
                               f"{exc}") from None
        self._socket = bind(web.listen)
        self._server = uvicorn.Server(settings)
        self._thread = threading.Thread(target=self._serve, name="nasclip-web", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.close()
                raise NasclipError(f"the web front end did not start on {web.listen}; see the log above")
            time.sleep(0.01)
        host, port = self._socket.getsockname()[:2]
        self.url = f"{'https' if self.tls else 'http'}://{host if ':' not in host else f'[{host}]'}:{port}/"
        self._worker.start()
        users = len(self.passwords.users())
        log.info("web front end on %s (%d web user%s)%s", self.url, users, "s" * (users != 1),
                 "" if users else "; give one a password: nasclip web passwd USER")

    def _serve(self) -> None:
        assert self._server is not None and self._socket is not None
        try:
            self._server.run(sockets=[self._socket])
        except Exception:
            log.exception("the web front end stopped")

    def loop(self) -> float:
        """One housekeeping step: forget expired sessions and old login failures; seconds until the next."""
        self.sessions.prune()
        self.limiter.prune()
        return HOUSEKEEPING

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._worker.stop()

    def close(self) -> None:
        self.stop()
        self._worker.join()
        if self._thread is not None:
            self._thread.join(STOP_GRACE + 1)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(2)
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._worker.is_alive()

    def status(self) -> dict[str, Any]:
        return {"url": self.url, "sessions": len(self.sessions), "thumbnails": vars(self.thumbs.stats).copy()}

    def reconfigure(self, config: Config) -> None:
        """Sessions, login limits and the thumbnail cache's size apply at once; the rest needs a restart."""
        self.config = config
        self.sessions.config = self.limiter.config = config.web
        self.thumbs.max_bytes = config.web.thumb_cache_bytes
