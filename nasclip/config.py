"""Configuration: one YAML file, read once into a frozen dataclass tree.

Every setting is a dataclass field with a default and a one-line help text.
``load_config`` reports every problem it finds at once, each with the file,
line and key path and a hint, and raises one ``ConfigError``. Relative paths
are relative to the config file. The tree is passed down; there is no global
settings object.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from .errors import ConfigError
from .media.formats import media_extensions
from .paths import DEFAULT_SOCKET
from .typedyaml import (
    Octal,
    Problems,
    compose_yaml,
    internal,
    parse_yaml,
    read_yaml_file,
    setting,
)

# Extensions nasclip decodes: photos, camera RAW and videos (nasclip/media/formats.py); any case.
DEFAULT_EXTENSIONS = media_extensions()

# Most frames a video may keep: a moment's FAISS id holds its index in 8 bits (nasclip/store/moments.py).
MAX_VIDEO_FRAMES = 255

# NAS junk: Synology thumbnails and recycle bins, QNAP and TrueNAS snapshots,
# desktop trash and macOS/Windows metadata, hidden files and folders (which
# also hides the temporary files rsync and many copy tools write first).
# Matched, ignoring case, against every part of the path below the share root.
DEFAULT_EXCLUDES = (
    "@eaDir", "#recycle", "@Recycle", "#snapshot", ".snapshot", ".snapshots",
    ".Trash-*", ".AppleDouble", "@__thumb", ".DS_Store", "Thumbs.db", ".*",
)

# What the store keeps in state_dir (store.py builds its paths from these names).
CATALOG_FILE = "catalog.db"
INDEX_FOLDER = "index"
CACHE_FOLDER = "cache"  # derived data kept to start faster (the place tables): safe to delete


def is_state_file(state_dir: Path, path: Path) -> bool:
    """True if path is the catalog (or its WAL, shared-memory or journal file) or lies in the index or cache folder."""
    try:
        rel = path.relative_to(state_dir)
    except ValueError:
        return False
    first = rel.parts[0] if rel.parts else ""
    catalog = {CATALOG_FILE + suffix for suffix in ("", "-wal", "-shm", "-journal")}
    return first in (INDEX_FOLDER, CACHE_FOLDER) or first in catalog


@dataclass(frozen=True)
class ShareConfig:
    """One folder tree to index."""

    name: str = setting(help="unique name of the share, shown in results and status")
    path: Path = setting(help="directory to index, recursively")
    watch: Literal["inotify", "poll"] = setting(
        "inotify", "inotify for local disks; poll for NFS/SMB mounts, which give no events")
    scan_interval: float | None = setting(
        None, "seconds between reconcile scans (polls of a poll share); default 3600 with inotify, 300 with poll")
    extensions: tuple[str, ...] = setting(
        DEFAULT_EXTENSIONS, "file extensions to index, any case; a list replaces the default")
    exclude: tuple[str, ...] = setting(
        DEFAULT_EXCLUDES, "globs matched against each path part (the whole path if they contain /), any case; "
        "a list replaces the default")


@dataclass(frozen=True)
class IndexerConfig:
    """How photos are decoded and encoded."""

    backend: Literal["auto", "onnx", "axengine"] = setting(
        "auto", "auto uses the NPU when axengine imports and the model has an .axmodel")
    batch_size: int = setting(8, "photos per encoder batch")
    decode_threads: int = setting(2, "threads decoding photos ahead of the encoder")
    threads: int = setting(0, "ONNX Runtime threads for the encoder; 0 = one per core")
    # Only the indexer's threads: queries keep the daemon's priority, so a search never waits behind indexing.
    nice: int = setting(10, "nice value (0-19) of the indexer's threads (decoding, image encoder); read at start")
    onnx_providers: tuple[str, ...] = setting(
        ("CPUExecutionProvider",), "ONNX Runtime execution providers to try, in order of preference")
    max_pixels: int = setting(
        120_000_000, "photos with more pixels are refused as possible decompression bombs")
    max_file_bytes: int = setting(
        512 << 20, "larger files are refused before a byte is read (also as --like queries)")
    decode_timeout: float = setting(
        60.0, "seconds one photo may take to read and decode; a slower one fails and is retried later")
    read_metadata: bool = setting(
        True, "read capture time, camera and GPS position from each photo; false: file times, no place or camera")
    settle_seconds: float = setting(
        2.0, "a file must keep its size and mtime this long before it is indexed")


@dataclass(frozen=True)
class VideoConfig:
    """How videos are sampled (nasclip/media/video.py, docs/media.md)."""

    frame_interval: float = setting(
        3.0, "seconds between sampled frames (at key frames); scene changes add more, up to max_frames")
    max_frames: int = setting(
        32, "most frames decoded per video (at most 255), scene changes included; a long video's frames spread over "
        "all of it")
    max_duration: float = setting(
        21600.0, "longer videos (seconds) are refused: security camera dumps, not something to search by scene")
    max_file_bytes: int = setting(
        64 << 30, "larger videos are refused before a byte is read")
    decode_timeout: float = setting(
        120.0, "seconds one video may take to sample; a slower one fails (raise it for slow network shares)")


@dataclass(frozen=True)
class IndexConfig:
    """The persistent vector index."""

    type: Literal["flat", "fp16", "sq8"] = setting(
        "flat", "flat is exact; fp16 halves memory; sq8 quarters it at ~0.99 recall")
    checkpoint_seconds: float = setting(
        300.0, "write the index to disk at least this often while it changes")
    checkpoint_changes: int = setting(
        20_000, "write the index to disk after this many changes")
    search_threads: int = setting(
        1, "threads per search; 1 keeps queries fast while the encoder uses the CPU")
    keep_deleted: float = setting(
        600.0, "seconds a deleted photo's vector is kept, so a move found by a scan is not re-encoded")


@dataclass(frozen=True)
class QueryConfig:
    """The Unix-socket query server."""

    socket_group: str | None = setting(
        "nasclip", "group owning the socket (null: leave as created)")
    socket_mode: Octal = setting(Octal(0o660), "permission bits of the socket file (octal)")
    max_connections: int = setting(32, "clients served at once; one more waits up to 0.25 s, then gets 'busy'")
    max_connections_per_user: int = setting(
        8, "connections one uid may hold at once; more of its own get 'busy' at once, other users are still served")
    timeout: float = setting(30.0, "seconds a client may take to send a request line; idle connections close after it")
    max_request_bytes: int = setting(65536, "longest request line accepted")
    max_k: int = setting(1000, "most results one search may ask for")
    max_all: int = setting(10000, "most photos one 'every match' search (--all) returns; the reply says when cut")
    text_threads: int = setting(
        1, "ONNX Runtime threads for each text-encoder run (queries' texts run together); 0 = one per core")
    cpu_slots: int = setting(
        0, "text-encoder runs and index scans at once, a core each; 0 = half the cores, leaving indexing the rest")
    max_image_decodes: int = setting(
        2, "--like photos decoded at once; more wait up to a second, then get 'busy' (each may take 100s of MB)")


OCR_LANGUAGES = ("zh", "en")  # what the PP-OCRv4 recogniser reads: Chinese and Latin script


@dataclass(frozen=True)
class OcrConfig:
    """Text recognised in photos: a second pass after a photo is searchable by description (docs/ocr.md)."""

    enabled: bool = setting(True, "read the text in photos, so that they can be found by it (--text-in)")
    languages: tuple[str, ...] = setting(
        OCR_LANGUAGES, "scripts kept in what is read: zh (Chinese), en (Latin letters); digits always")
    min_text_height: int = setting(10, "text lines lower than this many pixels of the photo are not read")
    max_side: int = setting(
        2000, "photos are read at most this many pixels on their long side; time grows with its square")
    threads: int = setting(1, "ONNX Runtime threads for text recognition; 1 leaves the other cores to indexing")
    # Above indexer.nice: where both want the CPU, indexing gets most of it.
    nice: int = setting(19, "nice value (0-19) of the text-recognition thread; read at start")


@dataclass(frozen=True)
class ServiceConfig:
    """How nasclipd behaves under systemd."""

    stall_seconds: float = setting(
        300.0, "a busy indexer finishing no batch for this long is stuck: watchdog pings stop, systemd restarts it")
    stop_timeout: float = setting(
        30.0, "on stop, seconds to wait for the current batch before saving the index without it")


@dataclass(frozen=True)
class WebConfig:
    """The web front end (nasclip/web/, docs/web.md); off unless listen is set."""

    listen: str | None = setting(
        None, "address:port to serve the web page on, e.g. 0.0.0.0:8840 or 127.0.0.1:8840; null = no web front end")
    tls_cert: Path | None = setting(None, "PEM certificate (chain) for HTTPS; with tls_key")
    tls_key: Path | None = setting(None, "PEM private key of tls_cert")
    trusted_proxy: str | None = setting(
        None, "IP address of a reverse proxy whose user header is believed (single sign-on); null = none")
    proxy_user_header: str = setting(
        "Remote-User", "header naming the signed-in user, believed from trusted_proxy only (refused from others)")
    session_hours: float = setting(168.0, "a login lasts this long at most")
    idle_hours: float = setting(24.0, "a login unused for this long ends")
    login_attempts: int = setting(
        5, "failed logins allowed per user and window; more are refused until the window has passed")
    login_attempts_per_address: int = setting(20, "failed logins allowed per client address and window")
    login_window: float = setting(900.0, "seconds over which failed logins are counted")
    thumb_size: int = setting(320, "longest side of a thumbnail, in pixels")
    thumb_cache_bytes: int = setting(
        512 << 20, "disk space for cached thumbnails under state_dir/thumbs; the oldest go first")
    thumb_workers: int = setting(2, "thumbnails made at once (each decodes a photo)")
    max_connections: int = setting(64, "HTTP connections served at once; more get 503")
    page_size: int = setting(60, "results the page asks for at a time as you scroll")


@dataclass(frozen=True)
class Config:
    """The whole nasclip configuration."""

    shares: tuple[ShareConfig, ...] = setting(help="the photo folders to index")
    model: Path = setting(help="model folder holding model.yaml")
    state_dir: Path = setting(
        Path("/var/lib/nasclip"), "catalog, index and everything else the daemon writes")
    socket: Path = setting(DEFAULT_SOCKET, "Unix socket for queries")
    log_level: Literal["debug", "info", "warning", "error"] = setting("info", "log verbosity")
    indexer: IndexerConfig = setting(help="decoding and encoding", default_factory=IndexerConfig)
    video: VideoConfig = setting(help="video sampling", default_factory=VideoConfig)
    index: IndexConfig = setting(help="vector index", default_factory=IndexConfig)
    query: QueryConfig = setting(help="query server", default_factory=QueryConfig)
    service: ServiceConfig = setting(help="systemd watchdog and stopping", default_factory=ServiceConfig)
    web: WebConfig = setting(help="web front end (off unless web.listen is set)", default_factory=WebConfig)
    ocr: OcrConfig = setting(help="text in photos", default_factory=OcrConfig)
    # Where the config was read from; not a setting.
    source: Path | None = internal()

    def share(self, name: str) -> ShareConfig:
        """The share with this name; KeyError if there is none."""
        for share in self.shares:
            if share.name == name:
                return share
        raise KeyError(name)


def _check(config: Config, problems: Problems) -> None:
    """Cross-field rules that types alone cannot express."""
    names = [s.name for s in config.shares]
    for i, share in enumerate(config.shares):
        if names.index(share.name) < i:
            problems.add(None, f"shares[{i}].name", f"'{share.name}' is used by more than one share "
                                                    f"(shares[{names.index(share.name)}] has it too)")
        if share.scan_interval is not None and share.scan_interval <= 0:
            problems.add(None, f"shares[{i}].scan_interval", "must be greater than 0")
        if not share.extensions:
            problems.add(None, f"shares[{i}].extensions", "is empty, so nothing would be indexed; "
                         "leave it out for the default photo, RAW and video types")
        for other in config.shares[:i]:
            if other.name == share.name:
                continue  # reported above
            if share.path == other.path or share.path.is_relative_to(other.path) \
                    or other.path.is_relative_to(share.path):
                problems.add(None, f"shares[{i}].path", f"{share.path} overlaps share '{other.name}' "
                             f"({other.path}); shares must not contain each other")
    if is_state_file(config.state_dir, config.socket) or config.socket == config.state_dir:
        problems.add(None, "socket", f"{config.socket} is nasclip's own catalog or index (in state_dir "
                     f"{config.state_dir}); nasclipd would replace it with the socket. Give the socket a path of "
                     "its own, e.g. /run/nasclip/query.sock")
    if not config.shares:
        problems.add(None, "shares", "no shares configured; add at least one '- name: ... path: ...'")
    for key in _AT_LEAST_ONE:
        if _value(config, key) < 1:
            problems.add(None, key, "must be at least 1")
    for key in _POSITIVE:
        if _value(config, key) <= 0:
            problems.add(None, key, f"must be greater than 0, got {_value(config, key):g}")
    if config.video.max_frames > MAX_VIDEO_FRAMES:
        problems.add(None, "video.max_frames", f"must be at most {MAX_VIDEO_FRAMES} (a video's frames are numbered "
                                               f"in 8 bits of their vector ids), got {config.video.max_frames}")
    if not 0 <= config.indexer.nice <= 19:
        problems.add(None, "indexer.nice", f"must be from 0 (the daemon's own priority) to 19 (only idle CPU), "
                                           f"got {config.indexer.nice}")
    _check_web(config.web, problems)
    if not 0 <= config.ocr.nice <= 19:
        problems.add(None, "ocr.nice", f"must be from 0 (the daemon's own priority) to 19 (only idle CPU), "
                                       f"got {config.ocr.nice}")
    unknown = [lang for lang in config.ocr.languages if lang not in OCR_LANGUAGES]
    if unknown or not config.ocr.languages:
        problems.add(None, "ocr.languages", f"the text recogniser reads {', '.join(OCR_LANGUAGES)} "
                     f"(Chinese, Latin script); got {', '.join(unknown) if unknown else 'none'}. "
                     "Set ocr.enabled: false to read no text")
    if config.ocr.max_side < 64:
        problems.add(None, "ocr.max_side", f"must be at least 64, got {config.ocr.max_side}")
    for key in _NOT_NEGATIVE:
        if _value(config, key) < 0:
            problems.add(None, key, f"must not be negative, got {_value(config, key):g}"
                         + (" (0 = one per core)" if key in ("indexer.threads", "query.text_threads") else "")
                         + (" (0 = half the cores)" if key == "query.cpu_slots" else ""))


def _check_web(web: WebConfig, problems: Problems) -> None:
    if web.listen is not None:
        try:
            parse_listen(web.listen)
        except ValueError as exc:
            problems.add(None, "web.listen", str(exc))
    if (web.tls_cert is None) != (web.tls_key is None):
        problems.add(None, "web.tls_cert" if web.tls_cert is None else "web.tls_key",
                     "tls_cert and tls_key go together: give both for HTTPS, or neither")
    if web.trusted_proxy is not None:
        try:
            ipaddress.ip_address(web.trusted_proxy)
        except ValueError:
            problems.add(None, "web.trusted_proxy", f"{web.trusted_proxy!r} is not an IP address; give the address "
                         "the reverse proxy connects from, e.g. 127.0.0.1")
    if not web.proxy_user_header or not all(c.isalnum() or c == "-" for c in web.proxy_user_header):
        problems.add(None, "web.proxy_user_header", "must be a header name (letters, digits and '-')")
    if not 64 <= web.thumb_size <= 2048:
        problems.add(None, "web.thumb_size", f"must be from 64 to 2048 pixels, got {web.thumb_size}")
    if web.thumb_cache_bytes < 0:
        problems.add(None, "web.thumb_cache_bytes", "must not be negative (0 = make thumbnails, keep none)")


def parse_listen(listen: str) -> tuple[str, int]:
    """(host, port) of a web.listen value: 'HOST:PORT' or '[IPv6]:PORT'; ValueError saying what is wrong."""
    host, sep, port = listen.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{listen!r} is not ADDRESS:PORT; e.g. 0.0.0.0:8840 (every address) or 127.0.0.1:8840")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ValueError(f"{host!r} is not an IP address; use 0.0.0.0 (every IPv4 address), :: or "
                             "the NAS's own address") from None
    return host, int(port)


# Bounds of numeric settings, checked once the types are right.
_AT_LEAST_ONE = ("indexer.batch_size", "indexer.decode_threads", "indexer.max_pixels", "indexer.max_file_bytes",
                 "index.checkpoint_changes", "index.search_threads", "query.max_connections",
                 "query.max_connections_per_user", "query.max_request_bytes", "query.max_k",
                 "query.max_all", "query.max_image_decodes", "web.login_attempts",
                 "web.login_attempts_per_address", "web.thumb_workers", "web.max_connections", "web.page_size",
                 "video.max_frames", "video.max_file_bytes", "ocr.min_text_height", "ocr.threads")
_POSITIVE = ("indexer.decode_timeout", "video.frame_interval", "video.max_duration", "video.decode_timeout",
             "index.checkpoint_seconds", "query.timeout", "service.stall_seconds", "service.stop_timeout",
             "web.session_hours", "web.idle_hours", "web.login_window")
_NOT_NEGATIVE = ("indexer.threads", "indexer.settle_seconds", "index.keep_deleted", "query.text_threads",
                 "query.cpu_slots")


def _value(config: Config, key: str) -> float:
    section, name = key.split(".")
    return getattr(getattr(config, section), name)


def parse_config(text: str, source: Path) -> Config:
    """Parse config text read from source; raise ConfigError listing every problem."""
    config = parse_yaml(Config, text, source, ConfigError, _check)
    return dataclasses.replace(config, source=source)


def load_config(path: Path | str) -> Config:
    """Read and validate the config file at path."""
    path = Path(path)
    try:
        text = read_yaml_file(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found; copy config/nasclip.yaml and edit it") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc}") from None
    return parse_config(text, path)


def file_kind(st: os.stat_result) -> str:
    """'a regular file', 'a folder', ... for messages."""
    for test, kind in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(st.st_mode):
            return kind
    return "a device"


def _path_problems(config: Config) -> list[tuple[str, str]]:
    """(key, message) for every path the config names that is not there."""
    problems = []
    for i, share in enumerate(config.shares):
        if not share.path.exists():
            problems.append((f"shares[{i}].path", f"{share.path} is not a directory: it does not exist "
                                                  "(is the volume mounted?)"))
        elif not share.path.is_dir():
            problems.append((f"shares[{i}].path", f"{share.path} is not a directory: it is a file"))
    try:
        st = config.socket.lstat()
    except OSError:
        pass  # absent (nasclipd creates it) or not reachable: nothing there to be destroyed
    else:
        if not stat.S_ISSOCK(st.st_mode):
            problems.append(("socket", f"{config.socket} exists and is not a socket ({file_kind(st)}); "
                                       "nasclipd will not remove it: give the socket a path of its own"))
    for key in ("tls_cert", "tls_key"):
        path = getattr(config.web, key)
        if path is not None and not path.is_file():
            problems.append((f"web.{key}", f"{path} is not a file; give the PEM file's path"))
    if not config.model.is_dir():
        problems.append(("model", f"{config.model} does not exist; install a model there "
                                  "(see `nasclip models list`)"))
    elif not (config.model / "model.yaml").is_file():
        problems.append(("model", f"{config.model} has no model.yaml; is it a model folder? "
                                  "(see `nasclip models list`)"))
    return problems


def check_paths(config: Config) -> list[str]:
    """The same problems located in the config file: 'file:line: key: message'."""
    root = None
    if config.source is not None:
        try:
            root = compose_yaml(read_yaml_file(config.source))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            pass  # the file changed under us: report without lines
    problems = Problems(str(config.source or "config"), root)
    for key, message in _path_problems(config):
        problems.add(None, key, message)
    return problems.items
