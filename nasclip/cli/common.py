"""What the three entry points share: the usage exit code and its parser."""

from __future__ import annotations

import argparse
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # importing typing costs a search from the shell milliseconds; annotations are strings here
    from typing import NoReturn


EXIT_USAGE = 64  # sysexits' EX_USAGE: argparse's own 2 would read as "daemon not running" here


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors exit 64, not argparse's 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n")
