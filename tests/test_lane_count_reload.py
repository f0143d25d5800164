"""The lane's C counting over TLS (Newcomers, grown ones) and across reloads (idle keep-alive
connections handed to the next generation, responses that end after the stop began): the lane's C
counting against Python's (MPM_NATIVE_LANE_COUNT=0) and no lane (MPM_NATIVE_LANE=0)."""

from __future__ import annotations

import time

import pytest
from admin_util import admin_section
from lanecountutil import SWITCHES, answer, request, response, settled
from proxyproc import Proxy
from rawbackend import RawBackend
from support import serve_tls, wait_for

pytestmark = pytest.mark.timeout(240)


def _start(directory, environ, tls):
    one = RawBackend(answer)
    proxy = Proxy(directory, [{"path": "/a/", "to": one.url + "/a/"}, {"path": "/b/", "to": one.url + "/b/"}],
                  workers=1, environ=environ, admin=admin_section())
    if tls:
        serve_tls(proxy, directory)
    return proxy.start()


def _run_all(tmp_path, tls, scenario):
    seen = {}
    for kind, environ in SWITCHES.items():
        proxy = _start(tmp_path / kind, environ, tls)
        try:
            scenario(proxy)
            seen[kind] = {k: v for k, v in settled(proxy).items() if k[0] != "mpm_request_duration_seconds_bucket"}
        finally:
            proxy.stop()
    assert seen["c1"] == seen["c0"], (seen["c1"], seen["c0"])
    assert seen["c0"] == seen["nolane"], (seen["c0"], seen["nolane"])


def _newcomers(proxy):
    with proxy.connect(10) as sock:
        sock.sendall(request("/a/cl/warm"))
        response(sock)
    for i in range(6):
        with proxy.connect(10) as sock:
            path = ["/a/cl/", "/b/cl/", "/a/e204/", "/nowhere/", "/a/x999/", "/b/e304/"][i] + str(i)
            sock.sendall(request(path, close=True))
            response(sock)
        time.sleep(0.05)
    with proxy.connect(10) as sock:                 # a Newcomer that grows: keep-alive after all
        for path in ["/a/cl/k0", "/b/cl/k1", "/a/cl/k2"]:
            sock.sendall(request(path))
            response(sock)
        sock.sendall(request("/a/cl/k3", close=True))
        response(sock)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_new_connections(tmp_path, tls):
    _run_all(tmp_path, tls, _newcomers)


def _reload(proxy):
    socks = []
    try:
        for _ in range(3):
            sock = proxy.connect(10)
            socks.append(sock)
            for path in ["/a/cl/0", "/b/cl/1", "/a/cl/2"]:
                sock.sendall(request(path))
                response(sock)
        slow = proxy.connect(10)
        socks.append(slow)
        slow.sendall(request("/a/cl/s0"))
        response(slow)
        slow.sendall(request("/a/sleep/0.6"))              # under way in the lane when the stop comes
        newcomer = proxy.connect(10)                    # TLS: a Newcomer's one request, under way too
        socks.append(newcomer)
        newcomer.sendall(request("/b/sleep/0.6", close=True))
        old = proxy.worker_pids()
        time.sleep(0.1)
        assert proxy.reload().returncode == 0
        response(slow)
        response(newcomer)
        for i, sock in enumerate(socks[:3]):          # handed over (plain) or served here (TLS)
            for path in ["/b/cl/3", "/a/cl/4"]:
                sock.sendall(request(path))
                if b"connection: close" in response(sock).lower():     # TLS: its last, from the old worker
                    sock = socks[i] = proxy.connect(10)
        wait_for(lambda: not set(old) & set(proxy.worker_pids(current_only=False)), 30, 0.1, "the old worker's exit")
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_reload(tmp_path, tls):
    _run_all(tmp_path, tls, _reload)
