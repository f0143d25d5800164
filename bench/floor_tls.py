"""The TLS floor: the least a Python proxy does for a client that opens a TLS connection per request.

Issue #20 asks mpm-proxy for nginx's CPU per new TLS connection.  bench/floor.py says what the
language costs per plain request; this says what it costs per TLS connection (S7c's): whatever
a Python proxy does beyond this, it cannot cost less.  One process, one epoll, level-triggered:
accept, an `ssl.SSLSocket` from `wrap_socket(do_handshake_on_connect=False)`, the handshake's
rounds on epoll events, one request read whole, sent (without its `Connection: close`) on a
pooled backend connection, the response read whole by its Content-Length and written back,
then close_notify and close.  No routing, parsing, counters, logs or timeouts.

Measured against mpm-proxy with one worker and nginx with one, each saturated by `wrk -t1 -c64
-H 'Connection: close'` over https (ECDSA P-256, TLS 1.3, resumed): bench/RESULTS-2026-12-05-first.md.

Not a product: a backend connect blocks (loopback, the bench's own backend), and anything
unexpected closes the connection.

    python -m bench.floor_tls --port P --backend-port B --cert CERT --key KEY
"""

from __future__ import annotations

import argparse
import select
import socket
import ssl

EPOLLIN = select.EPOLLIN
HEAD_END = b"\r\n\r\n"


class Floor:
    def __init__(self, port: int, backend_port: int, context: ssl.SSLContext) -> None:
        self.backend_port = backend_port
        self.context = context
        self.listener = socket.create_server(("127.0.0.1", port), backlog=1024)
        self.listener.setblocking(False)
        self.epoll = select.epoll()
        self.epoll.register(self.listener.fileno(), EPOLLIN)
        self.handlers: dict = {}
        self.pool: list[socket.socket] = []

    def run(self) -> None:
        listener_fd = self.listener.fileno()
        handlers = self.handlers
        while True:
            for fd, mask in self.epoll.poll():
                if fd == listener_fd:
                    self._accept()
                elif (handler := handlers.get(fd)) is not None:
                    handler(mask)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            Connection(self, self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False))


class Connection:
    __slots__ = ("floor", "sock", "fd", "backend", "shaken", "response")

    def __init__(self, floor: Floor, sock: ssl.SSLSocket) -> None:
        self.floor = floor
        self.sock = sock
        self.fd = sock.fileno()
        self.backend = None
        self.shaken = False
        self.response = b""
        floor.handlers[self.fd] = self.on_client
        floor.epoll.register(self.fd, EPOLLIN)
        self.on_client(EPOLLIN)

    def on_client(self, mask: int) -> None:
        sock = self.sock
        try:
            if not self.shaken:
                sock.do_handshake()
                self.shaken = True
                if not sock.pending():
                    return
            request = sock.recv(16384)
        except ssl.SSLWantReadError:
            return
        except (ssl.SSLError, OSError):
            self.close()
            return
        if not request.endswith(HEAD_END) or self.backend is not None:
            self.close()
            return
        floor = self.floor
        backend = floor.pool.pop() if floor.pool else socket.create_connection(("127.0.0.1", floor.backend_port))
        backend.setblocking(False)
        self.backend = backend
        backend.send(request.replace(b"Connection: close\r\n", b""))
        floor.handlers[backend.fileno()] = self.on_backend
        floor.epoll.register(backend.fileno(), EPOLLIN)

    def on_backend(self, mask: int) -> None:
        data = self.response = self.response + self.backend.recv(65536)
        end = data.find(HEAD_END)
        if end < 0:
            return
        length = int(data[:end].lower().split(b"content-length:")[1].split(b"\r\n")[0])
        if len(data) < end + 4 + length:
            return
        self._release_backend(pool=True)
        try:
            self.sock.sendall(data)
        except OSError:
            pass
        self.close()

    def _release_backend(self, pool: bool) -> None:
        backend, self.backend = self.backend, None
        floor = self.floor
        floor.epoll.unregister(backend.fileno())
        del floor.handlers[backend.fileno()]
        if pool:
            floor.pool.append(backend)
        else:
            backend.close()

    def close(self) -> None:
        if self.fd not in self.floor.handlers:
            return
        if self.backend is not None:
            self._release_backend(pool=False)
        del self.floor.handlers[self.fd]
        if self.shaken:
            try:
                self.sock.unwrap()          # close_notify (the peer's is not waited for)
            except (ssl.SSLError, OSError):
                pass
        self.sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend-port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(args.cert, args.key)
    Floor(args.port, args.backend_port, context).run()


if __name__ == "__main__":
    main()
