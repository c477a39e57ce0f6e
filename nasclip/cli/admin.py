"""nasclip: the admin tool (status, scan, failed photos, doctor, catalog rebuild, config check/show, web users).

Commands that ask the running daemon go through its socket; config commands
work on the file alone. Exit codes as nasclip-query: 0 ok, 1 problem found or
request refused, 2 daemon not running, 3 socket not accessible, 64 usage,
78 bad configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .. import __version__
from ..config import check_paths, load_config
from ..display import group_digits, printable
from ..errors import ConfigError, NasclipError
from ..paths import DEFAULT_CONFIG
from ..query.client import call, resolve_socket
from ..service.status import OcrReport, StatusReply
from ..typedyaml import to_commented_yaml
from .common import EXIT_USAGE, Parser
from .models import add_models_commands
from .web import add_web_commands


def _say(line: str) -> None:
    """Print one line of human output; names in it (paths, errors) cannot break it into more."""
    print(printable(line))


def print_status(status: StatusReply) -> None:
    photos = status["photos"]
    model = status["model"]
    _say(f"nasclipd {status['version']}, up {status['uptime'] / 3600:.1f} h, "
          f"{'healthy' if status['healthy'] else 'NOT HEALTHY'}")
    full = status.get("disk_full")
    if full:
        free = full.get("free_bytes")
        _say(f"DISK FULL at {full['path']}" + (f" ({free / 1e6:.1f} MB free)" if free is not None else "")
              + f": {', '.join(full['waiting'])} writes wait for space; nothing is lost, and indexing resumes "
              "by itself once space is freed")
    for notice in status.get("notices") or []:
        _say(f"notice   {notice}")
    _say(f"model    {model['id']} on {model['backend']}")
    switch = status.get("model_switch")
    if switch:
        _say(f"         switching from {', '.join(switch['from'])}: {group_digits(switch['done'])} / "
              f"{group_digits(switch['total'])} photos re-encoded; searches use {switch['serving']} meanwhile")
    _say(f"photos   {group_digits(photos['indexed'])} indexed, {group_digits(photos['pending'])} pending, "
          f"{group_digits(photos['failed'])} failed, {group_digits(photos['gone'])} deleted (kept briefly)")
    if status.get("metadata_owed"):
        _say(f"         reading the dates, cameras and places of {group_digits(status['metadata_owed'])} photos "
             "indexed before nasclip stored them (headers only, nothing re-encoded)")
    eta = status.get("eta_seconds")
    rate = f"{status['rate']:.1f} photos/s" + (f", about {eta / 60:.0f} min left" if eta else "")
    _say(f"encoded  {group_digits(status['encoded']['run'])} this run ({rate}), "
          f"{group_digits(status['encoded']['total'])} in total; {group_digits(status['reused'])} vectors reused")
    _print_ocr(status.get("ocr"))
    index = status["index"]
    _say(f"index    {index['type']}, {group_digits(index['vectors'])} vectors, "
          f"{index['bytes_on_disk'] / 1e6:.1f} MB on disk")
    for share in status["shares"]:
        scan = share.get("last_scan")
        files = f" {scan['files']} files" if scan and "files" in scan else ""  # counts are root's to see
        scanned = f", last scan{files} in {scan['seconds']:.1f} s" if scan else ""
        _say(f"share    {share['name']}: {share['path']} ({share['watch']}{scanned})")
        if share.get("problem"):
            _say(f"           {share['problem']}; its photos stay searchable until it is back")
        if share.get("settling"):
            _say(f"           {share['settling']} files still arriving")
        for folder in share.get("unreadable_folders", [])[:5]:
            _say(f"           cannot read {folder} (skipped, its photos kept)")
    service = status.get("service")
    if service and service.get("config"):
        waiting = service.get("restart_needed") or []
        _say(f"config   {service['config']}" + (f" (changed, waiting for a restart: {', '.join(waiting)})"
                                                   if waiting else ""))
    if service and service.get("stalled"):
        _say("indexer  STUCK: no batch finished for longer than service.stall_seconds; systemd will restart it")
    if status["recent_failures"]:
        _say("recent failures:")
        for failure in status["recent_failures"][:5]:
            _say(f"  {failure['path']}: {failure['error']}")


def _print_ocr(ocr: OcrReport | None) -> None:
    """The text pass's line of `nasclip status` (nothing from a daemon older than it)."""
    if ocr is None:
        return
    if not ocr.get("enabled"):
        _say("text     not read (ocr.enabled: false)")
        return
    if not ocr.get("available", True):
        _say(f"text     NOT READ: {ocr.get('reason')}")
        return
    photos = ocr.get("photos") or {}
    state = "waiting while photos are indexed" if ocr.get("waiting") else f"{ocr.get('rate', 0.0):.2f} photos/s"
    _say(f"text     {group_digits(photos.get('done', 0))} photos read, {group_digits(photos.get('pending', 0))} "
          f"pending, {group_digits(photos.get('failed', 0))} failed ({state}); {group_digits(ocr.get('read', 0))} "
          f"read this run, {group_digits(ocr.get('reused', 0))} copies took their twin's text")


def cmd_status(args: argparse.Namespace) -> int:
    reply = call(resolve_socket(args.socket, args.config), op="status")
    if args.json:
        json.dump(reply["status"], sys.stdout, indent=2, ensure_ascii=False)
        print()
    else:
        print_status(reply["status"])
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    request: dict[str, Any] = {"op": "scan"}
    if args.share:
        request["share"] = args.share
    reply = call(resolve_socket(args.socket, args.config), **request)
    _say("scan requested for " + ", ".join(reply["scanning"]))
    if reply.get("retrying"):
        _say(f"retrying {reply['retrying']} photos that could not be read before")
    return 0


def cmd_failed(args: argparse.Namespace) -> int:
    reply = call(resolve_socket(args.socket, args.config), op="failed")
    for failure in reply["failed"]:
        print(f"{printable(failure['path'])}\t{printable(failure['error'])}")  # the tab separates
    if not reply["failed"]:
        print("no failed photos", file=sys.stderr)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import Check, ServiceUser, run_checks

    try:
        config = load_config(args.config or DEFAULT_CONFIG)
    except ConfigError as exc:
        for problem in str(exc).splitlines():
            print(Check("fail", "config", problem).line())
        return 1
    user = None
    if args.user:
        user = ServiceUser.lookup(args.user)
        if user is None:
            print(f"nasclip doctor: no user named '{args.user}'", file=sys.stderr)
            return EXIT_USAGE
    checks = run_checks(config, user)
    for check in checks:
        print(check.line())
    fails = sum(c.level == "fail" for c in checks)
    warns = sum(c.level == "warn" for c in checks)
    print(f"{fails} problem{'s' * (fails != 1)}, {warns} warning{'s' * (warns != 1)}")
    return 1 if fails else 0


def cmd_catalog_rebuild(args: argparse.Namespace) -> int:
    from ..store.rebuild import rebuild

    config = load_config(args.config or DEFAULT_CONFIG)
    print(f"rebuilding {config.state_dir / 'catalog.db'} from every row that can still be read ...")
    reports, aside = rebuild(config.state_dir)
    for report in reports:
        print(f"  {report.line()}")
    files = reports[0]
    print(f"the damaged file is kept as {aside}; start nasclip again (systemctl start nasclip)")
    if files.unreadable or files.rejected or (files.total is not None and files.kept < files.total):
        print("photos whose rows were lost are found by the next scan and encoded again; every other vector is kept")
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    path = args.file or args.config or str(DEFAULT_CONFIG)
    try:
        config = load_config(path)
    except ConfigError as exc:
        for line in str(exc).splitlines():  # one problem a line; keys and values quoted from the file
            print(printable(line), file=sys.stderr)
        return 1
    problems = check_paths(config)
    for problem in problems:
        print(printable(problem), file=sys.stderr)
    if problems:
        return 1
    shares = len(config.shares)
    print(f"{path}: ok ({shares} share{'s' * (shares != 1)}, model {config.model}); "
          "apply it with `systemctl reload nasclip`")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    config = load_config(args.file or args.config or DEFAULT_CONFIG)
    print(f"# effective configuration of {config.source}: every setting with its help;")
    print("# '(default)' marks values the file does not change")
    print("\n".join(to_commented_yaml(config)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="nasclip", description="Administer nasclip, the NAS photo search daemon.")
    parser.add_argument("--version", action="version", version=f"nasclip {__version__}")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--config", "-c", help=f"nasclip config file (default {DEFAULT_CONFIG})")
    where.add_argument("--socket", "-s", help="the daemon's socket")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    status = commands.add_parser("status", help="what the daemon is doing")
    status.add_argument("--json", action="store_true", help="machine-readable")
    status.set_defaults(func=cmd_status)
    scan = commands.add_parser("scan", help="ask for a reconcile scan now")
    scan.add_argument("share", nargs="?", help="only this share")
    scan.set_defaults(func=cmd_scan)
    failed = commands.add_parser("failed", help="list photos that could not be indexed, with reasons")
    failed.set_defaults(func=cmd_failed)
    doctor = commands.add_parser("doctor", help="check model files, inotify limits, permissions, state dir "
                                 "and socket; one line each, with a hint")
    doctor.add_argument("--user", help="judge permissions for this user (default: nasclip if it exists)")
    doctor.set_defaults(func=cmd_doctor)
    catalog = commands.add_parser("catalog", help="repair the catalog (with nasclipd stopped)")
    catalog_commands = catalog.add_subparsers(dest="catalog_command", required=True, parser_class=Parser)
    rebuild = catalog_commands.add_parser("rebuild", help="copy every readable row of a damaged catalog into a new "
                                          "one, keeping ids and vectors; the damaged file is set aside")
    rebuild.set_defaults(func=cmd_catalog_rebuild)
    config = commands.add_parser("config", help="check or show a config file")
    config_commands = config.add_subparsers(dest="config_command", required=True, parser_class=Parser)
    check = config_commands.add_parser("check", help="report every problem in a config file")
    check.add_argument("file", nargs="?", help="config file (default: --config or the system one)")
    check.set_defaults(func=cmd_config_check)
    show = config_commands.add_parser("show", help="print the effective config, defaults included")
    show.add_argument("file", nargs="?")
    show.set_defaults(func=cmd_config_show)
    add_models_commands(commands)
    add_web_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except NasclipError as exc:
        print(f"nasclip: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
