"""Hostile clients at the edge (review 2026-12-03-hostile): what a client refused by its
per-client limit may still cost others, and what a reload must re-decide about the
connections and tunnels it hands over (trusted proxies, limits).

Distinct clients are distinct loopback sources (127.0.0.N); one worker throughout."""

from __future__ import annotations

import select
import socket
import threading
import time

import pytest
from httpclient import read_raw_response
from proxyproc import Proxy
from rawbackend import RawBackend, echo_after_101
from rawsock import read_head, status_of
from support import wait_for
from wsutil import upgrade_request


def _connect(proxy: Proxy, source: str) -> socket.socket | None:
    """None when the proxy's reset of a refused connection came before connect() returned."""
    try:
        return proxy.connect(timeout=5, source=source)
    except ConnectionResetError:
        return None


def _ask(sock: socket.socket, path: str, headers: str = "") -> int | None:
    """One request on a keep-alive connection: its status, or None when the connection ended."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n".encode())
    try:
        return read_raw_response(sock).status
    except (EOFError, ConnectionResetError):
        return None


def _closed_by_peer(sock: socket.socket) -> bool:
    if not select.select([sock], [], [], 0)[0]:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except ConnectionResetError:
        return True


# == #1: room is made only for a connection its client's limit admits ===========================
@pytest.mark.timeout(30)
def test_a_refused_client_closes_no_other_connection_for_room(proxy_factory, http_backend):
    """At capacity, each connection of a client over its limit used to close another client's
    idle keep-alive connection first (room made before the client was known), then be refused."""
    release = threading.Event()
    backend = http_backend(lambda request, body: (release.wait(10) if request["target"] == "/slow" else None,
                                                  (200, [("Content-Length", "2")], b"ok"))[1])
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1,
                          mpm={"threads_per_child": 4, "max_request_workers": 4, "server_limit": 1},
                          limits={"per_client": {"connections": 1}})
    victims = [_connect(proxy, f"127.0.0.{20 + i}") for i in range(3)]     # idle keep-alive, 3 clients
    assert [_ask(v, "/") for v in victims] == [200, 200, 200]
    attacker = _connect(proxy, "127.0.0.66")                                # its one allowed connection,
    attacker.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")               # busy: the worker is full
    wait_for(lambda: len(backend.requests) == 4, 5, what="the slow request at the backend")
    closed = 0
    for _ in range(4):
        refused = _connect(proxy, "127.0.0.66")
        if refused is not None:
            refused.settimeout(2)
            with pytest.raises((ConnectionResetError, EOFError)):
                read_raw_response(refused)
            refused.close()
        time.sleep(0.05)
        for i, victim in enumerate(victims):
            if _closed_by_peer(victim):                     # a browser would come back: so do we
                closed += 1
                victim.close()
                victims[i] = _connect(proxy, f"127.0.0.{20 + i}")
                assert _ask(victims[i], "/") == 200
    assert closed == 0, f"{closed} idle connections of other clients closed for 4 refused attempts"
    # Room is still made for a client its limit admits: a newcomer closes the longest idle victim.
    newcomer = _connect(proxy, "127.0.0.30")
    assert _ask(newcomer, "/") == 200
    assert sum(_closed_by_peer(v) for v in victims) == 1
    release.set()
    for sock in (*victims, attacker, newcomer):
        sock.close()


# == #2: a handed-over connection is trusted (or not) by the new configuration ===================
def _reload(proxy: Proxy, generation: int) -> None:
    proxy.write_config()
    assert proxy.reload().returncode == 0
    proxy.wait_ready(generation)
    wait_for(lambda: proxy.status()["old_generation_workers"] == 0, 10, 0.05, "the old worker gone")


@pytest.mark.timeout(40)
def test_a_reload_re_decides_trust_for_the_connections_it_hands_over(proxy_factory, http_backend):
    """The new worker used to take the old one's verdict with the socket: a balancer added to
    trusted_proxies kept counting as one client on its pooled connection (429 for everyone
    behind it); one removed kept having its X-Forwarded-For believed."""
    backend = http_backend()
    per_client = {"requests": {"rate": 1, "burst": 2}}
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1, limits={"per_client": per_client})
    balancer = _connect(proxy, "127.0.0.9")                 # a balancer's pooled keep-alive connection
    assert _ask(balancer, "/warm") == 200

    def four_clients(first: int) -> list:
        return [_ask(balancer, f"/c{i}", f"X-Forwarded-For: 203.0.113.{i}\r\n") for i in range(first, first + 4)]
    proxy.config["limits"] = {"per_client": per_client, "trusted_proxies": ["127.0.0.9"]}
    _reload(proxy, 2)
    assert four_clients(1) == [200, 200, 200, 200]          # four clients, each its own bucket
    proxy.config["limits"] = {"per_client": per_client, "trusted_proxies": []}
    _reload(proxy, 3)
    assert four_clients(5).count(429) >= 2                   # one client again (the peer): its burst is 2
    balancer.close()


# == #3: a worker that started without a counter cell claims one when it is free ================
@pytest.mark.timeout(60)
def test_a_worker_without_a_counter_cell_enforces_the_limits_once_one_is_free(proxy_factory, http_backend):
    """Every cell of the client table (8 for one worker) held by older workers still finishing
    a slow response: the next worker starts without one, and used to enforce no per-client
    limit for its whole life, even after those workers were gone.  Recycled workers of one
    generation make it here (a reload now gives its new generation a table of its own when the
    old ones hold the cells: review 2026-12-03-soak #1, tests/test_soak_counts.py).  The ninth
    worker is judged on its own keep-alive connection: three requests over a burst of 1."""
    release = threading.Event()

    def answer(request, body):
        if request["target"] == "/slow":
            release.wait(20)
        return 200, [("Content-Length", "2")], b"ok"
    backend = http_backend(answer)
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1,
                          mpm={"max_connections_per_child": 1, "graceful_timeout": 30},
                          limits={"per_client": {"requests": {"rate": 1, "burst": 1}}})
    slow = []
    for i in range(8):          # each worker recycles after its one connection, and lingers with it
        sock = _connect(proxy, f"127.0.0.{40 + i}")
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        slow.append(sock)
        wait_for(lambda i=i: len(backend.requests) == i + 1, 5, what=f"slow request {i} at the backend")
    wait_for(lambda: "client table: no free counter cell" in proxy.error_text(), 5, 0.05, "no cell")
    release.set()               # the eight answer and exit; the master frees their cells
    wait_for(lambda: "client table: got a counter cell" in proxy.error_text(), 10, 0.05, "a cell claimed")
    ninth = _connect(proxy, "127.0.0.60")
    try:
        statuses = [_ask(ninth, f"/r{n}") for n in range(3)]
    finally:
        ninth.close()
        for sock in slow:
            sock.close()
    assert statuses[0] == 200 and 429 in statuses[1:], statuses


# == #4: tunnels handed to a generation that counts are counted there ============================
def _upgrade(proxy: Proxy, source: str, path: str) -> tuple[socket.socket, int]:
    sock = _connect(proxy, source)
    sock.sendall(upgrade_request(path))
    head, _ = read_head(sock)
    return sock, status_of(head)


@pytest.mark.timeout(30)
def test_tunnels_open_before_a_reload_that_turns_limits_on_count_after_it(proxy_factory):
    """A tunnel opened with no limits carried no holds, and its new worker counted it
    nowhere: the client opened `tunnels` more on top of the ones it had."""
    ws = RawBackend(echo_after_101, timeout=20)
    try:
        proxy = proxy_factory([{"path": "/ws/", "to": ws.ws_url + "/ws/"}], workers=1)
        tunnels = [_upgrade(proxy, "127.0.0.70", f"/ws/{i}") for i in range(2)]
        assert [status for _, status in tunnels] == [101, 101]
        proxy.config["limits"] = {"per_client": {"tunnels": 2}}
        _reload(proxy, 2)
        for sock, _ in tunnels:                              # moved, and still working
            sock.sendall(b"ping")
            assert sock.recv(10) == b"ping"
        assert proxy.status()["clients"]["active"] == 1
        third, status = _upgrade(proxy, "127.0.0.70", "/ws/third")
        third.close()
        assert status == 503                                 # it holds 2 already
        tunnels[0][0].close()
        wait_for(lambda: proxy.status()["clients"]["active"] == 1 and
                 _upgrade_status(proxy, "127.0.0.70", "/ws/fourth") == 101, 5, 0.1, "a place freed")
        tunnels[1][0].close()
        wait_for(lambda: proxy.status()["clients"]["active"] == 0, 5, 0.1, "nothing counted once all closed")
    finally:
        ws.close()


def _upgrade_status(proxy: Proxy, source: str, path: str) -> int:
    sock, status = _upgrade(proxy, source, path)
    sock.close()
    return status


# == #6: a trusted network written IPv4-mapped matches its IPv4 peers ==============================
@pytest.mark.timeout(20)
def test_a_trusted_proxy_written_ipv4_mapped_is_trusted(proxy_factory, http_backend):
    """The workers compare a mapped address as IPv4; a network written "::ffff:a.b.c.d" stayed
    IPv6 and matched nothing: the balancer's clients shared its bucket."""
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1,
                          limits={"per_client": {"requests": {"rate": 1, "burst": 1}},
                                  "trusted_proxies": ["::ffff:127.0.0.9", "::ffff:127.0.1.0/120"]})
    for n, balancer_ip in enumerate(("127.0.0.9", "127.0.1.7")):
        balancer = _connect(proxy, balancer_ip)
        statuses = [_ask(balancer, "/", f"X-Forwarded-For: 203.0.{113 + n}.{i}\r\n") for i in range(3)]
        assert statuses == [200, 200, 200], balancer_ip            # three clients, not one
        balancer.close()
    assert wait_access_client(proxy, "203.0.113.2")


def wait_access_client(proxy: Proxy, client: str) -> bool:
    wait_for(lambda: any(line.startswith(client + " ") for line in proxy.access_lines()), 3, 0.05,
             f"an access log line for {client}")
    return True


# == #5: a full client table is said in the error log, not only counted ==========================
@pytest.mark.timeout(20)
def test_a_full_client_table_is_logged(proxy_factory, http_backend):
    """Clients a full table leaves untracked have no limits (by design: fail open); that used
    to show only as a counter in `mpmctl status`."""
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1,
                          limits={"per_client": {"table": 64, "requests": {"rate": 1, "burst": 1}}})
    held = [_connect(proxy, f"127.0.1.{i}") for i in range(2, 130)]     # 128 clients, one connection each
    wait_for(lambda: proxy.status()["clients"]["untracked"] > 0, 5, 0.05, "untracked clients")
    line = wait_for(lambda: next((line for line in proxy.error_text().splitlines() if "client table full" in line),
                                 None), 3, 0.05, "the 'client table full' line")
    assert "per_client.table is 64" in line
    for sock in held:
        sock.close()
