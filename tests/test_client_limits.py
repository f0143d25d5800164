"""Per-client limits shared by all workers (issue #15, part 1): `limits.per_client`
{connections, tunnels, requests {rate, burst}}, per-route overrides, trusted proxies.

Distinct clients are distinct loopback source addresses (127.0.0.2, 127.0.0.3, ...).  The
master has two workers, and a client's connections spread over both (one SO_REUSEPORT socket
each), so a limit that each worker counted alone would let twice as much through: the tests
that could tell check that both workers took part."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from backends import HttpBackend
from h2client import H2Client
from httpclient import Client, Reader, read_raw_response
from proxyproc import running_proxy, wait_access
from rawbackend import RawBackend, echo_after_101
from rawsock import read_head, status_of
from support import wait_for
from wsutil import upgrade_request

from shm.clients import WAYS, ClientTable

SLOW = threading.Event()


def _handler(request, body):
    if request["target"].startswith("/strict/slow"):
        SLOW.wait(10)
    return 200, [("Content-Type", "text/plain")], b"ok " + request["target"].encode()


@pytest.fixture(scope="module")
def backend():
    b = HttpBackend(_handler)
    yield b
    b.close()


@pytest.fixture(scope="module")
def ws():
    b = RawBackend(echo_after_101, timeout=20)
    yield b
    b.close()


LIMITS = {"per_client": {"connections": 4, "tunnels": 2, "requests": {"rate": 20, "burst": 10}}}


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, backend, ws):
    routes = [
        {"path": "/ws/", "to": ws.ws_url + "/ws/"},
        {"path": "/strict/", "to": backend.url + "/strict/",
         "per_client": {"connections": 1, "requests": {"rate": 1, "burst": 2}}},
        {"path": "/", "to": backend.url + "/"},
    ]
    with running_proxy(tmp_path_factory.mktemp("limits"), routes, workers=2, limits=LIMITS) as p:
        yield p


def _connect(proxy, source: str) -> socket.socket | None:
    """A connection from `source`; None when the proxy's reset of a refused connection (SO_LINGER
    0, at accept) came before connect() returned, which a loaded machine makes possible."""
    try:
        return proxy.connect(source=source)
    except ConnectionResetError:
        return None


def _get(proxy, source: str, path: str = "/", headers: str = "") -> int | None:
    sock = _connect(proxy, source)
    if sock is None:
        return None
    with sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{headers}\r\n".encode())
        try:
            return read_raw_response(sock).status
        except EOFError:
            return None


def _closed_unanswered(sock: socket.socket | None, timeout: float) -> bool | None:
    """True: closed without a byte (or reset before connect() returned: None from `_connect`);
    False: still open after `timeout`; None: it answered."""
    if sock is None:
        return True
    sock.settimeout(timeout)
    try:
        data = sock.recv(1)
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True if data == b"" else None


def _refused(proxy) -> dict:
    return proxy.status()["clients"]


# == the table itself ==========================================================================
def test_table_finds_inserts_and_evicts_the_longest_idle_entry_of_a_bucket():
    table = ClientTable(64, cells=2)
    try:
        cell = table.claim(111)
        assert cell == 0 and table.claim(222) == 1
        rows = {}
        for n in range(2000):          # enough keys to fill some bucket past WAYS
            row, _ = table.insert(0, n, 0, now=float(n))
            rows[n] = row
            bucket = table.bucket(0, n, 0)
            assert bucket <= row < bucket + WAYS
        assert table.summary()["tracked"] == 64
        last = 1999
        assert table.find(0, last, 0) == rows[last]
        # An entry someone counts in is never evicted: fill one bucket with busy entries.
        bucket = table.bucket(0, last, 0)
        for row in range(bucket, bucket + WAYS):
            table.conns[row * table.cells + 1] = 1
        same_bucket = next(n for n in range(10_000, 100_000) if table.bucket(0, n, 0) == bucket)
        assert table.insert(0, same_bucket, 0, now=5000.0) == (-1, False)     # untracked, not evicted
        table.conns[bucket * table.cells + 1] = 0          # one goes idle: it is taken, epoch moved
        epoch = table.epoch[bucket]
        assert table.insert(0, same_bucket, 0, now=5001.0) == (bucket, True)
        assert table.epoch[bucket] == epoch + 1 and table.tat[bucket] == 0.0
        # The master frees a dead worker's cell: its counts vanish, the living one's stay.
        table.conns[(bucket + 1) * table.cells + 0] = 3
        table.release_dead({111})
        assert table.cell_pid[1] == 0 and table.conns[(bucket + 2) * table.cells + 1] == 0
        assert table.conns[(bucket + 1) * table.cells + 0] == 3
    finally:
        table.close()


def _resident_shared_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssShmem:"))


def test_freeing_a_dead_cell_touches_only_the_entries_in_use():
    """Review 2026-12-03-reload #5: clearing a dead worker's cell wrote one word per page of
    the whole table, so the first reload (or worker death) made all of it resident: +128 MiB
    for the largest table (1,048,576 entries) with 2 workers, 1 GiB and 1.3 s with 16."""
    table = ClientTable(1 << 20, cells=16)
    try:
        for pid in range(100, 116):
            table.claim(pid)
        rows = [table.insert(0, n, 0, now=1.0)[0] for n in range(50)]
        for row in rows:
            table.conns[row * table.cells + 3] = 2
            table.tunnels[row * table.cells + 4] = 1
        before = _resident_shared_kib()
        table.release_dead(set(range(100, 116)) - {103})
        assert _resident_shared_kib() - before < 16 * 1024, "most of the table's 1 GiB of cells made resident"
        assert all(table.conns[row * table.cells + 3] == 0 for row in rows)
        assert all(table.tunnels[row * table.cells + 4] == 1 for row in rows)   # a live cell's counts stay
        assert table.cell_pid[3] == 0 and table.cell_pid[4] == 104
    finally:
        table.close()


# == connections ================================================================================
def test_connection_limit_is_shared_by_both_workers_and_closes_unread(proxy, backend):
    """10 connections from one client, limit 4: 4 stay open (on both workers: tried again
    until the kernel spread them so), 6 are closed without a byte read or written."""
    for _attempt in range(6):
        before = _refused(proxy)["refused_connections"]
        # One at a time, so the first four by arrival are the ones kept, wherever the kernel put
        # them (all at once, one worker could take its four before the other accepted any).
        socks = []
        for _ in range(10):
            socks.append(_connect(proxy, "127.0.0.2"))
            time.sleep(0.03)
        try:
            states = [_closed_unanswered(sock, 0.6) for sock in socks]
            assert states.count(True) == 6 and states.count(False) == 4, states
            status = proxy.status()
            assert status["clients"]["refused_connections"] - before == 6
            spread = all(w["connections"] >= 1 for w in status["workers"])
            assert _get(proxy, "127.0.0.3") == 200           # another client is not affected
            for sock, state in zip(socks, states, strict=True):
                if state is False:
                    sock.sendall(b"GET /kept HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    assert read_raw_response(sock).status == 200
        finally:
            for sock in socks:
                if sock is not None:
                    sock.close()
        # Closed connections give their places back.
        wait_for(lambda: _get(proxy, "127.0.0.2") == 200, 5, 0.1, "a new connection of 127.0.0.2")
        wait_for(lambda: proxy.status()["totals"]["connections"] == 0, 5, 0.1, "all closed")
        if spread:
            return
    pytest.fail("the kernel never spread the kept connections over both workers")


# == requests ===================================================================================
def test_request_rate_is_one_bucket_for_both_workers(proxy):
    """40 requests at once over 8 connections (both workers): burst 10 plus the refill, not twice."""
    socks = _spread(proxy, "127.0.0.4", 4)
    try:
        started = time.monotonic()
        for sock in socks:
            sock.sendall(b"GET /burst HTTP/1.1\r\nHost: t\r\n\r\n" * 10)
        answers = []
        for sock in socks:
            reader = Reader(sock)
            answers += [reader.response() for _ in range(10)]
        elapsed = time.monotonic() - started
    finally:
        for sock in socks:
            sock.close()
    ok = [a for a in answers if a.status == 200]
    limited = [a for a in answers if a.status == 429]
    assert len(ok) + len(limited) == 40
    # Two buckets would pass 20 + 40 * elapsed.  +2: the rounding, and the read-modify-write of
    # the shared timestamp without a lock (shm.clients), which the README allows one extra
    # request through (a full local run once saw 19 where 18.97 was the bound).
    assert 10 <= len(ok) <= 10 + 20 * elapsed + 2, (len(ok), elapsed)
    assert all(int(a.get("retry-after")) >= 1 for a in limited)
    assert all(a.get("connection") == b"keep-alive" for a in limited)     # a 429 keeps the connection
    assert _get(proxy, "127.0.0.5") == 200


def _spread(proxy, source: str, count: int) -> list[socket.socket]:
    """`count` connections from `source` that both workers hold some of."""
    for _attempt in range(8):
        socks = [proxy.connect(source=source) for _ in range(count)]
        # The scoreboard is written every half second: wait for it to count them all.
        status = wait_for(lambda: (lambda s: s if s["totals"]["connections"] >= count else None)(proxy.status()),
                          5, 0.1, "the connections counted")
        if all(w["connections"] for w in status["workers"]):
            return socks
        for sock in socks:
            sock.close()
        wait_for(lambda: proxy.status()["totals"]["connections"] == 0, 5, 0.1, "all closed")
    pytest.fail("the kernel never spread the connections over both workers")


def test_refusals_are_logged_once_a_second_per_client(proxy):
    before = _refused(proxy)["refused_requests"]
    with proxy.connect(source="127.0.0.7") as sock:
        sock.sendall(b"GET /strict/flood HTTP/1.1\r\nHost: t\r\n\r\n" * 100)     # 1/s, burst 2
        reader = Reader(sock)
        statuses = [reader.response().status for _ in range(100)]
    assert statuses.count(429) >= 95
    assert _refused(proxy)["refused_requests"] - before == statuses.count(429)
    time.sleep(0.3)
    lines = [line for line in proxy.error_text().splitlines() if "127.0.0.7: per-client limit" in line]
    assert 1 <= len(lines) <= 2, lines


def _get_after_a_pause(proxy, source: str, path: str) -> int | None:
    """The route's `connections: 1` counts a request until its worker has ended it, a few µs
    after the response's last send: the client can read it and ask again on the other worker
    in between (CI saw [200, 503, 429] once), which is the limit working, not this test's
    point; a pause of 50 ms keeps well inside the rate's burst."""
    time.sleep(0.05)
    return _get(proxy, source, path)


def test_a_route_with_its_own_limits_counts_apart(proxy, backend):
    assert [_get_after_a_pause(proxy, "127.0.0.8", "/strict/a") for _ in range(3)] == [200, 200, 429]
    assert _get(proxy, "127.0.0.8", "/other") == 200      # the global bucket is another one
    assert _get(proxy, "127.0.0.9", "/strict/a") == 200   # and so is another client's


def test_a_route_connections_limit_counts_requests_in_progress(proxy, backend):
    SLOW.clear()
    try:
        first = proxy.connect(source="127.0.0.10")
        first.sendall(b"GET /strict/slow HTTP/1.1\r\nHost: t\r\n\r\n")
        wait_for(lambda: any(r["target"] == "/strict/slow" for r in backend.requests), 5, 0.02, "slow request")
        seen = len(backend.requests)
        assert _get(proxy, "127.0.0.10", "/strict/second") == 503
        assert len(backend.requests) == seen
        SLOW.set()
        assert read_raw_response(first).status == 200
        first.close()
        time.sleep(1.1)          # the route's bucket (1/s, burst 2) refills
        assert _get(proxy, "127.0.0.10", "/strict/third") == 200
    finally:
        SLOW.set()


# == tunnels ======================================================================================
def _upgrade(proxy, source: str, path: str) -> tuple[socket.socket, int]:
    sock = proxy.connect(source=source)
    sock.sendall(upgrade_request(path))
    head, _ = read_head(sock)
    return sock, status_of(head)


def test_tunnel_limit_refuses_with_503_before_the_backend(proxy, ws):
    heads = len(ws.heads)
    first, a = _upgrade(proxy, "127.0.0.11", "/ws/1")
    second, b = _upgrade(proxy, "127.0.0.11", "/ws/2")
    third, c = _upgrade(proxy, "127.0.0.11", "/ws/3")
    try:
        assert (a, b, c) == (101, 101, 503)
        assert len(ws.heads) == heads + 2
        other, d = _upgrade(proxy, "127.0.0.12", "/ws/other")
        other.close()
        assert d == 101
        first.close()
        wait_for(lambda: _upgrade_status(proxy, "127.0.0.11", "/ws/4") == 101, 5, 0.1, "a place freed")
    finally:
        for sock in (first, second, third):
            sock.close()


def _upgrade_status(proxy, source, path) -> int:
    sock, status = _upgrade(proxy, source, path)
    sock.close()
    return status


def test_tunnels_keep_their_count_when_a_reload_hands_them_over(proxy_factory, ws):
    proxy = proxy_factory([{"path": "/ws/", "to": ws.ws_url + "/ws/"}], workers=1,
                          limits={"per_client": {"tunnels": 1}})
    first, status = _upgrade(proxy, "127.0.0.13", "/ws/kept")
    try:
        assert status == 101
        generation = proxy.status()["generation"]
        assert proxy.reload().returncode == 0
        proxy.wait_ready(generation + 1)
        wait_for(lambda: proxy.status()["old_generation_workers"] == 0, 10, 0.1, "the old worker gone")
        first.sendall(b"still there")
        assert first.recv(100) == b"still there"           # moved, and counted by its new worker
        assert _upgrade_status(proxy, "127.0.0.13", "/ws/second") == 503
        first.close()
        wait_for(lambda: _upgrade_status(proxy, "127.0.0.13", "/ws/third") == 101, 5, 0.1, "the place freed")
    finally:
        first.close()


# == who the client is ============================================================================
def test_trusted_proxy_names_the_client_with_its_last_forwarded_hop(proxy_factory, http_backend):
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1,
                          limits={"per_client": {"requests": {"rate": 0.5, "burst": 1}},
                                  "trusted_proxies": ["127.0.0.1/32"]})
    xff = "X-Forwarded-For: 198.51.100.9, 203.0.113.1\r\n"
    assert _get(proxy, "127.0.0.1", "/a", xff) == 200
    assert _get(proxy, "127.0.0.1", "/b", xff) == 429                     # the same client again
    assert _get(proxy, "127.0.0.1", "/c", "X-Forwarded-For: 203.0.113.2\r\n") == 200      # another one
    assert backend.header(0, "X-Forwarded-For") == ["198.51.100.9, 203.0.113.1, 127.0.0.1"]
    assert wait_access(proxy, '"GET /a HTTP/1.1" 200')[0].startswith("203.0.113.1 ")
    # Not trusted: its X-Forwarded-For names nobody; the peer is the client.
    assert _get(proxy, "127.0.0.14", "/d", "X-Forwarded-For: 203.0.113.3\r\n") == 200
    assert _get(proxy, "127.0.0.14", "/e", "X-Forwarded-For: 203.0.113.4\r\n") == 429
    assert wait_access(proxy, '"GET /d HTTP/1.1" 200')[0].startswith("127.0.0.14 ")


def test_the_forwarded_client_is_what_hash_balancing_hashes(proxy_factory, http_backend):
    members = [http_backend(), http_backend()]
    proxy = proxy_factory([{"path": "/", "to": "balancer://c/"}], workers=1,
                          balancers={"c": {"method": "hash", "members": [{"url": m.url} for m in members]}},
                          limits={"trusted_proxies": ["127.0.0.1"]})
    with Client(proxy) as client:
        for round_ in range(3):
            for n in range(1, 13):
                client.request("GET", f"/{round_}/{n}", headers=[("X-Forwarded-For", f"192.0.2.{n}")])
    where = {}
    for index, member in enumerate(members):
        for request in member.requests:
            where.setdefault(request["target"].rsplit("/", 1)[1], set()).add(index)
    assert len(where) == 12 and all(len(found) == 1 for found in where.values()), where   # each client sticks
    assert {next(iter(found)) for found in where.values()} == {0, 1}                     # and clients spread


def test_a_small_table_evicts_idle_clients_and_keeps_serving(proxy_factory, http_backend):
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1,
                          limits={"per_client": {"connections": 50, "requests": {"rate": 100, "burst": 100},
                                                 "table": 64}})
    for n in range(1, 201):
        assert _get(proxy, f"127.0.1.{n}") == 200
    clients = proxy.status()["clients"]
    assert clients["entries"] == 64 and clients["tracked"] <= 64
    assert clients["evicted"] >= 200 - 64 and clients["untracked"] == 0


# == the request bucket, by the clock ===========================================================
def test_the_bucket_allows_burst_then_rate_and_says_when_to_retry():
    import types

    from conf.model import PerClient, RequestRate
    from worker.limits import ClientLimits
    table = ClientTable(64, cells=2)
    try:
        loop = types.SimpleNamespace(now=1000.0)
        worker = types.SimpleNamespace(loop=loop, log_error=lambda level, message: None)
        limits = ClientLimits(worker, table, types.SimpleNamespace(
            per_client=PerClient(requests=RequestRate(rate=2.0, burst=3)), trusted_proxies=()))
        row = limits.row(b"192.0.2.1", 0)[0]
        rate = limits.rate
        assert [limits._take(row, rate) for _ in range(3)] == [0.0, 0.0, 0.0]      # the burst at once
        assert limits._take(row, rate) == pytest.approx(0.5)                        # then one every 0.5 s
        loop.now += 0.5
        assert limits._take(row, rate) == 0.0 and limits._take(row, rate) == pytest.approx(0.5)
        loop.now += 10                                                              # idle: full again, no more
        assert [limits._take(row, rate) == 0.0 for _ in range(4)] == [True, True, True, False]
    finally:
        table.close()


def test_a_keep_alive_connection_handed_over_keeps_its_count(proxy_factory, http_backend):
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1,
                          limits={"per_client": {"connections": 1}})
    kept = proxy.connect(source="127.0.0.15")
    try:
        kept.sendall(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_raw_response(kept).status == 200
        generation = proxy.status()["generation"]
        assert proxy.reload().returncode == 0
        proxy.wait_ready(generation + 1)
        wait_for(lambda: proxy.status()["old_generation_workers"] == 0, 10, 0.1, "the old worker gone")
        kept.sendall(b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_raw_response(kept).status == 200          # served by the new worker
        second = _connect(proxy, "127.0.0.15")
        assert _closed_unanswered(second, 1.0) is True         # still the client's one connection
        if second is not None:
            second.close()
    finally:
        kept.close()
    wait_for(lambda: _get(proxy, "127.0.0.15") == 200, 5, 0.1, "the place freed")


def test_http2_connections_and_streams_count_like_http11_ones(proxy_factory, http_backend):
    """h2c with prior knowledge: an HTTP/2 connection holds its client's one place until it
    closes, and its streams draw on the client's request bucket (429 with a retry-after field)."""
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], start=False, workers=1,
                          limits={"per_client": {"connections": 1, "requests": {"rate": 1, "burst": 3}}})
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
    proxy.start()
    client = H2Client(proxy.port, source="127.0.0.16")
    try:
        statuses = [client.get(f"/s{i}").status for i in range(5)]
        assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429], statuses
        assert int(client.get("/again").header("retry-after")) >= 1
        # HTTP/1.1 beside it: over the limit, closed unread at accept (review 2026-12-03-tls-h2 #6),
        # whose reset may come before connect() returns (None from _connect: refused all the same).
        second = _connect(proxy, "127.0.0.16")
        if second is not None:
            with second:
                try:
                    second.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                except (ConnectionResetError, BrokenPipeError):
                    pass
                assert _closed_unanswered(second, 1.0) is True
        assert _get(proxy, "127.0.0.17") == 200                        # another client is not affected
    finally:
        client.close()
    time.sleep(1.1)                                                    # the bucket refills one a second
    wait_for(lambda: _get(proxy, "127.0.0.16") == 200, 5, 0.2, "the HTTP/2 connection's place freed")
