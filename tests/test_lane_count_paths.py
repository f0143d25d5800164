"""The lane's C counting (MPM_NATIVE_LANE_COUNT=1) against Python's
(MPM_NATIVE_LANE_COUNT=0) and no lane at all (MPM_NATIVE_LANE=0), path by path: the same traffic
must give the same /metrics cells (review 2026-12-06-count)."""

from __future__ import annotations

import socket
import time

import pytest
from admin_util import admin_section
from lanecountutil import SWITCHES, answer, request, response, settled
from proxyproc import Proxy
from rawbackend import RawBackend

pytestmark = pytest.mark.timeout(180)



@pytest.fixture(scope="module")
def proxies(tmp_path_factory):
    started = {}
    try:
        for kind, environ in SWITCHES.items():
            one, two = RawBackend(answer), RawBackend(answer)
            directory = tmp_path_factory.mktemp(kind)
            proxy = Proxy(directory, [{"path": "/a/", "to": one.url + "/a/"},
                                      {"path": "/b/", "to": one.url + "/b/"},
                                      {"path": "/c/", "to": two.url + "/c/"},
                                      {"path": "/t/", "to": one.url + "/t/", "timeout": 1}],
                          workers=1, environ=environ, admin=admin_section())
            started[kind] = proxy.start()
        yield started
    finally:
        for proxy in started.values():
            proxy.stop()


def _compare(proxies, scenario, durations=False):
    seen = {}
    for kind, proxy in proxies.items():
        before = settled(proxy)
        scenario(proxy)
        after = settled(proxy)
        delta = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
        seen[kind] = {k: v for k, v in delta.items() if v and (durations or k[0] != "mpm_request_duration_seconds_bucket")}
    assert seen["c1"] == seen["c0"], (seen["c1"], seen["c0"])
    assert seen["c0"] == seen["nolane"], (seen["c0"], seen["nolane"])
    return seen


def _alternating(proxy):
    with proxy.connect(10) as sock:
        for path in ["/a/cl/0", "/a/cl/1", "/b/cl/2", "/a/cl/3", "/c/cl/4", "/b/cl/5", "/b/cl/6", "/a/cl/7",
                     "/c/cl/8", "/c/cl/9", "/a/cl/10"]:
            sock.sendall(request(path))
            response(sock)


def test_alternating_routes(proxies):
    _compare(proxies, _alternating)


def _bodiless(proxy):
    with proxy.connect(10) as sock:
        for path, method in [("/a/cl/0", "GET"), ("/a/cl/1", "HEAD"), ("/a/e204/2", "GET"), ("/a/e304/3", "GET"),
                             ("/a/cl/4", "HEAD"), ("/a/x999/5", "GET"), ("/a/cl/6", "GET")]:
            sock.sendall(request(path, method=method))
            response(sock, head_request=method == "HEAD")


def test_head_204_304(proxies):
    _compare(proxies, _bodiless)


def _pipelined(proxy):
    with proxy.connect(10) as sock:
        sock.sendall(request("/a/cl/0"))
        response(sock)
        sock.sendall(request("/a/cl/1"))
        time.sleep(0.01)
        sock.sendall(request("/a/cl/2") + request("/b/cl/3"))
        for _ in range(3):
            response(sock)
        sock.sendall(request("/a/cl/4"))
        response(sock)


def test_pipelined(proxies):
    _compare(proxies, _pipelined)


def _backend_closes(proxy):
    with proxy.connect(10) as sock:
        sock.sendall(request("/a/cl/0"))
        response(sock)
        for i in range(3):
            sock.sendall(request(f"/a/close/{i}"))
            response(sock)
            time.sleep(0.2)
            sock.sendall(request(f"/a/cl/x{i}"))
            response(sock)


def test_backend_closes_after_its_response(proxies):
    _compare(proxies, _backend_closes)


def _refused(proxy):
    with proxy.connect(10) as sock:
        sock.sendall(request("/a/cl/0"))
        response(sock)
        sock.sendall(request("/a/cl/1"))
        response(sock)
        sock.sendall(request("/nowhere"))                  # 404: no route
        response(sock)
        sock.sendall(request("/a/cl/2"))
        response(sock)
        sock.sendall(request("/b/cl/3"))
        response(sock)
        sock.sendall(b"GET /a/cl/4 HTTP/1.1\r\nHost: c.test\r\nBad Header\r\n\r\n")    # 400
        data = b""
        while chunk := sock.recv(65536):
            data += chunk


def test_refused_by_the_proxy(proxies):
    _compare(proxies, _refused)


def _deadline(proxy):
    with proxy.connect(10) as sock:
        sock.sendall(request("/t/cl/0"))
        response(sock)
        sock.sendall(request("/t/stall/1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.1 200")
    time.sleep(2.5)


def test_route_deadline_mid_response(proxies):
    _compare(proxies, _deadline)


def _timed(proxy):
    with proxy.connect(10) as sock:
        for delay in ("0", "0.05", "0.15", "0.4", "0", "0.7"):
            sock.sendall(request(f"/a/sleep/{delay}"))
            response(sock)


def test_duration_buckets(proxies):
    _compare(proxies, _timed, durations=True)


def _overrun_and_fin(proxy):
    with proxy.connect(10) as sock:
        sock.sendall(request("/a/cl/0"))
        response(sock)
        sock.sendall(request("/a/overrun/1"))
        response(sock)
        time.sleep(0.2)
        sock.sendall(request("/a/cl/2"))
        response(sock)
        sock.sendall(request("/a/sleep/0.2"))
        sock.shutdown(socket.SHUT_WR)               # its FIN while the request is under way
        response(sock)


def test_overrun_and_client_fin(proxies):
    _compare(proxies, _overrun_and_fin)
