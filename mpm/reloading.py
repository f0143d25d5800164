"""A graceful reload's two steps, as Apache's and nginx's: validate, then commit.

First the new file is read, the master's error log opened, everything it adds bound (admin
listener, listeners), the listeners' TLS contexts built and the new generation's shared tables
made, without touching what serves; any error stops there, logged as `FILE:LINE: message`, and
the running generation serves on.  Only then does the master take the new configuration, fork
a new generation and retire the old one (its workers hand their tunnels and idle keep-alive
connections to the new ones); a worker the system will not fork is tried again, its slot's old
worker serving meanwhile (Master.spawn).
"""

from __future__ import annotations

import dataclasses
import logging
import os

from conf import ConfigError, load_config
from conf.tlscontext import CertificateFilesError, forget_backend_contexts
from mpm import masterlog
from mpm.listeners import BindError

log = logging.getLogger("mpm.master")


def reload(master) -> list[str]:
    """Validate the file and bind what it adds, then commit: on any error nothing has changed
    and the running generation serves on (the errors are returned, and logged)."""
    try:
        config = load_config(master.config_path)
    except ConfigError as exc:
        for line in exc.errors:
            log.error("reload refused, still serving the old configuration: %s", line)
        return exc.errors
    if config.control != master.config.control:
        log.warning("control paths changed: they take effect at the next restart")
        config = _with_control(config, master.config.control)
    try:
        error_log = masterlog.open_handler(config)      # afresh: a rotated file is let go
    except OSError as exc:
        where = f"{config.file}:{config.log.error_line}" if config.log.error_line else config.file
        message = f"{where}: log.error: cannot open {config.log.error}: {exc.strerror or exc}"
        log.error("reload refused, still serving the old configuration: %s", message)
        return [message]
    errors, contexts = _prepare(master, config)
    if errors:
        masterlog.discard(error_log)
        return errors
    old = [record for record in master.workers.values() if not record.retired]
    master.config = config
    forget_backend_contexts()         # CA files are re-read, for health checks and the new workers
    master.balancers.configure(config)
    master.admin.commit(config.admin)
    master.ticket_keys.configure(config.tls)
    for sock in master.listeners.commit():     # before the fork: no new worker may hold one
        sock.close()
    master.new_generation(contexts)
    # Each new worker retired its slot's old one as it forked (Master.spawn); a slot whose
    # fork failed keeps its old worker until the retry succeeds.  Slots beyond the new count:
    for record in old:
        if not record.retired and record.slot >= config.mpm.workers:
            master.retire(record)
    masterlog.install(error_log, config)
    started = len(master.slots)
    log.info("reloaded: generation %d, %d workers%s", master.generation, config.mpm.workers,
             "" if started == config.mpm.workers else f" ({config.mpm.workers - started} not started yet)")
    masterlog.warn_unverified(config)
    return []


def _prepare(master, config) -> tuple[list[str], dict]:
    """Bind what the new configuration adds and build its TLS contexts: (the errors, {}) with
    everything prepared given back, or ([], the contexts) and the rest held for the commit."""
    try:
        master.admin.prepare(config.admin)
    except OSError as exc:
        return _abandon(master, f"{config.file}:{config.admin.line}: cannot bind admin.listen {config.admin}: "
                                f"{exc.strerror or exc}"), {}
    try:
        master.listeners.prepare(config)
    except BindError as exc:
        return _abandon(master, f"{config.file}:{exc.line}: {exc.text}"), {}
    except OSError as exc:
        return _abandon(master, f"{config.file}: cannot bind a listener: {exc.strerror or exc}"), {}
    # The listeners' TLS contexts read the certificate files again: one rewritten since
    # load_config checked it (a renewal landing mid-reload) must refuse the reload here,
    # before anything is committed, not fail it after (the old generation would serve on
    # under a master that already holds the new configuration).
    try:
        contexts = master.ticket_keys.contexts(config)
    except CertificateFilesError as exc:
        return _abandon(master, _context_error(config, exc)), {}
    free = master.scoreboard.free_rows()
    if free < config.mpm.workers:
        return _abandon(master, f"{config.file}: the scoreboard has {free} free rows for {config.mpm.workers} new "
                                "workers (older generations are still stopping): reload again once they have"), {}
    # The shared tables the new generation needs: a memfd and a mapping each (EMFILE, ENOMEM).
    try:
        master.balancers.prepare(config)
        master.clients.prepare(config, master.workers)
    except OSError as exc:
        return _abandon(master, f"{config.file}: cannot make the new generation's shared tables: "
                                f"{exc.strerror or exc}"), {}
    return [], contexts


def _abandon(master, message: str) -> list[str]:
    """Refused after `_prepare` began: give back everything it made or bound."""
    master.admin.abandon()
    master.listeners.abandon()
    master.balancers.abandon()
    master.clients.abandon()
    log.error("reload refused, still serving the old configuration: %s", message)
    return [message]


def other_file(master, named) -> list[str]:
    """`mpmctl reload -c FILE` names the file it checked: a master serving another one would
    re-read its own and answer "reloaded" for a file it never read (review 2026-12-03-reload
    #7; nginx and apachectl signal the master found through the named file likewise, silently)."""
    if not isinstance(named, str):
        return []             # an older mpmctl, or SIGHUP: the master's own file
    own = master.config.file
    if os.path.realpath(named) == os.path.realpath(own):
        return []
    message = (f"this master serves {own}, which a reload or an upgrade reads again, not {named} "
               f"(to serve {named}: mpmctl stop and start -c {named})")
    log.error("refused: %s", message)
    return [message]


def _context_error(config, exc) -> str:
    """FILE:LINE of the TLS listener whose context could not be made (the first that fails)."""
    line = exc.listener.line if exc.listener is not None else 0
    where = f"{config.file}:{line}" if line else config.file
    return f"{where}: cannot load listen.tls's files: {exc.reason}"


def _with_control(config, control):
    return dataclasses.replace(config, control=control)
