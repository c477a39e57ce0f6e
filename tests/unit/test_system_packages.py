"""tools/system_packages.py: what `make test` runs before pytest to get setfacl/getfacl."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

TOOL = ROOT / "tools" / "system_packages.py"


def run(env_path: str, prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*(prefix or []), sys.executable, str(TOOL)], capture_output=True, text=True,
                          env={**os.environ, "PATH": env_path}, timeout=60)


def test_nothing_to_do_when_everything_is_there() -> None:
    done = run(os.environ["PATH"])
    assert done.returncode == 0 and done.stderr == "", done


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run it as another user")
def test_without_the_commands_it_says_which_tests_skip_and_never_fails() -> None:
    as_nobody = run("/nonexistent", [str(shutil.which("setpriv")), "--reuid=65534", "--regid=65534", "--clear-groups"])
    assert as_nobody.returncode == 0, as_nobody
    assert "setfacl is missing (apt package acl); tests/system/test_acl.py" in as_nobody.stderr
    as_root_without_apt = run("/nonexistent")
    assert as_root_without_apt.returncode == 0 and "no apt-get here" in as_root_without_apt.stderr
