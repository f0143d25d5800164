"""One DNS question, asked from the master's selector loop without ever blocking it.

`dnspython` builds the query and parses the answer; the sockets are ours, non-blocking and
registered in the master's selector (the master never calls a blocking resolver: a slow or
dead one must not stall signals, health checks or the control socket).  The question goes
to the resolvers in turn: over UDP with EDNS0 (4 KiB answers, room for about a hundred SRV
records), and again over TCP when the answer comes back truncated.  The master's
housekeeping tick calls `tick`: an attempt without an answer after `timeout`, or one that
failed (refused, SERVFAIL), makes way for the next attempt at the next resolver; after
`attempts` the question has failed.  NXDOMAIN is an answer, not a failure to retry.

The UDP socket is connected to the resolver, so the kernel drops datagrams from anyone
else and reports an ICMP "port unreachable" as ECONNREFUSED; the answer must also match
the query's id and question (`Message.is_response`).
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import struct
import time

import dns.exception
import dns.flags
import dns.message
import dns.rcode

EDNS_PAYLOAD = 4096
TCP_MAX = 65535
QUESTIONS_AT_ONCE = 128          # every balancer's questions in flight together (`BUDGET`)


class Budget:
    """The questions every round of every balancer may have in flight together.  Each holds a
    socket of the master: 40 balancers of 32 slots asked ~1,300 at once, past a LimitNOFILE
    of 1024, and `mpmctl`, health probes, respawns and reloads failed with EMFILE (review
    2026-12-03-dns #1; HAProxy and nginx ask everything over one socket per nameserver).
    A round that finds it spent waits for the next tick."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0

    def free(self) -> bool:
        return self.used < self.limit

    def take(self) -> None:
        self.used += 1

    def give(self, count: int) -> None:
        self.used = max(self.used - count, 0)


BUDGET = Budget(QUESTIONS_AT_ONCE)


class DnsQuery:
    """`done(answer, error)`: the `dns.message.Message` (NOERROR or NXDOMAIN) and "", or
    None and why every attempt failed."""

    def __init__(self, selector, name: str, rdtype: str, resolvers, timeout: float, done, attempts: int = 0):
        self.selector = selector
        self.name = name
        self.rdtype = rdtype
        self.resolvers = list(resolvers)
        self.timeout = timeout
        self.done = done
        self.attempts = attempts or len(self.resolvers) + 1     # each resolver, then the first again
        self.tried = 0
        self.sock: socket.socket | None = None
        self.registered = 0
        self.deadline = 0.0
        self.retry_at = 0.0          # when the next attempt goes out (after a failed one)
        self.errors: list[str] = []
        self.finished = False
        self._attempt()

    # -- attempts ----------------------------------------------------------------------------
    def _attempt(self) -> None:
        self.retry_at = 0.0
        self.resolver = self.resolvers[self.tried % len(self.resolvers)]
        self.tried += 1
        self.query = dns.message.make_query(self.name, self.rdtype, use_edns=0, payload=EDNS_PAYLOAD)
        self.wire = self.query.to_wire()
        self.deadline = time.monotonic() + self.timeout
        self.tcp = False
        try:
            self._open(socket.SOCK_DGRAM)
            self.sock.send(self.wire)
        except OSError as exc:
            self._failed(exc.strerror or str(exc))
            return
        self._want(selectors.EVENT_READ)

    def _open(self, kind: int) -> None:
        """A non-blocking socket connected (or, for TCP, connecting) to the resolver; OSError if not."""
        address, port = self.resolver
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.sock = socket.socket(family, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        err = self.sock.connect_ex((address, port))
        if err not in (0, errno.EINPROGRESS):
            raise OSError(err, os.strerror(err))

    def _want(self, events: int) -> None:
        if self.registered == 0:
            self.selector.register(self.sock, events, self._on_event)
        elif events != self.registered:
            self.selector.modify(self.sock, events, self._on_event)
        self.registered = events

    def _close_socket(self) -> None:
        if self.sock is None:
            return
        if self.registered:
            try:
                self.selector.unregister(self.sock)
            except (KeyError, ValueError):
                pass
            self.registered = 0
        self.sock.close()
        self.sock = None

    def _failed(self, why: str) -> None:
        """This attempt is over; the next one goes out at the next tick (never in a tight loop)."""
        address, port = self.resolver
        self.errors.append(f"{address}:{port}: {why}")
        self._close_socket()
        if self.tried >= self.attempts:
            self._finish(None, "; ".join(self.errors[-len(self.resolvers):]))
        else:
            self.retry_at = time.monotonic()

    def tick(self, now: float) -> None:
        if self.finished:
            return
        if self.retry_at:
            if now >= self.retry_at:
                self._attempt()
        elif now >= self.deadline:
            self._failed(f"no answer within {self.timeout:g}s")

    # -- answers -------------------------------------------------------------------------------
    def _on_event(self) -> None:
        if self.finished or self.sock is None:
            return      # closed by a callback earlier in the same select() batch (its round ended)
        try:
            if self.tcp:
                data = self._tcp_step()
                if data is None:
                    return
            else:
                data = self.sock.recv(TCP_MAX)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._failed(exc.strerror or str(exc))
            return
        try:
            answer = dns.message.from_wire(data)
        except (dns.exception.DNSException, ValueError):
            if self.tcp:
                self._failed("a malformed answer")
            return                       # a stray datagram: the real answer may still come
        if not self.query.is_response(answer):
            if self.tcp:
                self._failed("an answer to another question")
            return
        if answer.flags & dns.flags.TC and not self.tcp:
            self._switch_to_tcp()
            return
        rcode = answer.rcode()
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            self._failed(dns.rcode.to_text(rcode))
            return
        self._finish(answer, "")

    def _switch_to_tcp(self) -> None:
        """A truncated answer: ask the same resolver again over TCP (RFC 7766)."""
        self._close_socket()
        self.tcp = True
        self.deadline = time.monotonic() + self.timeout
        self.inbox = b""
        self.outbox = struct.pack("!H", len(self.wire)) + self.wire
        try:
            self._open(socket.SOCK_STREAM)
        except OSError as exc:
            self._failed(f"TCP: {exc.strerror or exc}")
            return
        self._want(selectors.EVENT_WRITE)

    def _tcp_step(self) -> bytes | None:
        """Send the length-prefixed query, then read the length-prefixed answer."""
        if self.outbox:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise ConnectionError(err, os.strerror(err))
            sent = self.sock.send(self.outbox)
            self.outbox = self.outbox[sent:]
            if not self.outbox:
                self._want(selectors.EVENT_READ)
            return None
        chunk = self.sock.recv(TCP_MAX)
        if not chunk:
            raise ConnectionError(0, "the resolver closed the TCP connection")
        self.inbox += chunk
        if len(self.inbox) >= 2 and len(self.inbox) >= 2 + struct.unpack("!H", self.inbox[:2])[0]:
            return self.inbox[2:2 + struct.unpack("!H", self.inbox[:2])[0]]
        return None

    def _finish(self, answer, error: str) -> None:
        self.finished = True
        self._close_socket()
        self.done(answer, error)

    def close(self) -> None:
        """Abandon the question (a reload dropped the balancer, or the master stops)."""
        self.finished = True
        self._close_socket()

    def close_in_child(self) -> None:
        """In a forked worker: the socket is the master's business (the selector is gone)."""
        self.finished = True
        if self.sock is not None:
            self.sock.close()
            self.sock = None
