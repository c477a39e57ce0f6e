"""Talking to nasclipd over its Unix socket (used by nasclip-query and nasclip)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from .config import load_config
from .errors import DaemonUnavailable, NasclipError, SocketAccessDenied

DEFAULT_SOCKET = Path("/run/nasclip/query.sock")
DEFAULT_CONFIG = Path("/etc/nasclip/nasclip.yaml")


def resolve_socket(socket_path: str | None, config_path: str | None) -> Path:
    """--socket, else the config's socket, else $NASCLIP_SOCKET, else the system default."""
    if socket_path:
        return Path(socket_path)
    if config_path:
        return load_config(config_path).socket
    if os.environ.get("NASCLIP_SOCKET"):
        return Path(os.environ["NASCLIP_SOCKET"])
    if DEFAULT_CONFIG.is_file():
        try:
            return load_config(DEFAULT_CONFIG).socket
        except NasclipError:
            pass
    return DEFAULT_SOCKET


class Client:
    """One connection to the daemon; requests are answered in order."""

    def __init__(self, path: Path, timeout: float = 60.0) -> None:
        self.path = path
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            sock.close()
            raise DaemonUnavailable(f"nasclipd is not running: no socket at {path}") from None
        except ConnectionRefusedError:
            sock.close()
            raise DaemonUnavailable(f"nasclipd is not running: nothing answers on {path}") from None
        except PermissionError:
            sock.close()
            raise SocketAccessDenied(
                f"permission denied on {path}: ask the NAS admin to add you to the socket's group "
                "(query.socket_group, default 'nasclip')") from None
        except OSError as exc:
            sock.close()
            raise DaemonUnavailable(f"cannot connect to {path}: {exc.strerror or exc}") from None
        self._sock = sock
        self._reader = sock.makefile("rb")

    def request(self, **fields: Any) -> dict:
        """Send one request; return the reply (ok or error) as a dict."""
        line = json.dumps({"v": 1, **fields}, ensure_ascii=True).encode("ascii") + b"\n"
        try:
            self._sock.sendall(line)
            reply = self._reader.readline()
        except socket.timeout:
            raise DaemonUnavailable(f"nasclipd did not answer within the timeout on {self.path}") from None
        except OSError as exc:
            raise DaemonUnavailable(f"connection to nasclipd on {self.path} failed: {exc}") from None
        if not reply:
            raise DaemonUnavailable(f"nasclipd closed the connection on {self.path}")
        return json.loads(reply)

    def close(self) -> None:
        self._reader.close()
        self._sock.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RequestFailed(NasclipError):
    """The daemon answered with an error object."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code


def call(path: Path, **fields: Any) -> dict:
    """One request on a fresh connection; RequestFailed for an error reply."""
    with Client(path) as client:
        reply = client.request(**fields)
    if not reply.get("ok"):
        error = reply.get("error") or {}
        raise RequestFailed(error.get("code", "?"), error.get("message", "request failed"))
    return reply
