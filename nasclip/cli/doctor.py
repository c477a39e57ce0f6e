"""`nasclip doctor`: checks of everything nasclipd depends on, one line each with a hint (web: web/checks.py).

Permissions are judged for the service user (``nasclip`` when it exists),
not for whoever runs the doctor — usually root, who may read anything. The
judgement uses each path's POSIX ACL, or its mode bits where it has none,
and the same of every folder above it, as the kernel does (acl.py, the code
the query server's access checks use). Folders with an ACL nasclip cannot
evaluate (NFSv4, as on ZFS with acltype=nfsv4) are reported: their photos
are shown to root only.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal

from ..config import CATALOG_FILE, Config
from ..display import group_digits, human_bytes, printable
from ..errors import (
    DaemonUnavailable,
    ModelError,
    NasclipError,
    SocketAccessDenied,
    StoreError,
)
from ..model import install as model_install
from ..model.spec import load_model_spec, model_files
from ..query import acl
from ..query.access import AccessCheck, Peer, groups_of
from ..query.client import call
from ..store.catalog import connect, integrity_problems
from ..store.statedir import loose_entries
from ..watch.scanner import PathFilter
from ..watch.watcher import max_user_watches
from ..web.checks import web_findings

Level = Literal["ok", "warn", "fail"]

SERVICE_USER = "nasclip"
# Above this share of fs.inotify.max_user_watches a share is close to falling back to polling.
WATCH_MARGIN = 0.8
# File systems where inotify sees only changes made by this machine.
NETWORK_FS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "fuse.sshfs", "fuse.rclone",
              "davfs", "fuse.davfs2", "afs"}
MIN_FREE_BYTES = 1 << 30

R, W, X = acl.R, acl.W, acl.X


@dataclass(frozen=True)
class Check:
    """One finding: how bad, about what, what was seen, what to do."""

    level: Level
    topic: str
    message: str
    hint: str = ""

    def line(self) -> str:
        hint = f"  → {self.hint}" if self.hint else ""
        return printable(f"{self.level:<4}  {self.topic:<7}  {self.message}{hint}")



# ---------------------------------------------------------------------- permissions


@dataclass(frozen=True)
class ServiceUser:
    """The account nasclipd runs as, for permission judgements."""

    name: str
    peer: Peer
    reader: acl.XattrReader = field(default=acl.read_xattr, compare=False)  # injectable: see tests/system/test_acl.py

    @classmethod
    def lookup(cls, name: str = SERVICE_USER) -> "ServiceUser | None":
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            return None
        return cls(name, Peer(0, entry.pw_uid, entry.pw_gid, groups_of(entry.pw_uid, entry.pw_gid)))

    @classmethod
    def current(cls) -> "ServiceUser":
        uid, gid = os.getuid(), os.getgid()
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        return cls(name, Peer(os.getpid(), uid, gid, groups_of(uid, gid)))

    def rules(self, path: Path) -> acl.Rules:
        """What decides access to path (a link's target, as the service reaches it through links)."""
        try:
            return acl.rules_of(os.path.realpath(path), self.reader)
        except OSError:
            return acl.MODE_ONLY

    def may(self, path: Path, st: os.stat_result, want: int) -> bool:
        """True if this user gets all of want (R|W|X) on path, whose stat is st.

        An ACL nasclip cannot evaluate is judged by the mode bits here: the
        kernel, not nasclip, decides what nasclipd may open, and
        check_shares reports such folders separately.
        """
        if self.peer.uid == 0:  # root may read anything, but runs only what has an x bit
            return not (want & X) or stat.S_ISDIR(st.st_mode) or bool(st.st_mode & 0o111)
        check = AccessCheck(self.peer, self.reader, unknown_acls_by_mode=True)
        return check.allows(os.path.realpath(path), st, want)

    def blocked_at(self, path: Path, want: int) -> Path | None:
        """The first path on the way to path (or path itself) this user may not use; None if all is well."""
        path = path.absolute()
        for folder in reversed(path.parents):
            try:
                if not self.may(folder, os.stat(folder), X):
                    return folder
            except OSError:
                return folder
        try:
            return None if self.may(path, os.stat(path), want) else path
        except OSError:
            return path


def _fix_hint(path: Path, user: ServiceUser, want: str) -> str:
    return (f"give {user.name} {want} access, e.g. `setfacl -m u:{user.name}:{want} {path}` or add "
            f"{user.name} to the group of {path} and `chmod g+{want}`")


# ---------------------------------------------------------------------- checks


def check_user(user: ServiceUser, configured: bool) -> Iterator[Check]:
    groups = []
    for gid in sorted(user.peer.groups):
        try:
            groups.append(grp.getgrgid(gid).gr_name)
        except KeyError:
            groups.append(str(gid))
    if configured:
        yield Check("ok", "user", f"permissions judged for {user.name} (uid {user.peer.uid}, "
                                  f"groups {', '.join(groups)})")
    else:
        yield Check("warn", "user", f"there is no user '{SERVICE_USER}'; permissions judged for {user.name}",
                    "create it: see README, 'Install on a NAS' (systemd-sysusers systemd/nasclip.sysusers)")


def check_model(config: Config, user: ServiceUser) -> Iterator[Check]:
    try:
        spec = load_model_spec(config.model)
    except ModelError as exc:
        yield Check("fail", "model", str(exc), "install a model folder and point `model:` at it")
        return
    files = [spec.path(name) for name in model_files(spec)]
    total = sum(p.stat().st_size for p in files)
    for path in files + [spec.folder / "model.yaml"]:
        blocked = user.blocked_at(path, R)
        if blocked is not None:
            yield Check("fail", "model", f"{user.name} cannot read {path} (stopped at {blocked})",
                        _fix_hint(blocked, user, "r" if blocked == path else "x"))
            return
    # Opens the encoders and compares their inputs with the manifest, as `nasclip models verify` does.
    problems = model_install.check_model(spec.folder, spec)
    for problem in problems:
        yield Check("fail", "model", problem, f"nasclip models verify {spec.folder.name}")
    if problems:
        return
    yield Check("ok", "model", f"{spec.id}: {', '.join(p.name for p in files)} ({human_bytes(total)}) load and match "
                               f"the manifest; readable by {user.name}")
    backend = config.indexer.backend
    if spec.image.axmodel and backend in ("auto", "axengine"):
        try:
            import axengine  # noqa: F401
        except ImportError:
            level: Level = "fail" if backend == "axengine" else "warn"
            yield Check(level, "backend", f"the model has {spec.image.axmodel} for the AX650N NPU, but the "
                                          "axengine module is not installed: "
                        + ("nasclipd cannot start" if level == "fail" else "photos are encoded on the CPU"),
                        "install AXERA's pyaxengine wheel into nasclip's virtual environment (README)")
        else:
            yield Check("ok", "backend", "AX650N NPU runtime (axengine) found; photos are encoded on the NPU")
            return
    if backend == "axengine" and not spec.image.axmodel:
        yield Check("fail", "backend", f"indexer.backend is axengine but {spec.id} has no image.axmodel",
                    "use a model compiled for the AX650N, or backend: auto")
        return
    try:
        import onnxruntime
    except ImportError:
        yield Check("fail", "backend", "onnxruntime is not installed", "pip install onnxruntime in the venv")
        return
    yield Check("ok", "backend", f"CPU via ONNX Runtime {onnxruntime.__version__} ({os.cpu_count()} cores)")


def _mount_types() -> list[tuple[str, str]]:
    """(mount point, file system type), longest mount point first."""
    mounts = []
    try:
        for line in Path("/proc/self/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3:
                mounts.append((fields[1].replace("\\040", " "), fields[2]))
    except OSError:
        pass
    return sorted(mounts, key=lambda m: len(m[0]), reverse=True)


def fs_type(path: Path, mounts: list[tuple[str, str]]) -> str | None:
    text = str(path.absolute())
    for point, kind in mounts:
        if text == point or text.startswith(point.rstrip("/") + "/"):
            return kind
    return None


def _walk_folders(root: Path, pathfilter: PathFilter) -> Iterator[Path]:
    """Every folder below root (root included) that a scan would enter, as far as we can list."""
    stack = [root]
    while stack:
        folder = stack.pop()
        yield folder
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False) and not pathfilter.excluded(entry.name):
                        stack.append(Path(entry.path))
        except OSError:
            continue


def check_shares(config: Config, user: ServiceUser, watch_limit: int | None) -> Iterator[Check]:
    mounts = _mount_types()
    watched = 0
    for share in config.shares:
        label = f"share '{share.name}'"
        if not share.path.is_dir():
            yield Check("fail", "share", f"{label}: {share.path} is not a directory",
                        "mount the volume or fix the path in the config")
            continue
        blocked = user.blocked_at(share.path, R | X)
        if blocked is not None:
            yield Check("fail", "share", f"{label}: {user.name} cannot read {share.path} (stopped at {blocked})",
                        _fix_hint(blocked, user, "rx" if blocked == share.path else "x"))
            continue
        folders = 0
        denied: list[Path] = []
        unknown: list[tuple[Path, str]] = []
        for folder in _walk_folders(share.path, PathFilter(share)):
            folders += 1
            try:
                if not user.may(folder, os.stat(folder), R | X):
                    denied.append(folder)
            except OSError:
                denied.append(folder)
            rules = user.rules(folder)
            if rules.kind == "unknown":
                unknown.append((folder, rules.why))
        if share.watch == "inotify":
            watched += folders
        if denied:
            yield Check("warn", "share", f"{label}: {user.name} cannot read {len(denied)} of {group_digits(folders)} "
                                         f"folders, e.g. {denied[0]}; their photos are skipped",
                        _fix_hint(denied[0], user, "rx"))
        else:
            yield Check("ok", "share", f"{label}: {share.path}, {group_digits(folders)} folders readable by "
                                       f"{user.name} ({share.watch})")
        if unknown:
            yield Check("warn", "share", f"{label}: {group_digits(len(unknown))} of {group_digits(folders)} folders "
                                         "carry an ACL "
                                         f"nasclip cannot evaluate, e.g. {unknown[0][0]} ({unknown[0][1]}): "
                                         "their photos are shown to root only",
                        "use POSIX ACLs or mode bits there (ZFS: zfs set acltype=posixacl); "
                        "see docs/protocol.md, 'Who sees what'")
        kind = fs_type(share.path, mounts)
        if kind in NETWORK_FS and share.watch == "inotify":
            yield Check("warn", "share", f"{label} is on {kind}: inotify does not see changes made by other "
                                         "machines", "set `watch: poll` for this share")
    if not watched:
        return
    if watch_limit is None:
        yield Check("warn", "inotify", f"{group_digits(watched)} folders to watch, but the limit is unknown "
                                       "(no /proc/sys/fs/inotify/max_user_watches)")
    elif watched > watch_limit:
        yield Check("fail", "inotify", f"{group_digits(watched)} folders to watch, fs.inotify.max_user_watches is "
                                       f"{group_digits(watch_limit)}: shares fall back to polling",
                    f"raise it: echo fs.inotify.max_user_watches={max(524288, 2 * watched)} > "
                    "/etc/sysctl.d/60-nasclip.conf && sysctl --system")
    elif watched > WATCH_MARGIN * watch_limit:
        yield Check("warn", "inotify", f"{group_digits(watched)} folders to watch, close to "
                                       "fs.inotify.max_user_watches "
                                       f"({group_digits(watch_limit)}); other programs of the user share the limit",
                    f"raise it: echo fs.inotify.max_user_watches={max(524288, 2 * watched)} > "
                    "/etc/sysctl.d/60-nasclip.conf && sysctl --system")
    else:
        yield Check("ok", "inotify", f"{group_digits(watched)} folders to watch, fs.inotify.max_user_watches is "
                                     f"{group_digits(watch_limit)}")


def check_state_dir(config: Config, user: ServiceUser) -> Iterator[Check]:
    path = config.state_dir
    if not path.exists():
        if path == Path("/var/lib/nasclip"):
            yield Check("ok", "state", f"{path} does not exist yet; systemd creates it at the first start "
                                       "(StateDirectory=nasclip)")
        else:
            yield Check("fail", "state", f"{path} does not exist",
                        f"create it for the service: install -d -o {user.name} -g {user.name} -m 0700 {path}")
        return
    blocked = user.blocked_at(path, R | W | X)
    if blocked is not None:
        yield Check("fail", "state", f"{user.name} cannot write to {path} (stopped at {blocked})",
                    f"chown -R {user.name}: {path}" if blocked == path else _fix_hint(blocked, user, "x"))
        return
    loose = loose_entries(path)
    if loose:
        shown = ", ".join(f"{p.relative_to(path).as_posix() if p != path else p} ({m:04o})" for p, m in loose[:4])
        yield Check("fail", "state", f"group or others may read the state in {path}, which holds every user's "
                                     f"paths and vectors: {shown}" + (f" and {len(loose) - 4} more" if len(loose) > 4
                                                                       else ""),
                    f"chmod -R go= {path} (nasclipd also does it at start-up); the unit needs StateDirectoryMode=0700")
    yield from check_catalog(path / CATALOG_FILE)
    used = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    free = shutil.disk_usage(path).free
    if free < MIN_FREE_BYTES:
        yield Check("warn", "state", f"{path}: only {human_bytes(free)} free ({human_bytes(used)} used by nasclip)",
                    "free some space: the index is rewritten at each checkpoint")
    else:
        yield Check("ok", "state",
                    f"{path}: writable by {user.name}, {human_bytes(used)} used, {human_bytes(free)} free")


def check_catalog(path: Path) -> Iterator[Check]:
    """SQLite's quick_check of the catalog (read only; the daemon may be running)."""
    if not path.exists():
        return
    try:
        conn = connect(path, readonly=True)
        try:
            problems = integrity_problems(conn)
        finally:
            conn.close()
    except StoreError as exc:
        problems = [str(exc)]
    if problems:
        yield Check("fail", "state", f"{path} fails SQLite's integrity check: {'; '.join(problems)[:300]}",
                    "systemctl stop nasclip && nasclip catalog rebuild (keeps every readable row and vector; "
                    "docs/operations.md)")


def check_socket(config: Config) -> Iterator[Check]:
    group = config.query.socket_group
    if group:
        try:
            members = grp.getgrnam(group).gr_mem
        except KeyError:
            yield Check("warn", "socket", f"query.socket_group '{group}' does not exist: only the nasclip user "
                                          "can search", f"groupadd --system {group}, then add the users who may "
                                                        "search (usermod -aG)")
        else:
            yield Check("ok", "socket", f"group '{group}' may search: "
                                        + (", ".join(members) if members else "no members yet"))
    path = config.socket
    if not path.exists():
        yield Check("warn", "socket", f"no socket at {path}: nasclipd is not running",
                    "systemctl start nasclip; see journalctl -u nasclip")
        return
    if not stat.S_ISSOCK(path.stat().st_mode):
        yield Check("fail", "socket", f"{path} is not a socket", "remove it; nasclipd creates the socket")
        return
    try:
        reply = call(path, op="status")
    except SocketAccessDenied as exc:
        yield Check("fail", "socket", str(exc))
        return
    except (DaemonUnavailable, NasclipError) as exc:
        yield Check("fail", "socket", f"{path}: {exc}", "systemctl restart nasclip; see journalctl -u nasclip")
        return
    status = reply["status"]
    mode = stat.S_IMODE(path.stat().st_mode)
    try:
        owner = grp.getgrgid(path.stat().st_gid).gr_name
    except KeyError:
        owner = str(path.stat().st_gid)
    yield Check("ok", "socket", f"{path}: nasclipd {status['version']} answers (group {owner}, mode {mode:04o})")
    photos = status["photos"]
    summary = (f"{group_digits(photos['indexed'])} photos indexed, {group_digits(photos['pending'])} pending, "
               f"{group_digits(photos['failed'])} failed")
    if not status["healthy"]:
        yield Check("fail", "daemon", f"not healthy: {summary}", "journalctl -u nasclip -e")
    elif status.get("service", {}).get("restart_needed"):
        keys = ", ".join(status["service"]["restart_needed"])
        yield Check("warn", "daemon", f"healthy, {summary}; changed settings wait for a restart: {keys}",
                    "systemctl restart nasclip")
    else:
        yield Check("ok", "daemon", f"healthy: {summary}" + (" (see `nasclip failed`)" if photos["failed"] else ""))


def run_checks(config: Config, user: ServiceUser | None = None,
               watch_limit: int | None | Literal["system"] = "system") -> list[Check]:
    """Every check, in the order a person fixes things."""
    configured = user is not None or ServiceUser.lookup() is not None
    user = user or ServiceUser.lookup() or ServiceUser.current()
    limit = max_user_watches() if watch_limit == "system" else watch_limit
    # Missing paths are reported by the model and share checks, with hints.
    shares = len(config.shares)
    checks = [Check("ok", "config", f"{config.source}: valid, {shares} share{'s' * (shares != 1)}, "
                                    f"model {config.model}")]
    checks += check_user(user, configured)
    checks += check_model(config, user)
    checks += check_shares(config, user, limit)
    checks += check_state_dir(config, user)
    checks += check_socket(config)
    checks += [Check(*finding) for finding in web_findings(config)]
    return checks
