#!/usr/bin/env python3
"""Install the system commands and files the tests need, where that is possible; say what is missing where not.

The permission tests create real users and real POSIX ACLs, so they need
``setfacl``/``getfacl`` (Debian package ``acl``), ``useradd`` and
``setpriv``; the web page's browser test needs Debian's headless Chromium
and its WebDriver (``chromium``, ``chromium-driver``); the text-recognition
tests render words with real fonts, Latin and Chinese (Debian's
``fonts-dejavu-core``, ``fonts-wqy-zenhei`` and ``fonts-noto-cjk``). A clean
CI machine runs as root without them: there this installs them with apt-get.
Run as anyone else it installs nothing, prints
what is missing and which tests will skip for it, and exits 0: the rest of
the suite still runs. Idempotent: with everything present it does nothing.
Standard library only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

# command, or an absolute file path: (Debian package, tests that skip without it)
NEEDED = {
    "setfacl": ("acl", "tests/system/test_acl.py, tests/system/test_counts.py"),
    "getfacl": ("acl", "tests/system/test_acl.py"),
    "chromium": ("chromium", "tests/system/test_web_browser.py"),
    "chromedriver": ("chromium-driver", "tests/system/test_web_browser.py"),
    # tests/ocrcorpus.py FONTS: the fonts the text corpus is rendered with.
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf": ("fonts-dejavu-core", "tests/system/test_ocr_quality.py"),
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc": ("fonts-wqy-zenhei", "tests/system/test_ocr_quality.py"),
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc": ("fonts-noto-cjk", "tests/system/test_ocr_quality.py"),
}


def _present(need: str) -> bool:
    return os.path.isfile(need) if need.startswith("/") else shutil.which(need) is not None


def missing() -> dict[str, tuple[str, str]]:
    return {need: package for need, package in NEEDED.items() if not _present(need)}


def main() -> int:
    absent = missing()
    if not absent:
        return 0
    packages = sorted({package for package, _ in absent.values()})
    if os.geteuid() != 0:
        for command, (package, tests) in absent.items():
            print(f"system_packages: {command} is missing (apt package {package}); {tests} will skip. "
                  f"As root: apt-get install {package}", file=sys.stderr)
        return 0
    if shutil.which("apt-get") is None:
        print(f"system_packages: {', '.join(absent)} missing and no apt-get here; install {', '.join(packages)} "
              "with the system's package manager", file=sys.stderr)
        return 0
    print(f"system_packages: installing {', '.join(packages)} for {', '.join(absent)}", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    if subprocess.run(install, env=env).returncode != 0:
        # A fresh container has no package lists yet.
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(install, env=env, check=True)
    still = missing()
    if still:
        print(f"system_packages: {', '.join(still)} still missing after installing {', '.join(packages)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
