"""What `nasclip doctor` says about the web front end (one finding a line, with a hint).

A page that takes passwords and shows photos must not be reachable from the
network in clear text: listening beyond the loopback addresses without TLS
(web.tls_cert/web.tls_key) or a trusted reverse proxy in front is a warning.
The password file must be private, and a front end without web users can
log nobody in.
"""

from __future__ import annotations

import ipaddress
import stat
from typing import Iterator, Literal

from ..config import Config, parse_listen
from .passwords import FILE_NAME, PasswordFile, system_account

Finding = tuple[Literal["ok", "warn", "fail"], str, str, str]


def is_local(host: str) -> bool:
    """True for an address only this machine can reach (loopback)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def web_findings(config: Config) -> Iterator[Finding]:
    web = config.web
    if web.listen is None:
        yield "ok", "web", "web front end off (web.listen is not set)", ""
        return
    host, _ = parse_listen(web.listen)
    if not is_local(host) and web.tls_cert is None and web.trusted_proxy is None:
        yield ("warn", "web", f"web.listen {web.listen} is reachable from the network without TLS or a trusted "
               "proxy: passwords, cookies and photos cross it in clear text",
               "set web.tls_cert and web.tls_key, or listen on 127.0.0.1 behind a reverse proxy with HTTPS "
               "(web.trusted_proxy); docs/web.md")
    else:
        how = "TLS" if web.tls_cert else "behind the trusted proxy " + str(web.trusted_proxy) \
            if web.trusted_proxy else "this machine only"
        yield "ok", "web", f"web front end on {web.listen} ({how})", ""
    path = config.state_dir / FILE_NAME
    try:
        st = path.stat()
    except OSError:
        st = None
    if st is not None and stat.S_IMODE(st.st_mode) & 0o077:
        yield ("fail", "web", f"{path} may be read by others (mode {stat.S_IMODE(st.st_mode):04o}); it holds the web "
               "password hashes", f"chmod 600 {path}")
    try:
        users = PasswordFile(config.state_dir).users() if st is not None else {}
    except Exception as exc:  # a damaged file: the message says how to fix it
        yield "fail", "web", str(exc), ""
        return
    gone = sorted(name for name in users if system_account(name) is None)
    if gone:
        yield ("warn", "web", f"web passwords of users that no longer exist: {', '.join(gone)}",
               "nasclip web remove " + gone[0])
    if not users and web.trusted_proxy is None:
        yield "warn", "web", "no web users yet: nobody can log in", "nasclip web passwd USER"
    elif users:
        yield "ok", "web", f"{len(users)} web user{'s' * (len(users) != 1)}: {', '.join(sorted(users)[:10])}", ""
