"""nasclipd: load the config, set up logging, run the daemon until SIGTERM.

Everything the daemon does is in ``nasclip.service.daemon``; this is only the
command line and the signals.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from .. import __version__
from ..config import load_config
from ..errors import NasclipError
from ..indexing.memory import tune_malloc
from ..paths import DEFAULT_CONFIG
from ..service.daemon import Daemon
from ..service.logs import setup_logging

log = logging.getLogger("nasclip.daemon")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nasclipd", description="nasclip daemon: index photo shares and "
                                     "answer searches on a Unix socket.")
    parser.add_argument("--config", "-c", default=str(DEFAULT_CONFIG), help="config file (YAML)")
    parser.add_argument("--version", action="version", version=f"nasclipd {__version__}")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except NasclipError as exc:
        print(f"nasclipd: {exc}", file=sys.stderr)
        return exc.exit_code
    setup_logging(config.log_level)
    tune_malloc()  # big decoded photos go back to the system when freed
    daemon = Daemon(config)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: daemon.request_stop())
    signal.signal(signal.SIGHUP, lambda *_: daemon.request_reload())
    code = 0
    try:
        daemon.run()
    except NasclipError as exc:
        log.error("%s", exc)
        code = exc.exit_code
    if daemon.abandoned:
        # Threads stuck in a read would keep the interpreter from exiting; the index is saved.
        logging.shutdown()
        os._exit(code)
    return code



if __name__ == "__main__":
    sys.exit(main())
