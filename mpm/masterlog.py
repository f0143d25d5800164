"""The master's error log (Python `logging`): opened at start, and opened afresh by every
reload, so that a rotated file (`mv error.log error.log.1; mpmctl reload`) is let go and a
new `log.error` or `log.level` applies to the master's own lines too, as Apache's graceful
restart reopens its parent's log.  Workers open theirs when they start (worker.logsink).

The log goes through the workers' own non-blocking sink (worker.logsink.LogSink), a file as stderr:
under systemd stderr is journald's stream socket, and a journald that stops reading must not
stop the master (signals, respawns, the control socket and /healthz share its loop).  A line
it cannot take now waits in the sink (written with the next record or by `flush`, called
every housekeeping pass); past the sink's bound, lines are dropped and counted."""

from __future__ import annotations

import errno
import logging
import os
import signal

from worker.logsink import LogSink


class SinkHandler(logging.Handler):
    """A record per line into a LogSink (stderr, never blocking)."""

    def __init__(self, sink: LogSink):
        super().__init__()
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sink.write(self.format(record) + "\n")
            self.sink.flush()
        except Exception:          # noqa: BLE001 - logging's own rule: a log line never raises
            self.handleError(record)

    def close(self) -> None:
        self.sink.close()          # what is still queued, tried for at most a second
        super().close()


def open_handler(config) -> logging.Handler:
    """The handler for `config.log.error`, opened now: a reload opens it while it validates
    (mpm.reloading), so a file that will not open refuses the reload instead of failing it
    after the commit.  A file target goes through a non-blocking LogSink as stderr does: a
    FIFO whose reader is not there yet (ENXIO) is accepted, its lines dropped until a reader
    comes, as the workers do; a blocking open of it held the master for good.  OSError for
    any other failure."""
    target = config.log.error
    root = logging.getLogger()
    if target == "-":
        kept = next((h for h in root.handlers if isinstance(h, SinkHandler) and h.sink.target == "-"), None)
        # stderr again: no reopen, and no wait for a stuck reader's queue
        return kept if kept is not None else SinkHandler(LogSink("-", 2, who="mpm master"))
    sink = LogSink(target, 2, who="mpm master")
    if sink.fd is None and sink.open_error is not None and sink.open_error.errno != errno.ENXIO:
        raise sink.open_error
    return SinkHandler(sink)


def install(handler: logging.Handler, config) -> None:
    """Log through `handler` (from open_handler) at `config.log.level` from now on."""
    root = logging.getLogger()
    # The level in lower case, as the workers write it (worker.logs.ErrorLog) and Apache does:
    # one `grep '\[error\]'` finds the master's errors and the workers' alike.
    handler.setFormatter(logging.Formatter(f"[%(asctime)s] [%(level)s] [master pid {os.getpid()}] %(message)s",
                                           "%Y-%m-%d %H:%M:%S"))
    if not any(f is _lower_level for f in handler.filters):
        handler.addFilter(_lower_level)
    for old in root.handlers:
        if old is not handler:
            old.close()
    root.handlers[:] = [handler]
    root.setLevel(config.log.level.upper())


def discard(handler: logging.Handler) -> None:
    """A handler open_handler made for a reload that was refused later."""
    if handler not in logging.getLogger().handlers:
        handler.close()


def setup(config) -> None:
    """Log to `config.log.error` at `config.log.level` from now on; OSError if it will not
    open (the old handler then stays)."""
    install(open_handler(config), config)


def reopen(workers) -> dict:
    """`mpmctl reopen` and SIGUSR2: every log file opened afresh at its path, the master's
    here and the workers' (SIGHUP to each, worker.signals), without reading the configuration
    or touching a connection: log rotation as nginx's USR1 does it.  A reload reopens them
    too, but a configuration broken meanwhile refused it, and the logs went on into the
    rotated file (review 2026-12-04-logs #3); and a reload is a new generation for every client."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, SinkHandler):
            handler.sink.reopen()
    signalled = 0
    for record in list(workers.values()):
        try:
            os.kill(record.pid, signal.SIGHUP)
            signalled += 1
        except ProcessLookupError:
            pass            # gone; reaped on the next SIGCHLD
    logging.getLogger("mpm.master").info("logs reopened (%d workers told)", signalled)
    return {"ok": True, "workers": signalled}


def forget_in_child() -> None:
    """In a forked worker: the master's log descriptors let go (LogSink.forget_in_child)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, SinkHandler):
            handler.sink.forget_in_child()


def _lower_level(record: logging.LogRecord) -> bool:
    record.level = record.levelname.lower()
    return True


def flush() -> None:
    """Housekeeping: lines a stuck stderr did not take, tried again."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, SinkHandler) and handler.sink.pending:
            handler.sink.flush()


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
