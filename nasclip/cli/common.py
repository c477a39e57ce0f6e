"""What the three entry points share: the usage exit code and its parser."""

from __future__ import annotations

import argparse
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # importing typing costs a search from the shell milliseconds; annotations are strings here
    from typing import NoReturn


EXIT_USAGE = 64  # sysexits' EX_USAGE: argparse's own 2 would read as "daemon not running" here


def _columns() -> int:
    """The terminal's width as shutil.get_terminal_size tells it ($COLUMNS, the terminal, else 80)."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    stdout = sys.__stdout__
    try:
        return (os.get_terminal_size(stdout.fileno()).columns or 80) if stdout is not None else 80
    except (ValueError, OSError):  # not a terminal, or closed
        return 80


class _Formatter(argparse.HelpFormatter):
    """argparse's help layout, with the width given: its default imports shutil (and bz2, lzma) on every
    add_argument, 3 ms of each search from the shell."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=_columns() - 2)


class RawDescription(argparse.RawDescriptionHelpFormatter, _Formatter):
    """argparse.RawDescriptionHelpFormatter, with the width given as _Formatter gives it."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors exit 64, not argparse's 2."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n")
