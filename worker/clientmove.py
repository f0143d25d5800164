"""A keep-alive connection that moves between workers (worker.handover): a stopping
worker `detach`es a plain connection between requests and sends its socket and what it had
read; the successor `adopt`s it and goes on serving it; `reattach` undoes a detach the
successor did not take.  A mixin of `worker.client.ClientConnection`, kept apart because it
is the one part of a client connection that is about two processes."""

from __future__ import annotations

import ipaddress

from worker.phases import HEAD, IDLE


def listened_on(worker, sock) -> bool:
    """Whether `worker`'s configuration still has a listener that could have accepted `sock`:
    same address (or a wildcard on its port), plain.  A reload that removes a listener, or
    makes it TLS, must not leave its keep-alive connections served for ever by every
    generation they move to (review 2026-12-03-handover #1): nginx and Apache close them at
    the reload.  (`proxy_protocol` is not compared: a connection whose PROXY header was
    LOCAL, a balancer's health check, carries no addresses either.)"""
    try:
        host, port = sock.getsockname()[:2]
        local = ipaddress.ip_address(host)
    except (OSError, ValueError):
        return True                 # already gone, or not IP: its first read says what to do
    mapped = local.ipv4_mapped if local.version == 6 else None
    for _, listener in worker.listeners:
        if listener.port != port or listener.tls is not None:
            continue
        wanted = ipaddress.ip_address(listener.host)
        if wanted.is_unspecified or wanted in (local, mapped):
            return True
    return False


class MovableClient:
    __slots__ = ()

    @classmethod
    def adopt(cls, worker, sock, state: dict, inbuf: bytes) -> MovableClient:
        """A connection handed over by a stopping worker (`detach` there): it goes on
        between requests here, with the bytes that worker had already read from it, counted
        for its client here now (never refused: it is no new connection)."""
        client_ip = state["client_ip"].encode()
        proxied = state.get("proxied")
        proxied = (proxied[0].encode(), proxied[1], proxied[2].encode(), proxied[3]) if proxied else None
        # Trusted or not by this worker's configuration, not the sender's: a reload that adds
        # or removes a trusted proxy applies to its pooled connections too (review
        # 2026-12-03-hostile #2).
        client = cls(worker, sock, client_ip, proxied=proxied, forwarded=worker.admission.trusts(client_ip))
        client.requests = state["requests"]
        client.deadline = client.loop.now + state["deadline_in"]
        client._between_requests()
        if inbuf:
            client.inbuf += inbuf
            client.state = HEAD
            client.loop.call_soon(client.serve_buffered)
        elif client.requests:
            client.state = IDLE
        return client

    def _between_requests(self) -> None:
        """(Again) listed as idle and counted for its client: adopted, or taken back."""
        admission = self.worker.admission
        admission.unserved.pop(self, None)
        admission.idle[self] = None
        if admission.limits is not None and not self.forwarded:
            self.holds = admission.limits.count_connection(self.client_ip)

    @property
    def movable(self) -> bool:
        """Another worker can carry on with it: plain (a TLS session lives in this process),
        between exchanges, nothing owed to the client, its sending side open."""
        return (not self.ep.tls and (self.state is IDLE or self.state is HEAD) and self.exchange is None
                and not self.ep.out and not self.eof)

    def detach(self) -> dict:
        """Stop serving it here and give up the socket; what `adopt` needs elsewhere.  The
        fd leaves epoll before the caller closes its copy (the registration belongs to the
        open file description, which lives on in the other process)."""
        self.ep.unregister()
        self.loop.timed.discard(self)
        worker = self.worker
        worker.clients.discard(self)
        worker.admission.idle.pop(self, None)
        worker.admission.unserved.pop(self, None)
        if self.holds:                  # the successor counts it for its client from now on
            worker.admission.limits.release(self.holds)
            self.holds = ()
        self.reader = None          # the head in part is parsed again from `inbuf` there
        proxied = self.proxied
        return {"client_ip": self.client_ip.decode(), "requests": self.requests,
                "deadline_in": max(self.deadline - self.loop.now, 0.0),
                "proxied": [proxied[0].decode(), proxied[1], proxied[2].decode(), proxied[3]] if proxied else None}

    def reattach(self) -> None:
        """Undo `detach` when the other worker did not take it."""
        self.worker.clients.add(self)
        self.loop.timed.add(self)
        self._between_requests()
        self.ep.want(not self.eof)
        if self.inbuf:
            self.loop.call_soon(self.serve_buffered)
