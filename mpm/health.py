"""Active health checks (mod_proxy_hcheck), run in the master's selector loop.

Every member of a balancer with `health:` is probed every `interval` seconds by a
non-blocking socket registered in the master's selector: a TCP connect, or a connect
(and TLS handshake, for https/wss members) plus one HTTP request whose status code is
matched against `expect`.  Nothing here blocks: a probe not finished within `timeout`
counts as a failure, and a member never has two probes at once.  `fails` failures in a
row take a member down, `passes` successes in a row bring it back; both are logged and
written into the shared member table, where every worker's next pick sees them.

A member that passive detection put in error state (a worker saw a connect fail) comes
back as soon as `passes` probes started after that error succeed, rather than waiting
out `retry`: with active checks configured, they are the authority on "up".

Members found in DNS are checked too, from the moment they take a row (they start down
and take traffic after `passes` good checks); a probe whose row changed hands while it ran
is not counted (`epoch`).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import selectors
import socket
import ssl
import time

from conf.tlscontext import backend_context  # the same TLS settings and verification the workers apply
from tunnel.endpoint import WOULD_BLOCK

log = logging.getLogger("mpm.health")

DEFAULT_EXPECT = re.compile(r"^[23]\d\d$")   # mod_proxy_hcheck without hcexpr: 2xx or 3xx
MAX_STATUS_LINE = 4096
SHORTAGE_LOG_INTERVAL = 10.0   # seconds between two lines about probes the master had no socket for


PROXY_LOCAL = {1: b"PROXY UNKNOWN\r\n", 2: b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"}


class _Probe:
    """One check of one member, from connect to verdict."""

    __slots__ = ("checker", "index", "epoch", "check", "backend", "sock", "started", "deadline", "stage",
                 "out", "buf", "events")

    def __init__(self, checker: HealthChecker, index: int, epoch: int, check, backend):
        self.checker = checker
        self.index = index
        self.epoch = epoch
        self.check = check
        self.backend = backend
        self.started = time.monotonic()
        self.deadline = self.started + check.timeout
        self.buf = b""
        self.events = 0
        self.stage = "connect"
        self.sock = socket.socket(backend.family, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        err = self.sock.connect_ex(backend.sockaddr)
        if err not in (0, errno.EINPROGRESS):
            self.finish(False, f"connect failed: {os.strerror(err)}")
            return
        self._want(selectors.EVENT_WRITE)

    def _want(self, events: int) -> None:
        selector = self.checker.selector
        if self.events == 0:
            selector.register(self.sock, events, self.on_event)
        elif events != self.events:
            selector.modify(self.sock, events, self.on_event)
        self.events = events

    def on_event(self) -> None:
        try:
            self._step()
        except WOULD_BLOCK:
            pass
        except (OSError, ValueError) as exc:
            self.finish(False, _describe(exc))

    def _step(self) -> None:
        if self.stage == "connect":
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise ConnectionError(err, f"connect failed: {os.strerror(err)}")
            if self.backend.proxy_protocol:
                # A member that requires the PROXY protocol gets it on checks too, as LOCAL
                # (HAProxy's check-send-proxy): the check is ours, it carries no client.
                # 16 bytes or fewer on a fresh socket: a send takes them all.
                self.sock.send(PROXY_LOCAL[self.backend.proxy_protocol])
            if self.check.method == "TCP":
                self.finish(True, "connected")
                return
            self.out = b"%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: mpm-proxy-hcheck\r\nConnection: close\r\n\r\n" % (
                self.check.method.encode(), self.check.path.encode(), self.backend.host_header.encode("idna"))
            if self.backend.tls is not None:
                self._start_tls()
                self.stage = "handshake"
            else:
                self.stage = "send"
        if self.stage == "handshake":
            try:
                self.sock.do_handshake()
            except ssl.SSLWantReadError:
                self._want(selectors.EVENT_READ)
                return
            except ssl.SSLWantWriteError:
                self._want(selectors.EVENT_WRITE)
                return
            self.stage = "send"
        if self.stage == "send":
            sent = self.sock.send(self.out)
            self.out = self.out[sent:]
            if self.out:
                self._want(selectors.EVENT_WRITE)
                return
            self.stage = "receive"
            self._want(selectors.EVENT_READ)
            return
        while True:
            try:
                data = self.sock.recv(4096)
            except ssl.SSLWantReadError:
                return
            if not data:
                raise ConnectionError(0, "closed before a status line")
            self.buf += data
            if b"\r\n" in self.buf or len(self.buf) > MAX_STATUS_LINE:
                break
        parts = self.buf.split(b"\r\n", 1)[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            self.finish(False, "not an HTTP response")
            return
        status = parts[1].decode()
        expect = self.check.expect or DEFAULT_EXPECT
        self.finish(expect.search(status) is not None, f"status {status}")

    def _start_tls(self) -> None:
        settings = self.backend.tls
        if self.events:
            self.checker.selector.unregister(self.sock)
            self.events = 0
        self.sock = backend_context(settings).wrap_socket(
            self.sock, server_hostname=settings.server_name or self.backend.host, do_handshake_on_connect=False)

    def finish(self, ok: bool, detail: str) -> None:
        self.close()
        self.checker.result(self, ok, detail)

    def close(self) -> None:
        if self.events:
            try:
                self.checker.selector.unregister(self.sock)
            except (KeyError, ValueError):
                pass
            self.events = 0
        self.sock.close()


def _describe(exc: Exception) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or exc.__class__.__name__


class HealthChecker:
    def __init__(self, selector):
        self.selector = selector
        self.table = None
        self.checks: list[tuple] = []          # (row index, HealthCheck, epoch of whoever holds the row)
        self.due: dict[tuple, float] = {}      # (row index, epoch) -> next check
        self.probes: dict[int, _Probe] = {}
        self.passes_since_error: dict[int, tuple[float, int]] = {}   # index -> (error_at, passes)
        self.unsent = 0                        # probes skipped for want of a socket, since the last line
        self.unsent_said_at = -SHORTAGE_LOG_INTERVAL

    def configure(self, table) -> None:
        """Check the members of `table` from now on (a reload brings a new table)."""
        self.close()
        self.table = table
        self.due = {}
        self.passes_since_error = {}
        self.refresh()

    def refresh(self) -> None:
        """Who is there to check: every static member and every DNS row somebody holds, of the
        balancers with `health:`; a newcomer's first check is due at once."""
        table, now = self.table, time.monotonic()
        self.checks = [(row.index, row.balancer.health, table.epoch[row.index]) for row in table.rows
                       if row.balancer.health is not None and table.held(row.index)]
        current = {(index, epoch) for index, _, epoch in self.checks}
        self.due = {key: self.due.get(key, now) for key in current}
        for index, probe in list(self.probes.items()):
            if (index, probe.epoch) not in current:
                probe.close()
                del self.probes[index]

    def tick(self) -> None:
        now = time.monotonic()
        for probe in list(self.probes.values()):
            if now >= probe.deadline:
                probe.finish(False, f"no answer within {probe.check.timeout:g}s")
        for index, check, epoch in self.checks:
            if index in self.probes or now < self.due[(index, epoch)]:
                continue
            self.due[(index, epoch)] = now + check.interval
            try:
                probe = _Probe(self, index, epoch, check, self.table.backend(index))
            except OSError as exc:
                self._no_socket(exc, now)
                continue
            if probe.stage != "done":
                self.probes[index] = probe

    def _no_socket(self, exc: OSError, now: float) -> None:
        """The master is out of descriptors (or kernel memory): the probe is skipped, neither
        passed nor failed, as the member is not what failed (HAProxy's "Socket error" and
        mod_proxy_hcheck would count it failed, and mark every member down for the master's
        shortage while the workers serve on).  Said once per SHORTAGE_LOG_INTERVAL: raised, it
        cut the rest of the housekeeping short and logged a traceback per tick."""
        self.unsent += 1
        if now - self.unsent_said_at >= SHORTAGE_LOG_INTERVAL:
            log.error("health checks: no socket for a probe (%s); skipped, %d time(s) since the last such line",
                      exc.strerror or exc, self.unsent)
            self.unsent_said_at, self.unsent = now, 0

    def result(self, probe: _Probe, ok: bool, detail: str) -> None:
        probe.stage = "done"
        if self.probes.get(probe.index) is probe:
            del self.probes[probe.index]
        table, index, check = self.table, probe.index, probe.check
        if table.epoch[index] != probe.epoch or not table.held(index):
            return                     # the row changed hands while the probe ran
        where = f"balancer {table.rows[index].balancer.name}: member {table.url(index)}"
        change = table.record_check(index, ok, check.passes, check.fails)
        if change == "down":
            log.error("%s is down: health check %s failed %d time(s) in a row (%s)",
                      where, check.method, check.fails, detail)
        elif change == "up":
            log.warning("%s is up again: health check %s passed %d time(s) in a row (%s)",
                        where, check.method, check.passes, detail)
        now = time.monotonic()
        if ok and table.in_error(index, now):
            error_at = table.error_at[index]
            seen_at, passes = self.passes_since_error.get(index, (error_at, 0))
            if seen_at != error_at:      # a newer error: count again
                passes = 0
            if probe.started > error_at:
                passes += 1
            self.passes_since_error[index] = (error_at, passes)
            if passes >= check.passes:
                table.clear_error(index)
                log.warning("%s: out of error state, health check %s passed %d time(s) (%s)",
                            where, check.method, passes, detail)
        elif not ok:
            self.passes_since_error.pop(index, None)

    def close(self) -> None:
        for probe in list(self.probes.values()):
            probe.close()
        self.probes = {}

    def close_in_child(self) -> None:
        """In a forked worker: our probe sockets are the master's business (the selector is gone)."""
        for probe in self.probes.values():
            probe.sock.close()
        self.probes = {}
