"""The outermost layer of the web app: what every request passes before a route sees it (security.py's rules).

Refuses, before any route runs: headers and query string beyond 16 KiB, a
body larger than a login could be, a state-changing request from another
site, and the trusted proxy's user header from anyone but the trusted proxy. Adds the security headers to
every answer, errors included, and ``Cache-Control: no-store`` to API
answers that set no caching of their own.
"""

from __future__ import annotations

import json
import logging
from typing import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import WebConfig
from .security import proxy_user, same_ip, same_origin, security_headers, too_large

log = logging.getLogger("nasclip.web")

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# Headers and query string together: a browser's are a few hundred bytes. (uvicorn's h11 bounds only what
# arrives in pieces; a request read at once may carry up to 64 KiB.)
MAX_HEAD = 16 << 10


class Guard:
    """ASGI middleware applying the request rules and the response headers."""

    def __init__(self, app: ASGIApp, config: Callable[[], WebConfig], tls: bool) -> None:
        self.app = app
        self.config = config
        self.tls = tls
        self.headers = security_headers(tls)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self.app(scope, receive, send)
            return  # no websockets
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        web = self.config()
        peer = scope["client"][0] if scope.get("client") else None
        _, unbidden = proxy_user(peer, headers, web.trusted_proxy, web.proxy_user_header)
        is_api = scope["path"].startswith("/api/")

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                names = {k.lower() for k, _ in raw}
                raw += [(k, v) for k, v in self.headers if k not in names]
                if is_api and b"cache-control" not in names:
                    raw.append((b"cache-control", b"no-store"))
                message = {**message, "headers": raw}
            await send(message)

        refusal: tuple[int, str, str] | None = None
        if sum(len(k) + len(v) for k, v in scope["headers"]) + len(scope.get("query_string", b"")) > MAX_HEAD:
            refusal = (431, "too_large", f"request headers and query longer than {MAX_HEAD} bytes")
        elif unbidden:
            log.warning("refused a request from %s carrying %s: only web.trusted_proxy may send it", peer,
                        web.proxy_user_header)
            refusal = (403, "forbidden", f"the {web.proxy_user_header} header is accepted from the trusted proxy only")
        elif too_large(headers):
            refusal = (413, "too_large", "request body too large")
        elif scope["method"] not in SAFE_METHODS:
            from_proxy = web.trusted_proxy is not None and peer is not None and same_ip(peer, web.trusted_proxy)
            forwarded = headers.get("x-forwarded-host") if from_proxy else None
            if not same_origin(headers, scope.get("scheme", "http"), forwarded):
                refusal = (403, "forbidden", "cross-site request refused")
        if refusal is not None:
            status, code, message = refusal
            body = json.dumps({"v": 1, "ok": False, "error": {"code": code, "message": message}}).encode()
            await send_secured({"type": "http.response.start", "status": status,
                                "headers": [(b"content-type", b"application/json"),
                                            (b"content-length", str(len(body)).encode())]})
            await send_secured({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send_secured)
