"""Where nasclip looks by default, and how a config file's relative paths resolve.

Kept apart from config.py so the query client can find the socket without
importing the config machinery: a search from the shell pays for every
import, and it needs one setting.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_CONFIG = Path("/etc/nasclip/nasclip.yaml")  # where the three commands look without --config
DEFAULT_SOCKET = Path("/run/nasclip/query.sock")


def config_relative(base: Path, value: str) -> Path:
    """A path setting as written in a config file in folder base: ~ expanded, relative to base, normalised."""
    return Path(os.path.normpath(base / Path(value).expanduser()))
