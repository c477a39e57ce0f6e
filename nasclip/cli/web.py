"""``nasclip web``: the web front end's passwords (passwd, users, remove).

Web accounts are the NAS's own users: a password is given to an existing
system user, and whoever logs in with it sees exactly the photos that user
may read. The password is read from standard input when it is not a
terminal (`echo "$PW" | nasclip web passwd alice`), else asked twice
without echo. Only the scrypt hash is kept, in ``<state_dir>/web-users.json``
(mode 0600, owned by the state directory's owner, i.e. nasclipd's account).
A running nasclipd notices a change at the next login or request: a new or
removed password logs that user's browsers out.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from ..config import load_config
from ..errors import NasclipError
from ..paths import DEFAULT_CONFIG
from ..web.passwords import MAX_LENGTH, PasswordFile, system_account


def _passwords(args: argparse.Namespace) -> PasswordFile:
    return PasswordFile(load_config(args.config or DEFAULT_CONFIG).state_dir)


def _read_password() -> str:
    if not sys.stdin.isatty():
        line = sys.stdin.readline(MAX_LENGTH + 2)
        return line[:-1] if line.endswith("\n") else line
    first = getpass.getpass("web password: ")
    if getpass.getpass("again: ") != first:
        raise NasclipError("the two passwords differ; nothing changed")
    return first


def cmd_passwd(args: argparse.Namespace) -> int:
    passwords = _passwords(args)
    if system_account(args.user) is None:  # before asking for a password
        raise NasclipError(f"there is no system user '{args.user}' (or it is root, which has no web login); "
                           "web accounts are the NAS's own users")
    passwords.set(args.user, _read_password())
    print(f"web password of {args.user} set in {passwords.path}")
    return 0


def cmd_users(args: argparse.Namespace) -> int:
    users = _passwords(args).users()
    for name in sorted(users):
        print(name if system_account(name) else f"{name}\t(no such system user any more: cannot log in)")
    if not users:
        print("no web users yet: nasclip web passwd USER", file=sys.stderr)
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    passwords = _passwords(args)
    if not passwords.remove(args.user):
        print(f"nasclip: {args.user} has no web password", file=sys.stderr)
        return 1
    print(f"web password of {args.user} removed; their browsers are logged out")
    return 0


def add_web_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `nasclip web ...` to the admin tool's subcommands."""
    web = subparsers.add_parser("web", help="web front end accounts: passwd, users, remove (docs/web.md)")
    commands = web.add_subparsers(dest="web_command", required=True, parser_class=type(web))
    passwd = commands.add_parser("passwd", help="set the web password of a system user (stdin if not a terminal)")
    passwd.add_argument("user", help="an existing system user (not root)")
    passwd.set_defaults(func=cmd_passwd)
    users = commands.add_parser("users", help="list the users who have a web password")
    users.set_defaults(func=cmd_users)
    remove = commands.add_parser("remove", help="remove a user's web password (and log their browsers out)")
    remove.add_argument("user")
    remove.set_defaults(func=cmd_remove)
