"""The admin listener: a small HTTP/1.1 server in the master's own selector loop.

It answers what an operator's tools ask (`/metrics`, `/server-status`, `/healthz`) from the
shared-memory tables, so it keeps answering while every worker is busy, stopped by a
signal, crash-looping or being replaced, and never while a data listener is involved:
the socket is the master's alone (the workers close their copy at fork).

It must never hold up the master (signals, the control socket, health checks all share
the loop), so everything is non-blocking and bounded: a request head of at most MAX_HEAD
bytes, at most MAX_CLIENTS connections at once (a newcomer closes the oldest one that has
sent no request yet), CLIENT_TIMEOUT seconds for a connection's whole life, one request per connection (`Connection: close`), and an answer that does
not fit in the socket buffer waits for EVENT_WRITE instead of a blocking send.  A client
whose address is not in `admin.allow` gets 403 (Apache's `Require ip` before mod_status).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import selectors
import socket
import time
from urllib.parse import parse_qs, urlsplit

from mpm.listeners import LISTEN_BACKLOG

MAX_HEAD = 8192
MAX_CLIENTS = 64
# Connections from addresses admin.allow does not list (they get their 403) have slots of their
# own: else 64 idle ones from anywhere would refuse the health probe its connection.
MAX_STRANGERS = 8
CLIENT_TIMEOUT = 10.0
ACCEPT_BATCH = 16
ACCEPT_PAUSE = 1.0        # seconds the socket is not watched after accept() ran out of descriptors
OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)

REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           408: "Request Timeout", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
           503: "Service Unavailable"}

log = logging.getLogger("mpm.master")


class Request:
    __slots__ = ("method", "path", "query", "headers")

    def __init__(self, method: str, target: str, headers: dict[str, str]):
        parts = urlsplit(target)
        self.method = method
        self.path = parts.path or "/"
        self.query = parse_qs(parts.query, keep_blank_values=True)
        self.headers = headers


def bind_admin(admin) -> socket.socket:
    sock = socket.socket(admin.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if admin.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((admin.host, admin.port))
        sock.listen(LISTEN_BACKLOG)
        sock.set_inheritable(True)          # `mpmctl upgrade` passes it to the next master
    except OSError:
        sock.close()
        raise
    return sock


def allowed(peer: str, networks) -> bool:
    address = ipaddress.ip_address(peer.split("%", 1)[0])
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


class AdminServer:
    """One listening socket and its connections; `handler(Request) -> (status, type, body)`."""

    def __init__(self, selector, sock: socket.socket, config, handler):
        self.selector = selector
        self.sock = sock
        self.config = config                      # conf.Admin in force
        self.handler = handler
        self.clients: dict[socket.socket, list] = {}   # sock -> [inbuf, outbuf, deadline, peer, allowed]
        self.strangers = 0                              # of them, not allowed
        self.paused_until = 0.0                         # accept() ran out of descriptors: not watched until
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, self._accept)

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                client, peer = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in OUT_OF_DESCRIPTORS:
                    self._pause(exc)
                else:
                    log.warning("admin listener: accept failed: %s", exc.strerror or exc)
                return
            ok = allowed(peer[0], self.config.allow)
            if ok and len(self.clients) - self.strangers >= MAX_CLIENTS and not self._make_room():
                client.close()                    # every slot is busy answering; this one may retry
                continue
            if not ok and self.strangers >= MAX_STRANGERS:
                client.close()
                continue
            self.strangers += not ok
            client.setblocking(False)
            self.clients[client] = [b"", b"", time.monotonic() + CLIENT_TIMEOUT, peer[0], ok]
            self.selector.register(client, selectors.EVENT_READ, lambda c=client: self._read(c))

    def _pause(self, exc: OSError) -> None:
        """Out of descriptors: the connection stays queued and the socket readable, so
        retrying at once spun the master's loop and logged a line per turn (tens of thousands
        a second).  Not watched for ACCEPT_PAUSE, as the control socket (and asyncio, nginx)."""
        log.error("admin listener: cannot accept (%s); not accepting for %.0f s", exc.strerror, ACCEPT_PAUSE)
        self.selector.unregister(self.sock)
        self.paused_until = time.monotonic() + ACCEPT_PAUSE

    def _make_room(self) -> bool:
        """All allowed slots taken: the oldest connection still silent (no request head yet)
        goes, as the data path's make_room closes its longest-idle one.  Else 64 connections
        that never speak, from any allowed address, would refuse the health probe for
        CLIENT_TIMEOUT at a time."""
        silent = next((c for c, state in self.clients.items() if state[4] and not state[1]), None)
        if silent is None:
            return False
        self._drop(silent)
        return True

    def _read(self, client: socket.socket) -> None:
        state = self.clients[client]
        try:
            data = client.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        state[0] += data
        end = state[0].find(b"\r\n\r\n", 0, MAX_HEAD + 4)
        if end < 0:
            if len(state[0]) > MAX_HEAD:
                self._answer(client, 431, "text/plain", b"request head too large\n", head_only=False)
            return
        self._serve(client, state[0][:end].decode("latin-1"), state[4])

    def _serve(self, client: socket.socket, head: str, permitted: bool) -> None:
        lines = head.split("\r\n")
        words = lines[0].split(" ")
        if len(words) != 3 or not words[2].startswith("HTTP/1."):
            self._answer(client, 400, "text/plain", b"bad request line\n", head_only=False)
            return
        method, target, _ = words
        head_only = method == "HEAD"
        if not permitted:
            self._answer(client, 403, "text/plain", b"forbidden: admin.allow does not list your address\n", head_only)
            return
        if method not in ("GET", "HEAD"):
            self._answer(client, 405, "text/plain", b"GET or HEAD only\n", head_only, b"Allow: GET, HEAD\r\n")
            return
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        try:
            request = Request(method, target, headers)
        except ValueError:          # urlsplit: "http://[" and the like are the client's error, not ours
            self._answer(client, 400, "text/plain", b"bad request target\n", head_only)
            return
        try:
            status, ctype, body = self.handler(request)
        except Exception:           # noqa: BLE001 - a bug in a page must not take the master down
            log.exception("admin listener: %s %s failed", method, target)
            status, ctype, body = 500, "text/plain", b"internal error (see the error log)\n"
        self._answer(client, status, ctype, body, head_only)

    def _answer(self, client, status: int, ctype: str, body: bytes, head_only: bool, extra: bytes = b"") -> None:
        head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nCache-Control: no-cache\r\nConnection: close\r\n").encode()
        out = head + extra + b"\r\n" + (b"" if head_only else body)
        self.clients[client][1] = out
        self.selector.modify(client, selectors.EVENT_WRITE, lambda: self._write(client))
        self._write(client)

    def _write(self, client: socket.socket) -> None:
        state = self.clients.get(client)
        if state is None:
            return
        try:
            sent = client.send(state[1])
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(client)
            return
        state[1] = state[1][sent:]
        if not state[1]:
            self._drop(client)

    def _drop(self, client: socket.socket) -> None:
        state = self.clients.pop(client, None)
        if state is not None and not state[4]:
            self.strangers -= 1
        try:
            self.selector.unregister(client)
        except (KeyError, ValueError):
            pass
        client.close()

    def expire(self, now: float) -> None:
        """Housekeeping: a connection past CLIENT_TIMEOUT is closed, whatever it was doing, and
        a socket paused for want of descriptors is watched again."""
        for client, state in list(self.clients.items()):
            if state[2] < now:
                self._drop(client)
        if self.paused_until and now >= self.paused_until and self.sock.fileno() >= 0:
            self.paused_until = 0.0
            self.selector.register(self.sock, selectors.EVENT_READ, self._accept)

    def stop_accepting(self) -> None:
        """Our copy of the listening socket closes (a successor accepts on its own); what we
        accepted is still answered, or a probe in flight would meet a reset."""
        try:
            self.selector.unregister(self.sock)
        except (KeyError, ValueError):
            pass
        self.sock.close()

    def close(self, close_socket: bool = True) -> None:
        for client in list(self.clients):
            self._drop(client)
        try:
            self.selector.unregister(self.sock)
        except (KeyError, ValueError):
            pass
        if close_socket:
            self.sock.close()
