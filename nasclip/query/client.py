"""Talking to nasclipd over its Unix socket (used by nasclip-query and nasclip)."""

from __future__ import annotations

import grp
import os
import pwd
import socket
import time
from pathlib import Path

from ..errors import DaemonUnavailable, NasclipError, SocketAccessDenied
from ..paths import DEFAULT_CONFIG, DEFAULT_SOCKET, config_relative
from . import wire as protocol

TYPE_CHECKING = False
if TYPE_CHECKING:  # importing typing costs a search from the shell milliseconds; annotations are strings here
    from typing import Any


def configured_socket(path: Path) -> Path:
    """The ``socket:`` setting of the config file at path (the default where it has none).

    Only that key is read: validating the rest is the daemon's business (and
    `nasclip config check`'s), and the config machinery would cost a search
    from the shell more time than the search itself.
    """
    import yaml

    try:
        with open(path, "rb") as handle:
            data = yaml.load(handle.read(1 << 20), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except OSError as exc:
        raise NasclipError(f"{path}: cannot read the config file: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise NasclipError(f"{path}: not valid YAML: {exc}") from None
    value = data.get("socket") if isinstance(data, dict) else None
    if value is None:
        return DEFAULT_SOCKET
    if not isinstance(value, str) or not value:
        raise NasclipError(f"{path}: socket: expected a path, got {value!r}")
    return config_relative(path.absolute().parent, value)


def resolve_socket(socket_path: str | None, config_path: str | None) -> Path:
    """--socket, else the config's socket, else $NASCLIP_SOCKET, else the system default."""
    if socket_path:
        return Path(socket_path)
    if config_path:
        return configured_socket(Path(config_path))
    if os.environ.get("NASCLIP_SOCKET"):
        return Path(os.environ["NASCLIP_SOCKET"])
    if DEFAULT_CONFIG.is_file():
        try:
            return configured_socket(DEFAULT_CONFIG)
        except NasclipError:
            pass
    return DEFAULT_SOCKET


def _denied_message(path: Path) -> str:
    """Why this user may not connect, and who can change that."""
    try:
        st = os.stat(path)
    except PermissionError:
        # The socket's folder is closed to us (systemd makes /run/nasclip 0750): its group decides.
        try:
            st = os.stat(path.parent)
        except OSError:
            return (f"permission denied: you may not enter the folder of {path}; ask the NAS admin "
                    "to let you use nasclip")
    except OSError:
        return f"permission denied on {path}"
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return (f"permission denied on {path}: only members of group '{group}' may search; ask the NAS admin "
            f"to add you (e.g. `usermod -aG {group} {_user()}`, then log in again)")


def _user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


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
            raise DaemonUnavailable(f"nasclipd is not running: no socket at {path} (start it with "
                                    "`systemctl start nasclip`, or give --socket/--config)") from None
        except ConnectionRefusedError:
            sock.close()
            raise DaemonUnavailable(f"nasclipd is not running: nothing answers on {path} "
                                    "(the socket is left over; `systemctl start nasclip`)") from None
        except PermissionError:
            sock.close()
            raise SocketAccessDenied(_denied_message(path)) from None
        except OSError as exc:
            sock.close()
            raise DaemonUnavailable(f"cannot connect to {path}: {exc.strerror or exc}") from None
        self._sock = sock
        self._reader = sock.makefile("rb")

    def request(self, **fields: Any) -> dict:
        """Send one request; return the reply (ok or error) as a dict."""
        line = protocol.request_line(**fields)
        try:
            try:
                self._sock.sendall(line)
            except (BrokenPipeError, ConnectionResetError):
                pass  # a full server answers 'busy' and hangs up at once: that reply is still to be read
            reply = self._reader.readline()
        except socket.timeout:
            raise DaemonUnavailable(f"nasclipd did not answer within the timeout on {self.path}") from None
        except OSError as exc:
            raise DaemonUnavailable(f"connection to nasclipd on {self.path} failed: {exc}") from None
        if not reply:
            raise DaemonUnavailable(f"nasclipd closed the connection on {self.path}")
        data = protocol.decode_reply(reply)
        if data is None:
            raise DaemonUnavailable(f"{self.path} answered something that is not nasclip's protocol")
        return data

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


def call(path: Path, *, patience: float = 10.0, **fields: Any) -> dict:
    """One request on a fresh connection; RequestFailed for an error reply.

    A ``busy`` reply (every query slot taken) is retried with growing pauses
    for up to ``patience`` seconds before it counts as a failure.
    """
    deadline = time.monotonic() + patience
    pause = 0.05
    while True:
        with Client(path) as client:
            reply = client.request(**fields)
        if reply.get("ok"):
            return reply
        error = reply.get("error") or {}
        code = error.get("code", "?")
        if code == protocol.BUSY and time.monotonic() + pause < deadline:
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
            continue
        raise RequestFailed(code, error.get("message", "request failed"))
