"""What an accepted connection is before it is a client: a TLS handshake (worker.tls), a
PROXY protocol header being read (worker.proxyproto), an h2c listener's first bytes being
peeked (worker.h2.h2c).  Each waits in one of the worker's lists of connections that hold no
request yet (`worker.handshakes`, `admission.unserved`: what a full worker closes first) and
ends the same way when it ends unserved.

Each has `since`, when it started (the accept, or the end of the PROXY header before a TLS
handshake): a full worker closes the oldest first, and never one whose `since` is the
current loop turn's `now`.  Its `deadline` says nothing about its age: a handshake has
`timeouts.handshake`, an h2c sniffer `timeouts.client_header` (review 2026-12-03-tls-h2 #4).
A TLS handshake and an h2c sniffer also carry `holds`, the connection's count against its
client's limit, taken before them (worker.admission): released if they end unserved."""

from __future__ import annotations


class Arrival:
    __slots__ = ()      # the subclasses' slots: worker, loop, sock, fd, since, deadline

    def abandon(self) -> None:
        """A handler of ours raised (worker.faults): closed, as an arrival that ends unserved."""
        self.close()

    def close(self) -> None:
        worker, loop = self.worker, self.loop
        holds = getattr(self, "holds", None)    # a TLS handshake's or a sniffer's count in the client table
        if holds:
            self.holds = ()
            worker.admission.limits.release(holds)
        worker.handshakes.discard(self)
        worker.admission.unserved.pop(self, None)
        loop.timed.discard(self)
        loop.remove(self.fd)
        try:
            self.sock.close()
        except OSError:
            pass
        worker.connection_closed()
