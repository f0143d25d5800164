"""A tunnel with large header fields moves on reload like any other (review 2026-12-03-tunnels #4).

A tunnel's hand-over record carries its log line's fields (User-Agent, Referer), each up to
`limits.header_field`.  JSON-escaped, a latin-1 byte above 0x7f took 6 bytes, so two 8,000-byte
fields made a record over the Unix socket's limit (EMSGSIZE): the tunnel stayed with the old
worker, which lived on until graceful_timeout and then cut it.  Here such a tunnel, with a
leftover the proxy holds for its client, must reach the new worker byte-exact, and its log
line must keep the fields whole (the access log writes such a byte as \\xe9, as Apache does).
"""

from __future__ import annotations

import os
import signal
import socket

import pytest
from proxyproc import wait_access, wait_log
from rawbackend import RawBackend
from rawsock import read_head, recv_exact, status_of
from support import wait_for
from wsutil import switch_response, upgrade_request

FIELD = "\u00e9" * 8000           # obs-text, within header_field (8190)
PUSHED = 1 << 20


def _push_then_echo(conn) -> None:
    head = conn.read_head()
    conn.send(switch_response("websocket", head.raw))
    try:
        conn.sock.sendall(b"x" * PUSHED)      # more than the client's window: a leftover in the proxy
        while data := conn.sock.recv(65536):
            conn.sock.sendall(data)
    except OSError:
        pass


@pytest.mark.timeout(30)
def test_a_tunnel_with_large_fields_is_handed_over(proxy_factory):
    backend = RawBackend(_push_then_echo, timeout=20)
    proxy = proxy_factory([{"path": "/ws/", "to": backend.ws_url + "/ws/"}], workers=1)
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", proxy.port))
        extra = f"User-Agent: {FIELD}\r\nReferer: http://r.test/{FIELD}\r\n"
        sock.sendall(upgrade_request("/ws/large", extra=extra).replace(FIELD.encode(), FIELD.encode("latin-1")))
        head, buf = read_head(sock)
        assert status_of(head) == 101, head
        old = proxy.worker_pids()
        os.kill(proxy.proc.pid, signal.SIGHUP)
        log = wait_log(proxy, "hand-over: passed", timeout=10)
        assert "hand-over: passed 1 tunnels and connections to the successor; 0 tunnels" in log, \
            [line for line in log.splitlines() if "hand-over" in line]
        wait_for(lambda: not set(old) & set(proxy.worker_pids(current_only=False)), 5, 0.1, "the old worker to exit")
        got = recv_exact(sock, PUSHED, buf)
        assert got == b"x" * PUSHED, (len(got), set(got), got.find(b"x" * 10), got[:100])
        sock.sendall(b"after the reload")
        assert recv_exact(sock, 16, bytearray()) == b"after the reload"
        sock.close()
        line = wait_access(proxy, "/ws/large")
        assert line and line[0].count("\\xe9") == 2 * len(FIELD), "the log line lost the client's fields"
    finally:
        sock.close()
        proxy.stop()
        backend.close()
