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


def warn_unverified(config) -> None:
    """SSLProxyVerify none is allowed, never silently."""
    log = logging.getLogger("mpm.master")
    backends = [route.target.backend for route in config.routes if route.target.backend is not None]
    backends += [member.backend for balancer in config.balancers.values() for member in balancer.members]
    for backend in {b.origin: b for b in backends if b.tls is not None and not b.tls.verify}.values():
        log.warning("TLS to backend %s is not verified (tls.verify: false)", backend.origin)
    for balancer in config.balancers.values():
        discover = balancer.discover
        if discover is not None and discover.tls is not None and not discover.tls.verify:
            log.warning("TLS to the members of balancer %s found in DNS (%s) is not verified (tls.verify: false)",
                        balancer.name, discover.dns)
