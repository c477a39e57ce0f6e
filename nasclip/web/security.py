"""The rules every web request passes: headers, origin, size, the trusted proxy. Pure functions.

- Every response carries a strict Content-Security-Policy (only the daemon's
  own scripts, styles and images; no inline code, no frames, no other site),
  ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``,
  ``X-Frame-Options: DENY``, a Permissions-Policy that turns off what the
  page never uses, ``Cross-Origin-Opener/Resource-Policy: same-origin``, and
  HSTS under TLS. API answers are ``Cache-Control: no-store``.
- A state-changing request (POST) is refused unless it comes from the page's
  own origin: an ``Origin`` header must name this server; without one, the
  browser's ``Sec-Fetch-Site`` must not say another site. Scripts (curl)
  send neither and are no cross-site forgery. The session cookie is
  SameSite=Strict besides, and the login takes JSON only (a form on another
  site cannot send it without asking first).
- The trusted proxy's user header is believed only from its address; the
  same header from anyone else is refused outright (a misconfigured proxy
  path must not become a way to be anybody).
"""

from __future__ import annotations

import ipaddress
from typing import Mapping
from urllib.parse import urlsplit

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; media-src 'self'; "
       "connect-src 'self'; manifest-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
MAX_BODY = 16 << 10  # a login is a few hundred bytes


def security_headers(tls: bool) -> list[tuple[bytes, bytes]]:
    """The headers every response gets."""
    headers = [
        (b"content-security-policy", CSP.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"cross-origin-resource-policy", b"same-origin"),
    ]
    if tls:
        headers.append((b"strict-transport-security", b"max-age=31536000"))
    return headers


def same_origin(headers: Mapping[str, str], scheme: str, forwarded_host: str | None = None) -> bool:
    """True if a state-changing request may be from this server's own page (see the module's rules).

    forwarded_host: the host a trusted proxy says the browser asked for (its scheme may differ from ours).
    """
    origin = headers.get("origin")
    if not origin:
        return headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        return False  # "null" (a sandboxed frame, a file), or not an origin at all
    ours = {_origin(scheme, headers.get("host", ""))}
    if forwarded_host:
        ours |= {_origin("https", forwarded_host), _origin("http", forwarded_host)}
    return _origin(parts.scheme, parts.netloc) in ours


def _origin(scheme: str, netloc: str) -> str:
    """scheme://host[:port] in lower case, without the scheme's default port."""
    netloc = netloc.lower()
    default = ":443" if scheme == "https" else ":80"
    if netloc.endswith(default):
        netloc = netloc[: -len(default)]
    return f"{scheme}://{netloc}"


def too_large(headers: Mapping[str, str], limit: int = MAX_BODY) -> bool:
    """True if a request says it carries more than limit bytes (chunked bodies are counted as they arrive)."""
    length = headers.get("content-length")
    if length is None:
        return False
    return not length.isdigit() or int(length) > limit


def client_address(peer: str | None, headers: Mapping[str, str], trusted_proxy: str | None) -> str:
    """The address failed logins are counted against: the proxy's client where the proxy is trusted."""
    if peer is not None and trusted_proxy is not None and same_ip(peer, trusted_proxy):
        forwarded = headers.get("x-forwarded-for", "").split(",")[-1].strip()
        if forwarded:
            return forwarded[:64]
    return peer or "unknown"


def proxy_user(peer: str | None, headers: Mapping[str, str], trusted_proxy: str | None,
               header: str) -> tuple[str | None, bool]:
    """(user the trusted proxy names, whether the request must be refused for carrying the header unbidden)."""
    value = headers.get(header.lower())
    if value is None:
        return None, False
    if trusted_proxy is None or peer is None or not same_ip(peer, trusted_proxy):
        return None, True
    value = value.strip()
    return (value or None), not value


def same_ip(a: str, b: str) -> bool:
    """True if two address strings name the same IP (an IPv4-mapped IPv6 address is its IPv4 one)."""
    try:
        first, second = ipaddress.ip_address(a), ipaddress.ip_address(b)
    except ValueError:
        return False
    if isinstance(first, ipaddress.IPv6Address) and first.ipv4_mapped is not None:
        first = first.ipv4_mapped
    if isinstance(second, ipaddress.IPv6Address) and second.ipv4_mapped is not None:
        second = second.ipv4_mapped
    return first == second


def byte_range(header: str | None, size: int) -> tuple[int, int] | None | bool:
    """The one range [start, end] (inclusive) a Range header asks of size bytes.

    None: serve the whole file (no header, a form this server does not
    serve, several ranges). False: unsatisfiable (416).
    """
    if header is None:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None  # several ranges: the whole file is a valid answer
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == "") or first == last == "":
        return None  # malformed: RFC 9110 says ignore it
    if first == "":  # the last N bytes
        count = int(last)
        if count == 0 or size == 0:
            return False
        return max(0, size - count), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        return False
    return start, end
