"""/metrics counts what the keep-alive lane carries as Python counts it: the lane's C counts the
exchanges it carries whole (worker/_lane_count.c), and MPM_NATIVE_LANE_COUNT=0 leaves them to
worker.metrics.  The same requests through a proxy of each kind give the same requests by route
and status class, the same bytes, and the same number of durations, in the right buckets; a
response that ends during a reload, and one the client cuts short, are counted once.

Plain and TLS: over TLS a new connection's one request (`Connection: close`) is a
worker.newcomer.Newcomer's, with its own end."""

from __future__ import annotations

import socket
import time

import pytest
from admin_util import admin_section, scrape, value
from lanecountutil import HUGE, SLOW, answer, counted, request, response
from proxyproc import Proxy
from rawbackend import RawBackend
from rawsock import HEAD_END
from support import serve_tls, wait_for

pytestmark = pytest.mark.timeout(120)

def _workload(proxy: Proxy) -> int:
    """The requests of every kind, on keep-alive connections and on new ones; how many."""
    count = 0
    with proxy.connect(10) as sock:          # the first warms the pool; the lane takes the rest
        for path in ["/a/cl/0", "/a/cl/1", "/a/missing/2", "/a/broken/3", "/a/e204/4", "/a/chunked/5",
                     "/a/big/6", "/a/cl/7"] * 2:
            sock.sendall(request(path))
            response(sock)
            count += 1
        sock.sendall(request("/a/cl/8", method="HEAD"))
        response(sock, head_request=True)
        sock.sendall(request("/a/cl/9", close=True))
        response(sock)
        count += 2
    for i in range(12):                     # a connection per request (TLS: Newcomers)
        with proxy.connect(10) as sock:
            sock.sendall(request(f"/a/{'cl' if i % 3 else 'missing'}/{i}", close=True))
            response(sock)
            count += 1
    with proxy.connect(10) as sock:
        for i in range(2):
            sock.sendall(request(f"/slow/slow/{i}"))
            response(sock)
            count += 1
    return count


@pytest.fixture(scope="module", params=["plain", "tls"])
def proxies(request, tmp_path_factory):
    started = []
    try:
        for count in ("1", "0"):
            backend = RawBackend(answer)
            directory = tmp_path_factory.mktemp(f"count{count}")
            proxy = Proxy(directory, [{"path": "/slow/", "to": backend.url + "/slow/"},
                                      {"path": "/", "to": backend.url + "/"}],
                          workers=1, environ={"MPM_NATIVE_LANE_COUNT": count}, admin=admin_section())
            if request.param == "tls":
                serve_tls(proxy, directory)
            started.append(proxy.start())
        yield started
    finally:
        for proxy in started:
            proxy.stop()


def test_the_c_counts_what_python_counts(proxies):
    seen = []
    for proxy in proxies:
        made = _workload(proxy)
        samples = wait_for(lambda proxy=proxy, made=made: (lambda s: s if value(s, "mpm_requests_total") == made
                                                           else None)(scrape(proxy)), 10, 0.1,
                           f"{made} requests in /metrics")
        seen.append(samples)
    in_c, in_python = (counted(samples) for samples in seen)
    assert in_c == in_python
    assert in_c["mpm_requests_total", "/", "4xx"] == 2 + 4       # the 404s: the backend's, not ours
    assert in_c["mpm_requests_total", "/", "5xx"] == 2
    assert value(seen[0], "mpm_backend_errors_total") == value(seen[1], "mpm_backend_errors_total") == 0
    for samples in seen:
        slow = {dict(labels)["le"]: number for (name, labels), number in samples.items()
                if name == "mpm_request_duration_seconds_bucket" and dict(labels)["route"] == "/slow/"}
        assert slow["0.25"] == 0 and slow["+Inf"] == 2, slow        # each took SLOW seconds or more
        assert value(samples, "mpm_request_duration_seconds_sum", route="/slow/") >= 2 * SLOW


def test_a_response_that_ends_during_a_reload_is_counted_once(tmp_path):
    """The lane's C counts the response; its end, after the stop began, goes through worker.client
    (worker.laneowner's `lane_done`), which must not count it again."""
    backend = RawBackend(answer)
    proxy = Proxy(tmp_path, [{"path": "/", "to": backend.url + "/"}], workers=1, admin=admin_section())
    proxy.start()
    try:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)     # before the connect: it stays small
            sock.settimeout(10)
            sock.connect(("127.0.0.1", proxy.port))
            sock.sendall(request("/a/cl/0"))
            response(sock)
            sock.sendall(request("/a/huge/1"))
            got = sock.recv(4096)           # the head is out: the lane relays the body, held back by us
            assert got.startswith(b"HTTP/1.1 200")
            old = proxy.worker_pids()
            assert proxy.reload().returncode == 0
            assert set(old) <= set(proxy.worker_pids(current_only=False)), "the old worker left mid-response"
            got = len(got) - got.index(HEAD_END) - 4
            while got < HUGE:
                chunk = sock.recv(1 << 20)
                assert chunk, "closed in the body"
                got += len(chunk)
        wait_for(lambda: not set(old) & set(proxy.worker_pids(current_only=False)), 15, 0.1, "the old worker's exit")
        samples = scrape(proxy)
        assert value(samples, "mpm_requests_total", route="/") == 2
        assert value(samples, "mpm_request_duration_seconds_count", route="/") == 2
    finally:
        proxy.stop()


def test_a_response_the_client_cuts_short_is_counted_once(tmp_path):
    """Python counts an exchange the lane gives back cut short (`lane_back`, BACK_ABORTED), once."""
    backend = RawBackend(answer)
    proxy = Proxy(tmp_path, [{"path": "/", "to": backend.url + "/"}], workers=1, admin=admin_section())
    proxy.start()
    try:
        with proxy.connect(10) as sock:
            sock.sendall(request("/a/cl/0"))
            response(sock)
            sock.sendall(request("/a/huge/1"))
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")   # a reset
        wait_for(lambda: value(scrape(proxy), "mpm_requests_total") == 2, 10, 0.1, "both requests in /metrics")
        time.sleep(0.5)                     # a second count of either would come within a loop turn
        samples = scrape(proxy)
        assert value(samples, "mpm_requests_total", route="/") == 2
        assert value(samples, "mpm_request_duration_seconds_count", route="/") == 2
    finally:
        proxy.stop()
