#!/usr/bin/env python3
"""Create a virtual environment with pip, even where Debian left out ensurepip.

A fresh Debian machine has python3 but not the python3-venv package, so
``python3 -m venv`` fails with "ensurepip is not available". The venv module
itself is there: we create the environment without pip and install pip from
its wheel on PyPI (checked against the SHA-256 PyPI publishes), the one
registry such a machine can reach. Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

PIP_JSON = "https://pypi.org/pypi/pip/json"


def has_pip(python: Path) -> bool:
    """True if the environment's interpreter can run pip."""
    result = subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True)
    return result.returncode == 0


def install_pip(python: Path) -> None:
    """Download the newest pip wheel from PyPI, verify it, and install it into python's env."""
    print("bootstrap: ensurepip is missing here; installing pip from PyPI", flush=True)
    with urllib.request.urlopen(PIP_JSON, timeout=60) as response:
        release = json.load(response)
    wheel = next(u for u in release["urls"] if u["packagetype"] == "bdist_wheel")
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / wheel["filename"]
        with urllib.request.urlopen(wheel["url"], timeout=120) as response:
            data = response.read()
        digest = hashlib.sha256(data).hexdigest()
        if digest != wheel["digests"]["sha256"]:
            sys.exit(f"bootstrap: pip wheel checksum mismatch: got {digest}, PyPI says {wheel['digests']['sha256']}")
        target.write_bytes(data)
        # A wheel is a zip that Python can run from: pip installs itself from it.
        subprocess.run([str(python), f"{target}/pip", "install", "--no-index", str(target)], check=True)


def main() -> None:
    venv = Path(sys.argv[1] if len(sys.argv) > 1 else ".venv")
    python = venv / "bin" / "python"
    if not python.exists():
        made = subprocess.run([sys.executable, "-m", "venv", str(venv)])
        if made.returncode != 0:
            subprocess.run([sys.executable, "-m", "venv", "--clear", "--without-pip", str(venv)], check=True)
    if not has_pip(python):
        install_pip(python)


if __name__ == "__main__":
    main()
