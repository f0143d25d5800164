"""Overload without collapse (issue #15, part 4): a full worker makes room for a waiting
client by closing, oldest first, the connections still sending their first request head
(or their PROXY header), then the longest-idle keep-alive ones; a connection with a request
under way is never closed for room.  Out of file descriptors, accepting pauses and resumes
by itself, established connections go on, and the log says so once per interval.

One worker with a tiny ThreadsPerChild makes "full" cheap to reach."""

from __future__ import annotations

import resource
import socket
import threading
import time

import psutil
import pytest
from httpclient import read_raw_response
from rawsock import recv_until_close
from support import wait_for

from worker.proxyproto import header

PARTIAL = b"GET /slow HTTP/1.1\r\nHost: t\r\n"        # a head that never ends (slowloris)


def _small(proxy_factory, backend, capacity: int, **kwargs):
    return proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1,
                         mpm={"threads_per_child": capacity, "max_request_workers": capacity, "server_limit": 1},
                         timeouts={"client_header": 30, "keepalive": 30}, **kwargs)


def _timed_get(proxy, path: str = "/legit") -> float:
    started = time.monotonic()
    with proxy.connect() as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        assert read_raw_response(sock, timeout=5).status == 200
    return time.monotonic() - started


def _kept(proxy, path: str = "/legit") -> tuple[socket.socket, float]:
    """A client that is served, then stays connected (idle keep-alive): (socket, seconds)."""
    started = time.monotonic()
    sock = proxy.connect()
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    assert read_raw_response(sock, timeout=5).status == 200
    return sock, time.monotonic() - started


def _closed(sock: socket.socket, timeout: float = 0.05) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_slowloris_connections_make_room_oldest_first(proxy_factory, http_backend):
    backend = http_backend()
    proxy = _small(proxy_factory, backend, 20)
    slow = []
    for _ in range(20):
        sock = proxy.connect()
        sock.sendall(PARTIAL)
        slow.append(sock)
        time.sleep(0.01)                      # one loop turn apart: a clear order
    wait_for(lambda: proxy.status()["totals"]["connections"] == 20, 5, 0.05, "a full worker")
    legit = []
    try:
        for n in range(5):                      # each stays connected: room is needed every time
            sock, took = _kept(proxy, f"/legit-{n}")
            legit.append(sock)
            assert took < 1.0, took             # not kept waiting behind the slowloris
        closed = [_closed(sock) for sock in slow]
        assert closed == [True] * 5 + [False] * 15, closed       # the five oldest, and only they
        assert not any(_closed(sock) for sock in legit)          # idle keep-alive goes after them
        assert proxy.status()["totals"]["connections"] == 20
    finally:
        for sock in slow + legit:
            sock.close()
    lines = [line for line in proxy.error_text().splitlines() if "at capacity" in line]
    assert len(lines) == 1 and "closed 1 connections still sending their first request head" in lines[0], lines


def test_idle_keep_alive_connections_go_next_and_busy_ones_never(proxy_factory, http_backend):
    release = threading.Event()

    def handler(request, body):
        if request["target"] == "/busy":
            release.wait(10)
        return 200, [], b"ok"
    backend = http_backend(handler)
    proxy = _small(proxy_factory, backend, 4)
    busy = [proxy.connect() for _ in range(2)]
    idle = [proxy.connect() for _ in range(2)]
    try:
        for sock in busy:
            sock.sendall(b"GET /busy HTTP/1.1\r\nHost: t\r\n\r\n")
        for sock in idle:
            sock.sendall(b"GET /once HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_raw_response(sock).status == 200
            time.sleep(0.02)
        wait_for(lambda: sum(r["target"] == "/busy" for r in backend.requests) == 2, 5, 0.02, "busy at the backend")
        first, took = _kept(proxy)
        idle.append(first)
        assert took < 1.0
        assert [_closed(sock) for sock in idle[:2]] == [True, False]      # the longer idle one
        time.sleep(0.02)
        second, took = _kept(proxy)
        idle.append(second)
        assert took < 1.0
        assert _closed(idle[1]) and not _closed(first)
        third, took = _kept(proxy)
        idle.append(third)
        assert _closed(first) and not _closed(second)
        # Only requests under way left: the next client waits for one of them.
        for sock in (second, third):
            sock.sendall(b"GET /busy HTTP/1.1\r\nHost: t\r\n\r\n")
            busy.append(sock)
        wait_for(lambda: sum(r["target"] == "/busy" for r in backend.requests) == 4, 5, 0.02, "4 busy")
        waiting = proxy.connect()
        waiting.sendall(b"GET /waiting HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data, _ = recv_until_close(waiting, 0.7)
        assert data == b""
        release.set()
        for sock in busy:
            assert read_raw_response(sock).status == 200        # never cut for room
        waiting.settimeout(5)
        assert read_raw_response(waiting).status == 200
        waiting.close()
    finally:
        release.set()
        for sock in busy + idle:
            sock.close()


def test_connections_owing_a_proxy_header_count_as_unserved(proxy_factory, http_backend):
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], start=False, workers=1,
                          mpm={"threads_per_child": 3, "max_request_workers": 3, "server_limit": 1},
                          timeouts={"client_header": 30})
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "proxy_protocol": True}]
    proxy.start()
    silent = [proxy.connect() for _ in range(3)]
    try:
        wait_for(lambda: proxy.status()["totals"]["connections"] == 3, 5, 0.05, "a full worker")
        time.sleep(0.05)
        with proxy.connect() as sock:
            sock.sendall(header(2, b"192.0.2.77", 1, b"127.0.0.1", proxy.port)
                         + b"GET /pp HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert read_raw_response(sock).status == 200
        assert _closed(silent[0], 1.0)
    finally:
        for sock in silent:
            sock.close()


@pytest.mark.timeout(40)
def test_out_of_descriptors_pauses_accepting_says_so_once_and_recovers(proxy_factory, http_backend):
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1,
                          timeouts={"client_header": 30, "keepalive": 30})
    worker = psutil.Process(proxy.worker_pids()[0])
    used = worker.num_fds()
    worker.rlimit(resource.RLIMIT_NOFILE, (used + 40, used + 40))
    established = proxy.connect()
    established.sendall(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n")
    assert read_raw_response(established).status == 200
    flood = []
    try:
        for _ in range(120):                  # far more than the worker can take: accept fails
            flood.append(proxy.connect())
        time.sleep(1.5)
        # The established client goes on (its backend connection is pooled, nothing new needed).
        established.sendall(b"GET /second HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_raw_response(established).status == 200
        lines = [line for line in proxy.error_text().splitlines() if "accept:" in line]
        assert len(lines) == 1 and "accepting paused" in lines[0], lines
    finally:
        for sock in flood:
            sock.close()
        established.close()
    # Room again: accepting resumed by itself.
    wait_for(lambda: _timed_get(proxy, "/after") < 2, 15, 0.2, "a new client served")
