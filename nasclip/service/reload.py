"""Config reload (SIGHUP, `systemctl reload nasclip`): what changed, what applies live, what waits.

``plan_reload`` compares the running config with a freshly loaded one. Most
settings are read where they are used and apply at once; the few listed in
``RESTART_ONLY`` are baked into open files, sessions or thread pools at
start-up. For those the running value is kept, and the plan says that a
restart is needed, so the daemon can log it and `nasclip status` can show it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..config import Config

# Settings fixed at start-up, with the reason a person is told.
RESTART_ONLY = {
    "model": "the model is loaded at start-up",
    "state_dir": "the catalog and the index are open there",
    "socket": "clients are connected to the socket that is open",
    "indexer.backend": "the encoder session is opened at start-up",
    "indexer.threads": "the encoder session is opened at start-up",
    "indexer.onnx_providers": "the encoder session is opened at start-up",
    "indexer.decode_threads": "the decode pool is created at start-up",
    "index.type": "the index is loaded at start-up",
    "index.search_threads": "the index is loaded at start-up",
    "query.max_connections": "the connection pool is created at start-up",
    "query.max_image_decodes": "the --like decode slots are created at start-up",
    "query.socket_group": "the socket's owner is set when it is created",
    "query.socket_mode": "the socket's mode is set when it is created",
    "web.listen": "the web front end listens where it started",
    "web.tls_cert": "the web front end's TLS files are loaded at start-up",
    "web.tls_key": "the web front end's TLS files are loaded at start-up",
    "web.max_connections": "the web server's connection limit is set at start-up",
    "web.thumb_workers": "the thumbnail decode slots are created at start-up",
    "web.thumb_size": "cached thumbnails have the size they were made with",
    "ocr.enabled": "text recognition is started (or not) at start-up",
    "ocr.threads": "the text-recognition sessions are opened at start-up",
    "ocr.nice": "the text-recognition thread's priority is set at start-up",
}


@dataclass(frozen=True)
class ReloadPlan:
    """The outcome of comparing two configs."""

    config: Config                     # to run with now: the new file, restart-only settings as running
    applied: tuple[str, ...]           # changed settings that take effect now
    restart: tuple[str, ...]           # changed settings that wait for a restart
    shares_added: tuple[str, ...] = ()
    shares_removed: tuple[str, ...] = ()
    shares_changed: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.applied or self.restart)

    def describe(self) -> str:
        """What took effect, for the log: 'shares added b, removed a; applied log_level, query.max_k'."""
        parts = []
        shares = [f"{what} {', '.join(names)}" for what, names in (
            ("added", self.shares_added), ("removed", self.shares_removed), ("changed", self.shares_changed))
            if names]
        if shares:
            parts.append("shares " + ", ".join(shares))
        settings = [key for key in self.applied if key != "shares"]
        if settings:
            parts.append("applied " + ", ".join(settings))
        if not parts:
            parts.append("nothing that applies live changed" if self.restart else "nothing changed")
        return "; ".join(parts)


def _differences(old: object, new: object, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config (sub)trees; shares are compared apart."""
    keys = []
    for f in dataclasses.fields(old):  # type: ignore[arg-type]
        if f.metadata.get("internal") or f.name == "shares":
            continue
        a, b = getattr(old, f.name), getattr(new, f.name)
        if dataclasses.is_dataclass(a):
            keys += _differences(a, b, f"{prefix}{f.name}.")
        elif a != b:
            keys.append(f"{prefix}{f.name}")
    return keys


def _keep(config: Config, running: Config, key: str) -> Config:
    """config with the setting at key (one or two levels deep) taken from running."""
    section, _, name = key.partition(".")
    if not name:
        return dataclasses.replace(config, **{section: getattr(running, section)})
    value = getattr(getattr(running, section), name)
    return dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **{name: value})})


def plan_reload(running: Config, new: Config) -> ReloadPlan:
    """What a reload from running to new does."""
    keys = _differences(running, new)
    restart = tuple(k for k in keys if k in RESTART_ONLY)
    effective = new
    for key in restart:
        effective = _keep(effective, running, key)
    old_shares = {s.name: s for s in running.shares}
    new_shares = {s.name: s for s in new.shares}
    added = tuple(n for n in new_shares if n not in old_shares)
    removed = tuple(n for n in old_shares if n not in new_shares)
    changed = tuple(n for n in new_shares if n in old_shares and new_shares[n] != old_shares[n])
    applied = tuple(k for k in keys if k not in RESTART_ONLY)
    if added or removed or changed:
        applied = ("shares",) + applied
    return ReloadPlan(effective, applied, restart, added, removed, changed)
