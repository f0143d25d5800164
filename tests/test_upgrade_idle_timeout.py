"""Tunnel idle timeout (issue #4): a route's `timeout:` (else the global
`timeouts: {proxy: N}`) closes a silent tunnel, and traffic in either direction keeps
a busy one open.

Routes of the module's proxy (global `timeouts.proxy` = 2 s):
    /r1/      timeout: 1     /global/   no timeout (2 s)     /long/   timeout: 30
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from proxyproc import running_proxy, tunnel_lines
from rawbackend import RawBackend, RawConn
from rawsock import is_closed, read_head, recv_exact, status_of
from support import wait_for
from wsutil import switch_response, upgrade_request

PERIOD, BUSY_FOR = 0.3, 3.0


def _backend(conn: RawConn) -> None:
    path = conn.read_head().target
    sock, rest, backend = conn.sock, conn.buf, conn.backend
    if "mute" in path:                    # never answers the upgrade
        sock.recv(1)
        return
    sock.sendall(switch_response("myproto"))
    sock.settimeout(15)
    if "push" in path:                    # the backend talks, the client only listens
        for i in range(int(BUSY_FOR / PERIOD) + 1):
            sock.sendall(b"%03d" % i)
            time.sleep(PERIOD)
    try:                                  # echo until the tunnel ends
        data = bytes(rest)
        while True:
            if data:
                sock.sendall(data)
            data = sock.recv(65536)
            if not data:
                backend.results[path] = ("eof", time.monotonic())
                return
    except OSError as exc:
        backend.results[path] = (type(exc).__name__, time.monotonic())


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    raw = RawBackend(_backend, timeout=20)
    to = f"http://127.0.0.1:{raw.port}"
    routes = [
        {"path": "/r1/", "to": to + "/r1/", "upgrade": ["myproto"], "timeout": 1},
        {"path": "/global/", "to": to + "/global/", "upgrade": ["myproto"]},
        {"path": "/long/", "to": to + "/long/", "upgrade": ["myproto"], "timeout": 30},
    ]
    try:
        with running_proxy(tmp_path_factory.mktemp("idle-timeout"), routes, timeouts={"proxy": 2}) as proxy:
            yield proxy, raw
    finally:
        raw.close()


def _open(proxy, path):
    sock = proxy.connect(timeout=10)
    sock.sendall(upgrade_request(path, upgrade="myproto"))
    head, buf = read_head(sock)
    assert status_of(head) == 101, head
    return sock, buf, time.monotonic()


def _time_to_close(sock, opened, limit=6.0) -> float:
    assert is_closed(sock, limit), f"the silent tunnel was still open after {limit}s"
    return time.monotonic() - opened


def test_route_timeout_closes_a_silent_tunnel(env):
    proxy, raw = env
    sock, _, opened = _open(proxy, "/r1/silent")
    with sock:
        elapsed = _time_to_close(sock, opened)
    assert 0.9 <= elapsed <= 2.5, f"closed after {elapsed:.2f}s with timeout: 1"
    # The backend side was closed too, and the log says why.
    wait_for(lambda: "/r1/silent" in raw.results, 3, what="the backend to see the close")
    line = wait_for(lambda: tunnel_lines(proxy, "/r1/silent"), 3, what="access-log line")[0]
    assert '"GET /r1/silent HTTP/1.1" 101' in line
    assert "timeout" in line, line


def test_traffic_either_way_keeps_a_tunnel_open(env):
    """Two tunnels at once on the 1 s route: one where the client sends every 0.3 s,
    one where only the backend does.  Both outlive the timeout three times over."""
    proxy, _ = env
    problems = []

    def client_talks():
        sock, buf, _ = _open(proxy, "/r1/busy-client")
        with sock:
            start = time.monotonic()
            i = 0
            while time.monotonic() - start < BUSY_FOR:
                message = b"tick %04d" % i
                sock.sendall(message)
                if recv_exact(sock, len(message), buf) != message:
                    problems.append(f"client-busy: wrong echo for {message!r}")
                i += 1
                time.sleep(PERIOD)
            sock.sendall(b"still here")
            if recv_exact(sock, 10, buf) != b"still here":
                problems.append("client-busy: final echo wrong")

    def backend_talks():
        sock, buf, _ = _open(proxy, "/r1/push")
        with sock:
            count = int(BUSY_FOR / PERIOD) + 1
            data = recv_exact(sock, 3 * count, buf)
            if data != b"".join(b"%03d" % i for i in range(count)):
                problems.append(f"backend-busy: got {data!r}")
            sock.sendall(b"still here")
            if recv_exact(sock, 10, buf) != b"still here":
                problems.append("backend-busy: final echo wrong")

    def run(fn):
        try:
            fn()
        except (OSError, ConnectionError) as exc:
            problems.append(f"{fn.__name__}: {exc!r} (the tunnel was closed while busy)")
    threads = [threading.Thread(target=run, args=(fn,)) for fn in (client_talks, backend_talks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert not problems, problems


def test_global_proxy_timeout_applies_when_the_route_sets_none(env):
    """`timeouts.proxy: 2` closes a silent tunnel on a route without `timeout:`; a
    route's own `timeout: 30` wins over the global 2 s."""
    proxy, _ = env
    short, _, short_opened = _open(proxy, "/global/silent")
    long_, long_buf, _ = _open(proxy, "/long/silent")
    with short, long_:
        elapsed = _time_to_close(short, short_opened)
        assert 1.9 <= elapsed <= 3.5, f"closed after {elapsed:.2f}s with timeouts.proxy: 2"
        time.sleep(0.6)     # now past 2.5 s of silence on /long/ too
        long_.settimeout(0.1)
        with pytest.raises(socket.timeout):
            long_.recv(1)          # nothing, not EOF: still open
        long_.sendall(b"alive?")
        long_.settimeout(5)
        assert recv_exact(long_, 6, long_buf) == b"alive?"


def test_backend_that_never_answers_the_upgrade_is_a_504_after_the_route_timeout(env):
    proxy, _ = env
    with proxy.connect(timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(upgrade_request("/r1/mute", upgrade="myproto"))
        head, _ = read_head(sock)
        elapsed = time.monotonic() - started
    assert status_of(head) == 504, head
    assert 0.9 <= elapsed <= 3.0, f"answered after {elapsed:.2f}s with timeout: 1"
