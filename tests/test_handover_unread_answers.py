"""A predecessor that closes its hand-over socket with the receiver's answers unread loses
none of the connections it sent.

A worker of a release before the answers (b"H", b"A": worker.handover) never reads them,
and HEAD's own sender does not either once it took a late receiver for such a release
(`HELLO_WAIT`).  Closing a Unix socket with unread data makes Linux report ECONNRESET to the
peer, and the receiver's next `recvmsg` returns that error *before* the records still queued.
The receiver took it for the end of the stream and closed every queued item's socket: an
upgrade from such a release lost 5-59 of 100 keep-alive connections, with the clients seeing
EOF (review 2026-12-04-versions r02).

Here the test is that old sender, speaking the documented wire format: it waits for the
receiver's b"H" (unread), stops the worker (SIGSTOP) so the records queue, sends them and
closes, then lets the worker go on.  Each handed-over connection must then be served."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import time

import pytest
from rawsock import http_response_body, read_head, status_of

from worker.handover import address

ITEMS = 8


def _client_record() -> bytes:
    """An idle keep-alive connection that has served one request, nothing read ahead."""
    state = {"client_ip": "127.0.0.1", "requests": 1, "deadline_in": 20.0, "proxied": None}
    return b"C" + json.dumps({"state": state, "inbuf": 0, "sent_at": time.time()}).encode() + b"\0"


def _hand_over_without_reading(worker: int, server_sides: list[socket.socket]) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as conn:
        conn.settimeout(5)
        conn.connect(address(worker))
        assert select.select([conn], [], [], 5)[0], "the receiver said no hello"   # its b"H", left unread
        os.kill(worker, signal.SIGSTOP)
        try:
            for side in server_sides:
                socket.send_fds(conn, [_client_record()], [side.fileno()])
                side.close()                            # the old sender lets go at once
        except BaseException:
            os.kill(worker, signal.SIGCONT)
            raise
    os.kill(worker, signal.SIGCONT)                     # closed: unread data -> ECONNRESET there


@pytest.mark.timeout(60)
def test_connections_queued_behind_a_reset_are_adopted(proxy_factory, http_backend):
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1)
    [worker] = proxy.worker_pids()
    clients, server_sides = [], []
    with socket.create_server(("127.0.0.1", 0)) as listener:   # the predecessor's listener
        for _ in range(ITEMS):
            clients.append(socket.create_connection(listener.getsockname(), timeout=10))
            server_sides.append(listener.accept()[0])
    try:
        _hand_over_without_reading(worker, server_sides)
        answers = []
        for n, client in enumerate(clients):
            client.sendall(b"GET /item%d HTTP/1.1\r\nHost: t\r\n\r\n" % n)
            try:
                head, buf = read_head(client)
                answers.append((status_of(head), http_response_body(client, head, buf)))
            except OSError as exc:
                answers.append((repr(exc), b""))
        assert [status for status, _ in answers] == [200] * ITEMS, f"handed-over connections answered {answers}"
        assert proxy.worker_pids() == [worker]
    finally:
        for client in clients:
            client.close()
