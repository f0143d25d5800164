"""The master's error log (Python `logging`): opened at start, and opened afresh by every
reload, so that a rotated file (`mv error.log error.log.1; mpmctl reload`) is let go and a
new `log.error` or `log.level` applies to the master's own lines too, as Apache's graceful
restart reopens its parent's log.  Workers open theirs when they start (worker.logs)."""

from __future__ import annotations

import logging
import os
import sys


def setup(config) -> None:
    """Log to `config.log.error` at `config.log.level` from now on; OSError if it will not
    open (the old handler then stays)."""
    target = config.log.error
    handler = logging.StreamHandler(sys.stderr) if target == "-" else logging.FileHandler(target)
    handler.setFormatter(logging.Formatter(f"[%(asctime)s] [%(levelname)s] [master pid {os.getpid()}] %(message)s",
                                           "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    for old in root.handlers:
        old.close()
    root.handlers[:] = [handler]
    root.setLevel(config.log.level.upper())
