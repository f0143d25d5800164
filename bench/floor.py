"""The floor: a bare reverse proxy in Python, to measure what the language itself costs here.

Issue #12 asks mpm-proxy for nginx's CPU per small request.  Whether any Python proxy can
reach that on the machine of a given run is what this peer says (`--peers floor`): it does
the least a proxy must, in the same shape as mpm-proxy (forked workers with their own
SO_REUSEPORT listener, one epoll each, llhttp via httptools for each request head, the head
rewritten with X-Forwarded-For and -Proto) and nothing else: each client connection gets
its own backend connection for life (no routing, pool, balancer, limits, timeouts,
counters or logs), requests are GETs without a body, a response is framed by its
Content-Length, and a 101 turns the pair into a plain two-way relay.  No TLS.

Not a product: the backend connect blocks (loopback, the bench's own backend), a bad head
gets a 400 and the close, and anything unexpected closes the pair.

    python -m bench.floor --port P --backend-port B [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket

import httptools

EPOLLIN = select.EPOLLIN
BUFFER = bytearray(256 * 1024)
VIEW = memoryview(BUFFER)
HEAD_END = b"\r\n\r\n"
LENGTH = b"\r\ncontent-length:"
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class Pair:
    """A client connection and its backend connection.  `left`: body bytes of the response
    still due (-1: a head is due next; None: a tunnel after a 101)."""

    __slots__ = ("client", "backend", "client_fd", "backend_fd", "left", "forwarded")


class _NoCallbacks:
    __slots__ = ()


def serve(listener: socket.socket, backend_port: int) -> None:
    epoll = select.epoll()
    epoll.register(listener.fileno(), EPOLLIN)
    pairs: dict[int, Pair] = {}
    listen_fd = listener.fileno()
    while True:
        for fd, _ in epoll.poll():
            if fd == listen_fd:
                _accept(listener, backend_port, epoll, pairs)
                continue
            pair = pairs.get(fd)
            if pair is None:
                continue
            try:
                if fd == pair.client_fd:
                    _from_client(pair)
                else:
                    _from_backend(pair)
            except (OSError, ValueError, httptools.HttpParserError):
                _close(pair, pairs)


def _accept(listener, backend_port: int, epoll, pairs: dict) -> None:
    while True:
        try:
            client, address = listener.accept()
        except BlockingIOError:
            return
        try:
            backend = socket.create_connection(("127.0.0.1", backend_port))
        except OSError:
            client.close()
            continue
        pair = Pair()
        pair.client, pair.backend, pair.left = client, backend, -1
        pair.client_fd, pair.backend_fd = client.fileno(), backend.fileno()
        pair.forwarded = b"\r\nX-Forwarded-For: " + address[0].encode() + b"\r\nX-Forwarded-Proto: http"
        for sock in (client, backend):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pairs[sock.fileno()] = pair
            epoll.register(sock.fileno(), EPOLLIN)


def _from_client(pair: Pair) -> None:
    n = pair.client.recv_into(VIEW)
    if n == 0:
        raise ConnectionResetError
    if pair.left is None:                       # a tunnel
        pair.backend.sendall(VIEW[:n])
        return
    head = bytes(VIEW[:n])
    if not head.endswith(HEAD_END):             # the bench sends each head whole, in one write
        raise ValueError("a head in pieces")
    try:
        httptools.HttpRequestParser(_NoCallbacks()).feed_data(head)
    except httptools.HttpParserUpgrade:
        pass                                    # a WebSocket upgrade: forwarded as it is
    except httptools.HttpParserError:
        pair.client.send(BAD_REQUEST)
        raise
    line_end = head.find(b"\r\n")
    pair.backend.sendall(head[:line_end] + pair.forwarded + head[line_end:])


def _from_backend(pair: Pair) -> None:
    n = pair.backend.recv_into(VIEW)
    if n == 0:
        raise ConnectionResetError
    left = pair.left
    if left is None:
        pass
    elif left < 0:                              # a head (the bench's backend sends it in one piece)
        end = BUFFER.find(HEAD_END, 0, n)
        if end < 0:
            raise ValueError("a response head in pieces")
        if BUFFER.startswith(b"HTTP/1.1 101", 0):
            pair.left = None
        else:
            lower = bytes(VIEW[:end + 2]).lower()
            at = lower.find(LENGTH)
            length = int(lower[at + len(LENGTH):lower.find(b"\r\n", at + 2)])
            pair.left = end + 4 + length - n or -1
    else:
        pair.left = left - n or -1
    pair.client.sendall(VIEW[:n])


def _close(pair: Pair, pairs: dict) -> None:
    for sock in (pair.client, pair.backend):
        pairs.pop(sock.fileno(), None)
        sock.close()                            # takes it out of epoll too


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--backend-port", type=int, required=True)
    ap.add_argument("--workers", type=int, default=2)
    opts = ap.parse_args(argv)
    children = []
    for _ in range(opts.workers):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind(("127.0.0.1", opts.port))
        listener.listen(1024)
        listener.setblocking(False)
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            serve(listener, opts.backend_port)
        listener.close()
        children.append(pid)
    print(f"listening on http://127.0.0.1:{opts.port}", flush=True)

    def stop(*_):
        for pid in children:
            os.kill(pid, signal.SIGTERM)
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, stop)
    for pid in children:
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
