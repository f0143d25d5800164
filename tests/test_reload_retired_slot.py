"""A reload (or upgrade) to fewer workers answers the connections waiting in the accept
queue of a slot it retires.

Each slot has its own SO_REUSEPORT listening socket; a reload that lowers `mpm.workers`
closes the master's copy of the retired slots' sockets, and the old worker of such a slot
holds the last one.  It closed it at its graceful stop without accepting what was queued,
and the kernel resets every connection still in the queue of a listening socket that
closes: clients that had connected and sent their request got ECONNRESET (about two per
reload from 2 to 1 workers under a stream of new connections, review 2026-12-03-handover
#2).  Now a worker whose slot no newer worker takes accepts its queue before closing.

Here the old worker of slot 1 is held (SIGSTOP) while clients connect, so that about half
of them wait in its queue when the reload to one worker retires it; then it goes on."""

from __future__ import annotations

import os
import signal
import socket

import pytest
from rawbackend import RawBackend, serve_simple
from rawsock import read_head, status_of
from support import wait_for


@pytest.fixture
def backend():
    server = RawBackend(serve_simple)
    yield server
    server.close()


@pytest.mark.timeout(60)
def test_connections_queued_on_a_retired_slot_are_answered(proxy_factory, backend):
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=2)
    status = proxy.status()
    [held] = [w["pid"] for w in status["workers"] if w["slot"] == 1]
    os.kill(held, signal.SIGSTOP)
    clients = []
    try:
        for n in range(24):
            sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
            sock.sendall(b"GET /q%d HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % n)
            clients.append(sock)
        proxy.config["mpm"]["workers"] = 1
        proxy.write_config()
        result = proxy.reload()
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        os.kill(held, signal.SIGCONT)
    answers = []
    for sock in clients:
        with sock:
            try:
                answers.append(status_of(read_head(sock)[0]))
            except OSError as exc:
                answers.append(type(exc).__name__)
    wait_for(lambda: held not in proxy.worker_pids(current_only=False), 15, 0.05, "the held worker to exit")
    lost = [a for a in answers if a != 200]
    assert not lost, f"{len(lost)} of 24 connections queued at the retired slot got {lost[:3]}"
