"""The web front end's routes (docs/web.md): the page, login, search, thumbnails, originals, status.

Every search is the socket protocol's own request (query.py) answered by the
daemon's own handler for the web user's Peer: the uid, primary group and
supplementary groups of their NAS account, so the access code filters
exactly as it does for that user on the socket. Thumbnails and originals
are reached only through a catalog id and photos.open_photo; "more like
this" names a photo by id too, resolved to its path only after the same
check. Blocking work (searches, scrypt, decoding, reads) runs in worker
threads, never on the event loop.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Callable

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request as HttpRequest
from starlette.responses import Response
from starlette.routing import Route

from ..config import Config, WebConfig
from ..errors import DecodeError, NasclipError, ProtocolError
from ..query.access import Peer
from ..query.protocol import Request
from ..shares import Shares
from ..store.reader import CatalogReader
from . import responses as out
from .auth import COOKIE, LoginLimiter, Sessions, peer_of_account
from .passwords import Account, PasswordFile, system_account
from .photos import NotFound, open_photo
from .query import WebSearch, validated, web_search
from .security import MAX_BODY, byte_range, client_address, proxy_user, same_ip
from .thumbs import ThumbBusy, ThumbCache

log = logging.getLogger("nasclip.web")

Handler = Callable[[Request, Peer], dict]
MAX_NAME = 256
LOGIN_HASHES = 2  # scrypt runs at once (32 MiB each): a flood of logins cannot make the daemon large


@dataclass
class Backend:
    """What the web front end needs of the daemon."""

    config: Callable[[], Config]
    handle: Handler
    reader: Callable[[], CatalogReader]
    shares: Callable[[], Shares]


class WebApp:
    """The routes and the state they share."""

    def __init__(self, backend: Backend, passwords: PasswordFile, sessions: Sessions, limiter: LoginLimiter,
                 thumbs: ThumbCache, tls: bool) -> None:
        self.backend = backend
        self.passwords = passwords
        self.sessions = sessions
        self.limiter = limiter
        self.thumbs = thumbs
        self.tls = tls
        self.page = out.PageFiles()
        self._hashing = anyio.CapacityLimiter(LOGIN_HASHES)
        routes = [
            Route("/", self.index, methods=["GET"]),
            Route("/static/{name:str}", self.static, methods=["GET"]),
            Route("/api/login", self.login, methods=["POST"]),
            Route("/api/logout", self.logout, methods=["POST"]),
            Route("/api/me", self.me, methods=["GET"]),
            Route("/api/search", self.search, methods=["GET"]),
            Route("/api/status", self.status, methods=["GET"]),
            Route("/api/thumb/{id:int}", self.thumb, methods=["GET"]),
            Route("/api/photo/{id:int}", self.photo, methods=["GET"]),
        ]
        self.app = Starlette(routes=routes, exception_handlers={HTTPException: self._http_error,
                                                                Exception: self._crash})

    @property
    def web(self) -> WebConfig:
        return self.backend.config().web

    # ------------------------------------------------------------------ who is asking

    def account(self, request: HttpRequest) -> Account | None:
        """The web user of a request: named by the trusted proxy, or by a live session whose password still stands."""
        web = self.web
        named, _ = proxy_user(_peer_ip(request), request.headers, web.trusted_proxy, web.proxy_user_header)
        if named is not None:
            return system_account(named)  # refusals of the header from others are the middleware's
        token = request.cookies.get(COOKIE)
        session = self.sessions.get(token)
        if session is None:
            return None
        if self.passwords.users().get(session.account.name) != session.credential:
            self.sessions.end(token)  # `nasclip web remove` or a new password: logged out at once
            return None
        return session.account

    def _unauthorized(self) -> Response:
        return out.error(out.UNAUTHORIZED, "log in first", 401)

    # ------------------------------------------------------------------ page

    async def index(self, request: HttpRequest) -> Response:
        return self.page.response("index.html", request.headers.get("if-none-match"))

    async def static(self, request: HttpRequest) -> Response:
        name = request.path_params["name"]
        if name == "index.html":
            return out.not_found()
        return self.page.response(name, request.headers.get("if-none-match"))

    # ------------------------------------------------------------------ sessions

    async def login(self, request: HttpRequest) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return out.error("bad_request", "send the login as JSON: {\"user\": ..., \"password\": ...}", 415)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return out.error("too_large", f"a login is at most {MAX_BODY} bytes", 413)
        try:
            data = json.loads(body)
            user, password = data["user"], data["password"]
            if not isinstance(user, str) or not isinstance(password, str) or set(data) != {"user", "password"}:
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return out.error("bad_request", "send {\"user\": \"name\", \"password\": \"...\"} and nothing else", 400)
        if not 0 < len(user) <= MAX_NAME or len(password) > 1024:
            return out.error("bad_request", "user name or password too long", 400)
        web = self.web
        address = client_address(_peer_ip(request), request.headers, web.trusted_proxy)
        wait = self.limiter.retry_after(user, address)
        if wait > 0:
            log.warning("web login refused for %r from %s: too many failed attempts", user, address)
            return out.error(out.TOO_MANY, f"too many failed logins; try again in {int(wait) + 1} s", 429,
                             {"retry-after": str(int(wait) + 1)})
        checked = await anyio.to_thread.run_sync(self.passwords.check, user, password, limiter=self._hashing)
        if checked is None:
            self.limiter.failed(user, address)
            log.warning("web login failed for %r from %s", user, address)
            return out.error(out.UNAUTHORIZED, "wrong user name or password", 401)
        account, credential = checked
        self.limiter.succeeded(user)
        token = self.sessions.create(account, credential)
        log.info("web login: %s from %s", account.name, address)
        response = out.json_response({"ok": True, "user": account.name})
        peer = _peer_ip(request)
        proxied = web.trusted_proxy is not None and peer is not None and same_ip(peer, web.trusted_proxy)
        secure = self.tls or (proxied and request.headers.get("x-forwarded-proto") == "https")
        response.set_cookie(COOKIE, token, max_age=int(web.session_hours * 3600), path="/", secure=secure,
                            httponly=True, samesite="strict")
        return response

    async def logout(self, request: HttpRequest) -> Response:
        self.sessions.end(request.cookies.get(COOKIE))
        response = out.json_response({"ok": True})
        response.delete_cookie(COOKIE, path="/", secure=self.tls, httponly=True, samesite="strict")
        return response

    async def me(self, request: HttpRequest) -> Response:
        account = self.account(request)
        if account is None:
            return self._unauthorized()
        config = self.backend.config()
        return out.json_response({"ok": True, "user": account.name, "page_size": config.web.page_size,
                                  "max_k": config.query.max_k})

    # ------------------------------------------------------------------ searching

    async def search(self, request: HttpRequest) -> Response:
        account = self.account(request)
        if account is None:
            return self._unauthorized()
        items = request.query_params.multi_items()
        params = dict(items)
        if len(params) != len(items):
            return out.error("bad_request", "each parameter may be given once", 400)
        config = self.backend.config()
        peer = peer_of_account(account)
        try:
            wanted = web_search(params, config.web.page_size, config.query.max_k)
            reply = await anyio.to_thread.run_sync(self._search, wanted, peer)
        except NotFound:
            return out.not_found()  # "more like" a photo that is not there, or not the user's to see
        except ProtocolError as exc:
            return out.error(exc.code, str(exc))
        results = reply.pop("results")
        reply.update(results=results[wanted.offset:], offset=wanted.offset,
                     more=len(results) >= wanted.offset + wanted.k)
        return out.json_response(reply)

    def _search(self, wanted: WebSearch, peer: Peer) -> dict:
        config = self.backend.config()
        image = None
        if wanted.like is not None:
            with open_photo(self.backend.reader(), self.backend.shares(), peer, wanted.like) as photo:
                # The protocol opens a query photo from / without following links: a share root
                # configured through one (/var/services/photo) is named by its real path.
                image = photo.resolved
        return self.backend.handle(validated(wanted, image, config.query.max_k), peer)

    async def status(self, request: HttpRequest) -> Response:
        account = self.account(request)
        if account is None:
            return self._unauthorized()
        reply = await anyio.to_thread.run_sync(self.backend.handle, Request("status"), peer_of_account(account))
        return out.json_response({"ok": True, "user": account.name, "status": reply["status"]})

    # ------------------------------------------------------------------ photos

    async def thumb(self, request: HttpRequest) -> Response:
        account = self.account(request)
        if account is None:
            return self._unauthorized()
        photo_id = request.path_params["id"]
        peer = peer_of_account(account)
        at = _seconds(request.query_params.get("t"))  # a video's moment
        if at is False:
            return out.error("bad_request", "'t' must be seconds from 0", 400)

        def work() -> tuple[bytes, str]:
            with open_photo(self.backend.reader(), self.backend.shares(), peer, photo_id) as photo:
                etag = '"t' + self.thumbs.key(photo, at) + '"'
                if request.headers.get("if-none-match") == etag:
                    return b"", etag
                data, _ = self.thumbs.get(photo, at)
                return data, etag
        try:
            data, etag = await anyio.to_thread.run_sync(work)
        except NotFound:
            return out.not_found()
        except ThumbBusy as exc:
            return out.error("busy", str(exc), 503, {"retry-after": "2"})
        except DecodeError as exc:
            return out.error("bad_request", f"no thumbnail: {exc}", 422)
        headers = {"etag": etag, "cache-control": "private, max-age=86400"}
        if not data:
            return Response(status_code=304, headers=headers)
        return Response(data, 200, headers, "image/jpeg")

    async def photo(self, request: HttpRequest) -> Response:
        account = self.account(request)
        if account is None:
            return self._unauthorized()
        peer = peer_of_account(account)
        try:
            photo = await anyio.to_thread.run_sync(open_photo, self.backend.reader(), self.backend.shares(), peer,
                                                   request.path_params["id"])
        except NotFound:
            return out.not_found()
        span = byte_range(request.headers.get("range"), photo.st.st_size)
        if span is False:
            size = photo.st.st_size
            photo.close()
            return Response(status_code=416, headers={"content-range": f"bytes */{size}"})
        if request.headers.get("if-range") not in (None, photo.etag):
            span = None  # the file changed since the browser's first part: all of it again
        return out.OriginalResponse(photo, span if isinstance(span, tuple) else None)

    # ------------------------------------------------------------------ errors

    async def _http_error(self, request: HttpRequest, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 400)
        if status == 404:
            return out.not_found()
        if status == 405:
            return out.error("bad_request", "method not allowed here", 405)
        return out.error("bad_request", str(getattr(exc, "detail", "bad request")), status)

    async def _crash(self, request: HttpRequest, exc: Exception) -> Response:
        if isinstance(exc, NasclipError):
            log.error("web request %s failed: %s", request.url.path, exc)
            return out.error("internal", str(exc), 500)
        log.error("web request %s failed", request.url.path, exc_info=exc)
        return out.error("internal", "internal error; see the nasclipd log", 500)


def _seconds(value: str | None) -> float | None | bool:
    """A thumbnail's ?t=: seconds into a video, None when absent, False when it is not a time."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return False
    return seconds if 0 <= seconds <= 1e7 else False


def _peer_ip(request: HttpRequest) -> str | None:
    return request.client.host if request.client else None
