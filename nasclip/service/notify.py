"""systemd's notify protocol: READY, RELOADING, STATUS, WATCHDOG and STOPPING.

Uses systemd-python where it is installed; otherwise speaks the protocol
itself, which is one datagram to ``$NOTIFY_SOCKET`` (a path, or an abstract
socket written with a leading '@'). Without ``$NOTIFY_SOCKET`` (not started
by systemd) every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Mapping

log = logging.getLogger("nasclip.notify")


class Notifier:
    """Sends state changes to the service manager, if there is one."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET") or None
        try:
            self._watchdog_usec = max(0, int(env.get("WATCHDOG_USEC", "0") or 0))
        except ValueError:
            self._watchdog_usec = 0
        watchdog_pid = env.get("WATCHDOG_PID")
        if watchdog_pid and watchdog_pid != str(os.getpid()):
            self._watchdog_usec = 0  # meant for another process
        # libsystemd reads $NOTIFY_SOCKET itself, so it only fits our own environment.
        self._libsystemd = environ is None
        self._socket: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half the timeout systemd set), or None."""
        return self._watchdog_usec / 2e6 if self._watchdog_usec else None

    def send(self, *lines: str) -> None:
        if self.address is None:
            return
        message = "\n".join(lines)
        if self._libsystemd:
            try:
                from systemd import daemon

                daemon.notify(message)
                return
            except ImportError:
                self._libsystemd = False
        address = self.address
        if address.startswith("@"):
            address = "\0" + address[1:]
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._socket.sendto(message.encode("utf-8"), address)
        except OSError as exc:  # a missing manager must not take the daemon down
            log.debug("notify %r failed: %s", message, exc)

    def ready(self, status: str = "") -> None:
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def reloading(self) -> None:
        """A reload begins; send ready() when it is done."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading the configuration")

    def stopping(self, status: str = "stopping") -> None:
        self.send("STOPPING=1", f"STATUS={status}")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
