"""The master's side of TLS session resumption: which ticket keys, for how long, carried where.

A TLS session (a ticket the client holds) resumes wherever its key is still known.  The
keys live in one shared-memory table (`shm.ticketkeys`) that the listener contexts read
through OpenSSL's ticket callback (`conf.openssl`), so:

  - every worker of a generation uses them (the contexts are built before the fork);
  - a reload keeps them: the new generation's contexts read the same table;
  - `mpmctl upgrade` passes the table's memfd to the next master (`export()`), which
    goes on with the same keys and the same rotation schedule;
  - generated keys rotate every `tls.ticket_key_rotation` seconds (default 12 h, as
    nginx's automatic rotation since 1.23.2 does); the previous key still decrypts for
    one more period, and a ticket it decrypts is replaced by a fresh one;
  - the operator's key files (`tls.session_ticket_key`, nginx's `ssl_session_ticket_key`
    format) replace generated keys: every worker and generation then uses them, they
    outlive a restart, and they change only when the files change and the server reloads.

Generated keys never touch a disk: they are made with os.urandom in the master and exist
only in the memfd (and in the processes that map it).  When OpenSSL cannot be reached
(`conf.openssl.available()`), each generation keeps OpenSSL's own random key, shared by its
workers and lost at a reload: that is said once in the error log and in `mpmctl status`.
"""

from __future__ import annotations

import logging
import os
import time

from conf import openssl, readahead
from conf.tlscontext import CertificateFilesError, listener_context
from shm.ticketkeys import KEY_BYTES, TicketKeyRing

log = logging.getLogger("mpm.master")


class TicketKeys:
    def __init__(self, inherited_fd: int | None = None):
        self.why_not = openssl.available()
        self.ring = None if self.why_not else TicketKeyRing(inherited_fd, make_key=openssl.TicketKey)
        self.rotation = 0.0
        if self.why_not:
            log.warning("TLS sessions resume only within a generation: %s", self.why_not)

    def configure(self, settings) -> None:
        """At start and at every reload: the operator's keys if there are any, else keep
        the keys we have (inherited from the master we replace, or made earlier), else make one."""
        self.rotation = settings.ticket_key_rotation
        ring = self.ring
        if ring is None:
            return
        if settings.ticket_keys:
            if ring.source_name != "file" or ring.raw_keys() != list(settings.ticket_keys):
                ring.install(list(settings.ticket_keys), "file")
                log.info("session-ticket keys from %s", ", ".join(settings.ticket_key_files))
        elif ring.source_name != "generated" or not ring.count[0]:
            ring.install([_new_key()], "generated")

    def tick(self, now: float | None = None) -> None:
        """From the master's housekeeping: rotate a generated key that has served its period."""
        ring = self.ring
        if ring is None or not self.rotation or ring.source_name != "generated":
            return
        if (time.time() if now is None else now) - ring.rotated[0] >= self.rotation:
            ring.rotate()
            log.info("session-ticket key rotated (the previous one is accepted for %gs more)", self.rotation)

    def contexts(self, config) -> dict:
        """Listener address -> SSLContext for the next generation, reading our keys.  Raises
        `CertificateFilesError` (its `listener` set) when a listener's files do not load."""
        contexts = {}
        for listener in config.listeners:
            if listener.tls is None:
                continue
            suites, timeout = config.tls.ciphersuites, config.tls.session_timeout
            try:
                contexts[listener.address] = listener_context(listener.tls, self.ring, suites, timeout)
            except CertificateFilesError as exc:
                exc.listener = listener
                raise
            except OSError as exc:
                if self.ring is not None:
                    log.warning("TLS sessions resume only within a generation: %s", exc)
                    self.why_not, self.ring = str(exc), None
                contexts[listener.address] = listener_context(listener.tls, None, suites, timeout)
        return contexts

    def export(self) -> int | None:
        """The memfd the next master (mpmctl upgrade) takes the keys from."""
        return self.ring.fd if self.ring is not None else None

    def status(self) -> dict:
        read_ahead = readahead.why_not() or True      # conf.readahead: True, or why the listeners do not
        if self.ring is None:
            return {"ticket_keys": "per generation", "why": self.why_not, "read_ahead": read_ahead}
        info = self.ring.info()
        info["read_ahead"] = read_ahead
        info["ticket_keys"] = "shared"
        info["ticket_callback"] = openssl.callback_language(self.ring)     # C (conf/_tickets.c) or Python
        info["rotation"] = self.rotation if info["source"] == "generated" else None
        return info


def _new_key() -> bytes:
    return os.urandom(KEY_BYTES)
