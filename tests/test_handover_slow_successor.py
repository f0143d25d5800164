"""Requests pipelined behind a request that ends while the new generation is still starting
are answered, not timed out with a 408.

A stopping worker hands a keep-alive connection over when its exchange ends.  While it was
still looking for a successor (a new generation takes seconds to start on a loaded
machine), such a connection was set aside for the hand-over with the next request already
in its buffer, and nothing served it: the client, which had sent its requests and waited,
got `408 timed out reading the request head` for a complete head when its keep-alive
deadline came (review 2026-12-03-handover #3).  Now, until a successor is connected, the
connection is served here like any other, and moves once one is.

The new generation's workers are held 4 s at their start by a `sitecustomize.py` on the
master's PYTHONPATH (forked children only, once a trigger file exists): the product is not
changed."""

from __future__ import annotations

import socket

import pytest
from rawbackend import RawBackend, respond
from rawsock import http_response_body, read_head, status_of
from support import wait_for

SITECUSTOMIZE = '''
import os
import time


def _slow_start():
    if os.path.exists(os.environ["SLOW_START"]):
        time.sleep(4)


os.register_at_fork(after_in_child=_slow_start)
'''


def _app(conn) -> None:
    while (head := conn.read_head()) is not None:
        conn.read_body(head)
        conn.backend.event(f"got {head.target}").set()
        if head.get("x-wait"):
            conn.backend.event(head.get("x-wait")).wait(20)
        conn.send(respond(200, head.target.encode()))


@pytest.fixture
def backend():
    server = RawBackend(_app)
    yield server
    for event in list(server.events.values()):
        event.set()
    server.close()


@pytest.mark.timeout(60)
def test_a_pipelined_request_is_answered_while_the_successor_starts(proxy_factory, backend, tmp_path):
    (tmp_path / "inject").mkdir()
    (tmp_path / "inject" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    trigger = tmp_path / "slow-start"
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1, timeouts={"keepalive": 2},
                          environ={"PYTHONPATH": str(tmp_path / "inject"), "SLOW_START": str(trigger)})
    [old] = proxy.worker_pids()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=15) as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\nX-Wait: slow\r\n\r\nGET /next HTTP/1.1\r\nHost: t\r\n\r\n")
        assert backend.event("got /slow").wait(5)
        trigger.write_text("")
        result = proxy.reload()
        assert result.returncode == 0, result.stdout + result.stderr
        wait_for(lambda: any(w["pid"] == old and w["state"] == "stopping" for w in proxy.status()["workers"]),
                 5, 0.05, "the old worker to begin its graceful stop")
        backend.event("slow").set()
        answers, buf = [], bytearray()
        for _ in range(2):
            head, buf = read_head(sock, buf)
            answers.append((status_of(head), http_response_body(sock, head, buf)))
    assert answers == [(200, b"/slow"), (200, b"/next")], answers
