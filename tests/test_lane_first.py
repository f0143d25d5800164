"""A new connection's first exchange in the keep-alive lane (worker.lane.enter_first): the same
bytes to the client and the same access-log lines as the Python path (MPM_NATIVE_LANE=0) for
every kind of first request, on plain, TLS, PROXY-protocol and h2c listeners; and a connection
handed over at a reload, which is no new connection, is served by its adopter in order.

Each first request goes on a new connection right after a whole exchange on another one, so a
backend connection waits in the pool and the lane holds the new connection before it sends.
(From an adversarial review of the change, 2026-12-05: the hand-over case was its finding.)
"""

from __future__ import annotations

import re
import socket
import ssl
import time

import pytest
from proxyproc import Proxy
from rawbackend import RawBackend, respond
from support import serve_tls

pytestmark = pytest.mark.timeout(120)


def _answer(conn) -> None:
    while (head := conn.read_head()) is not None:
        body = conn.read_body(head)
        if head.get("upgrade"):
            conn.send(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\ntunnel")
            return
        if head.target.startswith(("/pause", "/slow")):
            time.sleep(0.3 if head.target.startswith("/pause") else 1.5)
        if head.target in IN_PARTS:
            first, rest = IN_PARTS[head.target]
            conn.send(first)
            time.sleep(0.5)
            conn.send(rest)
            continue
        conn.send(respond(200, f"{head.method} {head.target} {len(body)} xff={head.get('x-forwarded-for')}".encode()))


# Responses a backend sends in two parts, 0.5 s apart: what the client must get of the first part at once.
IN_PARTS = {
    "/length": (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nfirst", b"-last"),
    "/chunked": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n", b"5\r\n-last\r\n0\r\n\r\n"),
    "/hints": (b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlast"),
}


FIRST_REQUESTS = {
    "close": b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "close_head": b"HEAD /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "close_then_more": b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /d HTTP/1.1\r\nHost: x\r\n\r\n",
    "http10": b"GET /a HTTP/1.0\r\nHost: x\r\n\r\n",
    "http10_keep_alive": b"GET /a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
    "empty_lines": b"\r\n\r\nGET /e HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "post": b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    "pipelined": b"GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /p2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "upgrade": b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    "bad": b"GET /bad HTTP/1.1\r\nHost: x\r\nBad Field: y\r\n\r\n",
    "absolute": b"GET http://x/abs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "keep_alive_then_fin": b"GET /f HTTP/1.1\r\nHost: x\r\n\r\n",
    "close_slow_backend": b"GET /pause HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "close_and_te": b"GET /pause HTTP/1.1\r\nHost: x\r\nConnection: close, TE\r\nTE: trailers\r\n\r\n",
    "expect": b"GET /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
}


def _exchange(proxy: Proxy, data: bytes, shut: bool = False, timeout: float = 4.0) -> tuple[bytes, bool]:
    """What a new connection that sends `data` gets (its Date fields out), and whether it was
    closed (else the wait timed out)."""
    sock = proxy.connect(10)
    sock.sendall(data)
    if shut:
        time.sleep(0.1)
        sock.shutdown(socket.SHUT_WR)
    sock.settimeout(timeout)
    got, closed = b"", False
    try:
        while chunk := sock.recv(65536):
            got += chunk
        closed = True
    except (TimeoutError, ConnectionResetError) as exc:
        got += f"<{type(exc).__name__}>".encode()
    sock.close()
    return re.sub(rb"Date: [^\r]*\r\n", b"", got), closed


def _log(proxy: Proxy, backend: RawBackend) -> list:
    """The access log without the clock (%t, %D) and the backend's port."""
    time.sleep(0.5)
    return [re.sub(r"\[[^]]*\]", "[t]", re.sub(r'" \d+ "/', '" D "/', line)).replace(str(backend.port), "P")
            for line in proxy.access_lines()]


def _first_requests(directory, lane: str, tls: bool) -> tuple[dict, list]:
    backend = RawBackend(_answer)
    proxy = Proxy(directory, [{"path": "/", "to": backend.url + "/"}], workers=1,
                  environ={"MPM_NATIVE_LANE": lane}, timeouts={"keepalive": 2, "client_header": 3})
    if tls:
        serve_tls(proxy, directory)
    proxy.start()
    got = {}
    try:
        for name, data in FIRST_REQUESTS.items():
            assert _exchange(proxy, b"GET /warm HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[1]
            time.sleep(0.05)
            got[name] = _exchange(proxy, data, shut=name == "keep_alive_then_fin" and not tls)
        return got, _log(proxy, backend)
    finally:
        proxy.stop()
        backend.close()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_first_requests_are_answered_as_the_python_path_answers_them(tmp_path, tls):
    with_lane, lane_log = _first_requests(tmp_path / "lane", "1", tls)
    reference, reference_log = _first_requests(tmp_path / "python", "0", tls)
    assert {name: got for name, got in with_lane.items() if got != reference[name]} == {}, reference
    assert sorted(lane_log) == sorted(reference_log)


def _on_listener(directory, lane: str, listen: dict) -> tuple[list, list]:
    backend = RawBackend(_answer)
    proxy = Proxy(directory, [{"path": "/", "to": backend.url + "/"}], workers=1, environ={"MPM_NATIVE_LANE": lane})
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", **listen}]
    proxy.start()
    header = b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 80\r\n" if listen.get("proxy_protocol") else b""
    try:
        got = []
        for i in range(3):
            got.append(_exchange(proxy, header + b"GET /r%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % i))
            got.append(_exchange(proxy, header + b"GET /k%d HTTP/1.1\r\nHost: x\r\n\r\n" % i, timeout=1.0))
        return got, _log(proxy, backend)
    finally:
        proxy.stop()
        backend.close()


@pytest.mark.parametrize("listen", [{"proxy_protocol": True}, {"http2": "h2c"}, {"http2": "h2c", "proxy_protocol": True}],
                         ids=["proxy_protocol", "h2c", "h2c_proxy_protocol"])
def test_first_requests_on_proxy_protocol_and_h2c_listeners(tmp_path, listen):
    """The client's address the PROXY header names reaches the backend and the log either way."""
    with_lane = _on_listener(tmp_path / "lane", "1", listen)
    assert with_lane == _on_listener(tmp_path / "python", "0", listen)
    if listen.get("proxy_protocol"):
        assert all(b"xff=1.2.3.4" in got for got, _ in with_lane[0]), with_lane[0]


def test_a_connection_handed_over_at_a_reload_is_answered_in_order(tmp_path):
    """A keep-alive connection the old generation hands over with a pipelined request it had
    read already: the new worker has a backend connection waiting (an exchange of its own came
    first), yet the adopted connection is no new one and stays out of the lane until that
    request is answered, so the next one is answered after it, not before."""
    backend = RawBackend(_answer)
    proxy = Proxy(tmp_path, [{"path": "/", "to": backend.url + "/"}], workers=1, timeouts={"keepalive": 5})
    proxy.start()
    try:
        sock = proxy.connect(10)
        sock.settimeout(10)
        sock.sendall(b"GET /slow/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /slow/2 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        assert proxy.reload().returncode == 0
        proxy.wait_ready(2)
        time.sleep(0.2)
        assert _exchange(proxy, b"GET /warm HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[1]
        data = b""
        while b"/slow/1" not in data:
            data += sock.recv(65536)
        time.sleep(0.3)                 # handed over by now, /slow/2 under way in the new worker
        sock.sendall(b"GET /fast/3 HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(4)
        while len(re.findall(rb"GET (/[a-z]+/\d)", data)) < 3 and (chunk := sock.recv(65536)):
            data += chunk
        assert re.findall(rb"GET (/[a-z]+/\d)", data) == [b"/slow/1", b"/slow/2", b"/fast/3"], data
        sock.close()
    finally:
        proxy.stop()
        backend.close()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_client_that_sends_nothing_pins_no_backend_connection(tmp_path, tls):
    """Clients that connect (and finish their handshake) but send nothing hold no backend
    connection: the next request, on another new connection, reuses the one the pool had, so
    the backend sees one connection in all.  A silent client that speaks later is answered,
    within the lane's park time and after it."""
    backend = RawBackend(_answer)
    proxy = Proxy(tmp_path, [{"path": "/", "to": backend.url + "/"}], workers=1, timeouts={"client_header": 5})
    if tls:
        serve_tls(proxy, tmp_path)
    proxy.start()
    silent = []
    try:
        assert _exchange(proxy, b"GET /warm HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[1]
        time.sleep(0.05)
        silent = [proxy.connect(10) for _ in range(3)]
        time.sleep(0.3)
        got, closed = _exchange(proxy, b"GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert closed and b"GET /next" in got, got
        assert len(backend.conns) == 1, [conn.index for conn in backend.conns]
        for i, wait in ((0, 0.0), (1, 1.5)):        # before and after the lane's park time (1 s)
            time.sleep(wait)
            silent[i].sendall(b"GET /late%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % i)
            silent[i].settimeout(4)
            data = b""
            while chunk := silent[i].recv(65536):
                data += chunk
            assert data.startswith(b"HTTP/1.1 200") and b"GET /late%d" % i in data, data
        assert len(backend.conns) == 1
    finally:
        for sock in silent:
            sock.close()
        proxy.stop()
        backend.close()


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_first_request_to_a_balancer_route_after_a_warm_one(tmp_path, tls):
    """The lane holds a new connection once an exchange on a route to one backend left an idle
    connection; its first request may route anywhere: to a balancer (no single backend), it is
    served as worker.exchange serves it, and the idle connection is still there for the next."""
    backend, pooled = RawBackend(_answer), RawBackend(_answer)
    proxy = Proxy(tmp_path, [{"path": "/lb/", "to": "balancer://pool/"}, {"path": "/", "to": backend.url + "/"}],
                  workers=1, balancers={"pool": {"members": [{"url": pooled.url, "route": "a"}]}})
    if tls:
        serve_tls(proxy, tmp_path)
    proxy.start()
    try:
        for target, seen in ((b"/warm", b"/warm"), (b"/lb/x", b"/x"), (b"/again", b"/again"), (b"/lb/y", b"/y")):
            got, closed = _exchange(proxy, b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % target)
            assert closed and got.startswith(b"HTTP/1.1 200") and got.endswith(b"GET %s 0 xff=127.0.0.1" % seen), got
            time.sleep(0.05)
        assert len(backend.conns) == 1 and len(pooled.conns) == 1
        assert "Traceback" not in open(proxy.error_log).read()
    finally:
        proxy.stop()
        backend.close()
        pooled.close()


def test_a_silent_new_connection_is_answered_after_a_reload(tmp_path):
    """A new connection waits in the lane with no backend connection when the generation is
    replaced: it is handed over (or served by the old worker) and its request is answered."""
    backend = RawBackend(_answer)
    proxy = Proxy(tmp_path, [{"path": "/", "to": backend.url + "/"}], workers=1,
                  timeouts={"client_header": 8, "keepalive": 5})
    proxy.start()
    sock = None
    try:
        assert _exchange(proxy, b"GET /warm HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[1]
        time.sleep(0.05)
        sock = proxy.connect(10)
        time.sleep(0.2)
        assert proxy.reload().returncode == 0
        proxy.wait_ready(2)
        time.sleep(0.3)
        sock.sendall(b"GET /late HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        sock.settimeout(5)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"GET /late 0 xff=127.0.0.1"), data
        assert "[error]" not in proxy.error_text()
    finally:
        if sock is not None:
            sock.close()
        proxy.stop()
        backend.close()


QUICK_KINDS = {
    "keep_alive": b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n",
    "close": b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "keep_alive_then_close": b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n",
    "post": b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    "upgrade": b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    "bad": b"GET /bad HTTP/1.1\r\nHost: x\r\nBad Field: y\r\n\r\n",
}


def _proxy_and_client(tmp_path, tls: bool, lane: str):
    """A started proxy (the lane on or off) before a RawBackend(_answer), and a TLS client
    context that takes its certificate."""
    backend = RawBackend(_answer)
    proxy = Proxy(tmp_path, [{"path": "/", "to": backend.url + "/"}], workers=1, environ={"MPM_NATIVE_LANE": lane})
    if tls:
        serve_tls(proxy, tmp_path)
    proxy.start()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return proxy, backend, context


def _head_after(sock, request: bytes) -> tuple[bytes, float]:
    start = time.monotonic()
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data and (chunk := sock.recv(65536)):
        data += chunk
    return data, time.monotonic() - start


@pytest.mark.parametrize("lane", ["1", "0"], ids=["lane", "python"])
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_no_response_waits_behind_the_cork_of_a_closing_one(tmp_path, tls, lane):
    """A request that says `Connection: close` has its response, close_notify and FIN corked
    into one segment (`lane_cork`, worker/_lane_io.c; linger.cork in the Python path).  No
    response waits behind that, whatever comes first on a new connection, for a client that
    keeps Nagle on (Python's default, which waits for the ACK of what it sent before): each is
    answered in well under the 40 ms of a delayed ACK or the 200 ms after which the kernel
    sends corked bytes anyway.  Over TLS the next
    connections resume the session, whose ticket came on each one."""
    proxy, backend, context = _proxy_and_client(tmp_path, tls, lane)
    session, waits, resumed = None, {}, []
    try:
        for name, request in QUICK_KINDS.items():
            for _ in range(5):
                assert _exchange(proxy, b"GET /warm HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[1]
                time.sleep(0.05)            # an idle backend connection waits: the lane may take the next
                sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
                if tls:
                    sock = context.wrap_socket(sock, session=session)
                data, wait = _head_after(sock, request)
                if name == "keep_alive_then_close":
                    data, wait = _head_after(sock, QUICK_KINDS["close"])
                waits.setdefault(name, []).append(wait)
                assert data.startswith((b"HTTP/1.1 200", b"HTTP/1.1 101", b"HTTP/1.1 400")), (name, data)
                if tls:
                    resumed.append(sock.session_reused)
                    session = sock.session
                sock.close()
        assert {name: sorted(w)[2] for name, w in waits.items() if sorted(w)[2] >= 0.03} == {}, waits
        assert all(resumed[1:]), resumed
    finally:
        proxy.stop()
        backend.close()


@pytest.mark.parametrize("lane", ["1", "0"], ids=["lane", "python"])
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_the_first_part_of_a_closing_response_is_not_held_back(tmp_path, tls, lane):
    """A closing connection's last response is corked only once it is whole in hand (the lane:
    worker/_lane_engine.c calls `lane_cork`; the Python path: worker.response, linger.cork).  Corked from the request on, as it was, a
    response that comes in parts had each part held up to the kernel's 200 ms: the first part
    of a body that comes in two, of a streamed chunked one, and a 103 Early Hints ahead of its
    response (review 2026-12-05-lanereview #1: 201-212 ms, against 0-1 ms without the lane).
    Each kind three times, on a new connection (the lane takes it); its median must be well
    under 200 ms."""
    proxy, backend, context = _proxy_and_client(tmp_path, tls, lane)
    waits = {}
    try:
        for target, (first, _) in IN_PARTS.items():
            for _ in range(3):
                assert _exchange(proxy, b"GET /warm HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[1]
                time.sleep(0.05)            # an idle backend connection waits: the lane takes the next
                sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
                if tls:
                    sock = context.wrap_socket(sock)
                start = time.monotonic()
                sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % target.encode())
                data = b""
                while not data.endswith(first[-7:]) and (chunk := sock.recv(65536)):
                    data += chunk
                waits.setdefault(target, []).append(time.monotonic() - start)
                assert data.endswith(first[-7:]), (target, data)
                sock.close()
        assert {target: sorted(w)[1] for target, w in waits.items() if sorted(w)[1] >= 0.1} == {}, waits
    finally:
        proxy.stop()
        backend.close()


def test_new_connections_route_each_target_where_its_route_says(tmp_path):
    """The first request of each new connection is routed by its target on every connection,
    whichever target came before it on another one (worker.routing's `remember`, which keeps
    what the routes answered for a target): two backends, mapped paths, a target that matches
    no route, and more distinct targets than it keeps, after which the first ones still route
    as before.  The access log names each exchange's route and backend."""
    first, second = RawBackend(_answer), RawBackend(_answer)
    proxy = Proxy(tmp_path, [{"path": "/a/", "to": first.url + "/one/"}, {"path": "/b/", "to": second.url + "/"}],
                  workers=1, timeouts={"keepalive": 2, "client_header": 3})
    try:
        proxy.start()

        def get(target: str) -> bytes:
            got, closed = _exchange(proxy, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            assert closed
            return got.rpartition(b"\r\n\r\n")[2]

        for _ in range(3):
            assert get("/a/x") == b"GET /one/x 0 xff=127.0.0.1"
            assert get("/b/y") == b"GET /y 0 xff=127.0.0.1"
            assert b"404" in _exchange(proxy, b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0][:12]
        for n in range(1100):       # more than worker.routing.MEMO_MAX distinct targets
            assert get(f"/b/{n}") == f"GET /{n} 0 xff=127.0.0.1".encode()
        assert get("/a/x") == b"GET /one/x 0 xff=127.0.0.1"
        assert get("/b/y") == b"GET /y 0 xff=127.0.0.1"
        time.sleep(0.5)
        routed = [re.findall(r'"(/[ab]/)" "http://127\.0\.0\.1:(\d+)"', line) for line in proxy.access_lines()
                  if '"GET /c ' not in line]
        ports = {"/a/": str(first.port), "/b/": str(second.port)}
        assert len(routed) == 3 * 2 + 1100 + 2
        assert all(len(fields) == 1 and ports[fields[0][0]] == fields[0][1] for fields in routed), routed[:8]
    finally:
        proxy.stop()
        first.close()
        second.close()
