"""HTTP/2 over cleartext with prior knowledge (RFC 9113 §3.3), on listeners with `http2: h2c`.

Such a listener serves HTTP/1.1 as well: a connection's first bytes say which protocol it
speaks.  They are peeked (MSG_PEEK), never read, so whichever side takes the connection
reads them itself as if nobody had looked.  The client preface is 24 bytes that no
HTTP/1.1 request starts with ("PRI" is not a method any server serves); the first byte
that differs from it settles the matter, so this costs one extra recv per connection.
The socket is watched edge-triggered meanwhile (what was peeked stays readable, so a
level-triggered watch would report it again at once).  A client that sends a prefix of
the preface and no more gets `timeouts.client_header`, as a slow HTTP/1.1 head does.

The cleartext `Upgrade: h2c` of RFC 7540 is not offered: RFC 9113 deprecates it, and no
browser sends it.
"""

from __future__ import annotations

import select
import socket

from worker.arrival import Arrival
from worker.loop import EPOLLIN

EPOLLET = select.EPOLLET

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PRIOR_KNOWLEDGE = object()     # the acceptor's "context" for an h2c listener (SSLContext for TLS ones)


class PrefaceSniffer(Arrival):
    """An accepted connection on an h2c listener until its first bytes are in."""

    __slots__ = ("worker", "loop", "sock", "fd", "client_ip", "addresses", "holds", "since", "deadline")

    def __init__(self, worker, sock: socket.socket, client_ip: bytes, addresses=None, holds=()):
        self.worker = worker
        self.holds = holds              # its count in the client table (worker.admission), to its connection next
        self.addresses = addresses      # what a PROXY header carried (worker.proxyproto), or None
        self.loop = loop = worker.loop
        self.sock = sock
        self.fd = sock.fileno()
        self.client_ip = client_ip
        self.since = now = loop.now      # (worker.arrival)
        self.deadline = now + worker.timeouts.client_header
        loop.add(self.fd, EPOLLIN | EPOLLET, self.on_event)
        loop.timed.add(self)

    def on_event(self, mask: int) -> None:
        try:
            first = self.sock.recv(len(PREFACE), socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            first = b""
        if not first:
            self.close()
            return
        if first == PREFACE[:len(first)] and len(first) < len(PREFACE):
            return                  # a prefix of the preface: wait for the rest
        self._hand_on(first == PREFACE)

    def _hand_on(self, http2: bool) -> None:
        worker = self.worker
        self.loop.remove(self.fd)
        self.loop.timed.discard(self)
        worker.handshakes.discard(self)
        holds, self.holds = self.holds, ()
        worker.admission.open_client(self.sock, self.client_ip, False, self.addresses, holds, http2)

    def on_deadline(self) -> None:
        self.close()
