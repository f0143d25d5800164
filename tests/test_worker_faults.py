"""Worker faults two reviews found (HTTP/2 clients in front of balancers; leaks and hostile
clients), one test each, each failing on the code before its fix (fadbbc7, ed4b4c7, df37a20):

- an HTTP/2 write that fails while `resume_blocked` goes through its streams, or while a
  relay frames DATA, killed the worker with every connection on it (ValueError; AssertionError
  DONE -> DONE): the worker lives on and serves;
- a backend that resets after its whole response while the request body is still due to it
  (FLUSHING) left its fd in epoll: the worker spun at 100 % CPU;
- socket() failing for want of fds (EMFILE) put every healthy member in error state: it is the
  proxy's shortage, a 503 charged to nobody;
- a balanced route whose members answered garbage (or nothing) gave 503: 502, as a plain route;
- a client that does not take its response (an HTTP/2 window kept shut) or does not send its
  request body was blamed on the member (504, "backend timed out", a failure counted): no
  failure, and 408 for the body;
- a Connection header's field names stayed cached for ever (~128 KB a request), and a trusted
  proxy's X-Forwarded-For clients each kept a private PROXY-protocol backend connection: worker
  memory and fds stay bounded.

Every test starts its own master (one worker, so the worker's pid, CPU, memory and fds are
read from /proc through psutil) and its own scripted backends; the HTTP/2 ones listen h2c."""

from __future__ import annotations

import os
import resource
import signal
import socket
import struct
import time

import h2.settings
import psutil
import pytest
from h2client import H2Client
from hyperframe.frame import WindowUpdateFrame
from proxyproc import raw_exchange, wait_log
from rawbackend import RawBackend, RawConn, respond, serve_simple
from rawsock import header_values, read_head, status_of
from test_balancer_failover import member_states

MIB = 1 << 20


@pytest.fixture
def backends():
    """`make(handler, timeout=...)`: a RawBackend, closed (its waiting handlers released) at teardown."""
    made: list[RawBackend] = []

    def make(handler=None, timeout: float = 30.0) -> RawBackend:
        backend = RawBackend(handler, timeout=timeout)
        made.append(backend)
        return backend
    yield make
    for backend in made:
        for event in list(backend.events.values()):
            event.set()
        backend.close()


def _start(proxy_factory, routes, h2c: bool = False, **sections):
    """One worker; with `h2c`, the listener speaks HTTP/2 with prior knowledge (and HTTP/1.1)."""
    proxy = proxy_factory(routes, start=False, workers=1, **sections)
    if h2c:
        proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
    proxy.start()
    [pid] = proxy.worker_pids()
    return proxy, pid


def _balancer(*members: RawBackend, **options) -> dict:
    return {"app": {**options, "members": [{"url": m.url, "route": f"m{i}"} for i, m in enumerate(members)]}}


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _get(proxy, path: str = "/after") -> int | None:
    return status_of(raw_exchange(proxy, f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode()))


def _assert_worker_lives(proxy, pid: int, path: str = "/after") -> None:
    """No crash logged, the same worker, and it still answers a plain request."""
    text = wait_log(proxy, "worker crashed", 1.0)
    assert "worker crashed" not in text, text[text.index("worker crashed"):][:3000]
    assert proxy.worker_pids() == [pid], "the worker died and was replaced"
    assert _get(proxy, path) == 200


def _keepalive_get(sock: socket.socket, buf: bytearray, request: bytes) -> bytearray:
    """One request on a keep-alive connection; asserts a 200 and reads its body (Content-Length)."""
    sock.sendall(request)
    head, buf = read_head(sock, buf)
    assert status_of(head) == 200, head
    [length] = header_values(head, "content-length")
    while len(buf) < int(length):
        more = sock.recv(65536)
        assert more, "the proxy closed the connection"
        buf += more
    del buf[:int(length)]
    return buf


def _cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _big(conn: RawConn) -> None:
    """1 MiB to every request, sent at once."""
    while (head := conn.read_head()) is not None:
        if head.target.startswith("/after"):
            conn.send(respond(200, b"after"))
            continue
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % MIB)
        try:
            for _ in range(16):
                conn.send(b"b" * 65536)
        except OSError:
            return


# == HTTP/2: a write that fails under its caller ==============================================

@pytest.mark.timeout(40)
def test_a_reset_after_window_update_with_blocked_streams_leaves_the_worker_alive(proxy_factory, backends):
    """A client whose connection resets (a browser closed with downloads waiting on flow
    control) loses that connection alone: the worker, and every other client on it, lives on.
    Three streams blocked on the connection window, one WINDOW_UPDATE, a TCP reset at once:
    the write in `resume_blocked` failed, closed the connection under it, and `stream_done`
    raised ValueError for a stream still marked blocked: the worker died."""
    members = [backends(_big), backends(_big)]
    # The bystander waits idle through up to five attempts (over 4 s when none crashes, the
    # usual case now), so its connection must outlive them: keepalive 5 s closed it under load.
    proxy, pid = _start(proxy_factory, [{"path": "/", "to": "balancer://app/"}], h2c=True,
                        balancers=_balancer(*members), timeouts={"keepalive": 60})
    bystander = H2Client(proxy.port)                           # another client of the same worker
    for _attempt in range(5):             # the first one is enough, nearly always
        client = H2Client(proxy.port, auto_ack=False)          # reads, never acknowledges
        streams = [client.streams[client.request("GET", f"/big{i}")] for i in range(3)]
        client.wait(lambda s=streams: sum(len(x.body) for x in s) >= 65535, 10,
                    "the connection window's worth of the bodies")
        time.sleep(0.2)                                        # every stream waits on the window now
        client.sock.sendall(WindowUpdateFrame(0, window_increment=MIB).serialize())
        _reset(client.sock)
        if "worker crashed" in wait_log(proxy, "worker crashed", 0.5):
            break
    _assert_worker_lives(proxy, pid)
    assert bystander.get("/after").status == 200
    bystander.close()


@pytest.mark.timeout(40)
def test_a_reset_while_relays_frame_data_leaves_the_worker_alive(proxy_factory, backends):
    """Same promise when the reset lands while responses are being relayed: six streams of a
    browser-like client (8 MiB windows) have their heads; the worker is paused (SIGSTOP, to
    order the events as a busy worker would) while the members send the rest of their 60 KiB
    bodies and the client resets. On SIGCONT the relays frame over 256 KiB in one turn, the
    write fails, and the close ended the very exchange that was relaying: AssertionError
    DONE -> DONE, the worker died."""
    size, count = 60 * 1024, 6

    def member(conn: RawConn) -> None:
        while (head := conn.read_head()) is not None:
            if head.target.startswith("/after"):
                conn.send(respond(200, b"after"))
                continue
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            conn.backend.event("go").wait(20)
            try:
                conn.send(b"d" * size)
            except OSError:
                return

    members = [backends(member), backends(member)]
    proxy, pid = _start(proxy_factory, [{"path": "/", "to": "balancer://app/"}], h2c=True,
                        balancers=_balancer(*members))
    bystander = H2Client(proxy.port)                           # another client of the same worker
    client = H2Client(proxy.port, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 8 << 20})
    client.conn.increment_flow_control_window(8 << 20)
    client.flush()
    streams = [client.streams[client.request("GET", f"/r{i}")] for i in range(count)]
    client.wait(lambda: all(s.headers is not None for s in streams), 10, "every response's head")
    stopped = False
    try:
        os.kill(pid, signal.SIGSTOP)
        stopped = True
        for m in members:
            m.event("go").set()                 # the members send the rest of their bodies ...
        time.sleep(0.5)
        _reset(client.sock)                     # ... then the client resets its connection
        time.sleep(0.2)
    finally:
        if stopped:
            os.kill(pid, signal.SIGCONT)
    _assert_worker_lives(proxy, pid)
    assert bystander.get("/after").status == 200
    bystander.close()


# == the exchange: whose fault a failure is ==================================================

@pytest.mark.timeout(40)
def test_a_backend_reset_while_flushing_does_not_spin_the_worker(proxy_factory, backends):
    """A backend that resets after its whole response, while the request body is still due to
    it, costs the worker nothing: its fd stayed in epoll with no interest, EPOLLERR came back
    every poll, and the worker burnt a whole core until the route's timeout (1.8-2.0 s of CPU
    in 2 s). Here an h2 client with a 1-byte stream window keeps the response in the proxy
    (FLUSHING) and does not finish its POST body."""
    def member(conn: RawConn) -> None:
        head = conn.read_head()
        if head is None:
            return
        if head.target.startswith("/after"):
            conn.send(respond(200, b"after"))
            return
        conn.send(respond(200, b"y" * 8000))            # the whole response, at once
        conn.backend.event("reset").wait(20)            # the proxy has read it
        conn.reset()
        conn.backend.event("was reset").set()

    backend = backends(member)
    proxy, pid = _start(proxy_factory, [{"path": "/", "to": backend.url + "/", "timeout": 60}], h2c=True)
    client = H2Client(proxy.port, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1})
    stream = client.streams[client.request("POST", "/upload", headers=[("content-length", "100000")],
                                           body=b"x" * 1000, end=False)]
    client.wait(lambda: stream.headers is not None, 10, "the response's head")
    assert stream.status == 200
    backend.event("reset").set()
    assert backend.event("was reset").wait(5)
    time.sleep(0.3)
    before = _cpu(pid)
    time.sleep(2.0)
    burnt = _cpu(pid) - before
    assert burnt < 0.3, f"the worker burnt {burnt:.2f} s of CPU in 2 s with one stalled stream"
    client.close()
    _assert_worker_lives(proxy, pid)


@pytest.mark.timeout(40)
def test_running_out_of_fds_charges_no_member(proxy_factory, backends):
    """The proxy's own shortage of file descriptors says nothing about its members: the
    requests it cannot pass on get 503 and every member stays healthy. EMFILE from socket()
    counted as the member's connect failure and put both healthy members in error state for
    `retry` (60 s), in the table every worker shares: with sticky sessions and nofailover, a
    client of a healthy member got 503 for a minute after the shortage had passed."""
    def member(conn: RawConn) -> None:
        while (head := conn.read_head()) is not None:
            if "slow" in head.target:
                time.sleep(1.0)
            conn.send(respond(200, conn.backend.results["name"]))

    a, b = backends(member), backends(member)
    a.results["name"], b.results["name"] = b"a", b"b"
    balancers = {"app": {"sticky": "JSESSIONID", "nofailover": True,
                         "members": [{"url": a.url, "route": "a"}, {"url": b.url, "route": "b"}]}}
    proxy, pid = _start(proxy_factory, [{"path": "/", "to": "balancer://app/"}], h2c=True, balancers=balancers)
    client = H2Client(proxy.port, timeout=20)
    assert bytes(client.get("/x", headers=[("cookie", "JSESSIONID=s1.a")]).body) == b"a"
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    try:        # the worker may open 20 more descriptors than it holds
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (psutil.Process(pid).num_fds() + 20, hard))
        ids = [client.request("GET", f"/slow{i}") for i in range(60)]
        answers = [client.response(i, 20).status for i in ids]
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    assert 503 in answers and 200 in answers, answers             # the shortage did happen
    states = member_states(proxy, "app")
    assert {r: (m["state"], m["failures"]) for r, m in states.items()} == {"a": ("ok", 0), "b": ("ok", 0)}, \
        f"the proxy's fd shortage was charged to healthy members: {states}"
    stream = client.get("/x", headers=[("cookie", "JSESSIONID=s1.a")])
    assert stream.status == 200 and bytes(stream.body) == b"a"
    client.close()
    _assert_worker_lives(proxy, pid)


@pytest.mark.timeout(40)
def test_a_balanced_member_answering_garbage_or_nothing_gives_502(proxy_factory, backends):
    """A member that answers an invalid head, or closes without a response, is a bad gateway:
    once every member has tried, the client gets 502, as on a plain route and from nginx,
    HAProxy and Apache, over HTTP/2 and HTTP/1.1 alike. It got 503 'No balancer member could
    take the request', which monitoring reads as capacity, not as a broken backend."""
    def broken(conn: RawConn) -> None:
        head = conn.read_head()
        if head is not None and "garbage" in head.target:
            conn.send(b"HTTP/1.1 2OO BAD\r\n\r\n")          # invalid status line
        # "/empty": closes without a byte

    members = [backends(broken), backends(broken)]
    proxy, _ = _start(proxy_factory, [{"path": "/lb/", "to": "balancer://app/"},
                                      {"path": "/direct/", "to": members[0].url + "/"}],
                      h2c=True, balancers=_balancer(*members))
    client = H2Client(proxy.port)
    seen = {}
    for what in ("garbage", "empty"):
        seen[what] = (client.get(f"/lb/{what}").status, _get(proxy, f"/lb/{what}"),
                      client.get(f"/direct/{what}").status)
    assert seen == {"garbage": (502, 502, 502), "empty": (502, 502, 502)}, \
        f"(h2 balanced, HTTP/1.1 balanced, h2 plain route): {seen}"
    client.close()


@pytest.mark.timeout(40)
def test_an_h2_client_keeping_its_window_shut_is_not_blamed_on_the_member(proxy_factory, backends):
    """A client that stops taking its response (an HTTP/2 window never reopened) runs out
    the route's timeout on its own account: its stream ends, and the member, which sent all
    it had, is charged no failure and named in no 'backend timed out' error. It was: 504 at
    error level and `failures: 1` for a healthy member."""
    member = backends(_big)
    proxy, pid = _start(proxy_factory, [{"path": "/", "to": "balancer://app/", "timeout": 1}], h2c=True,
                        balancers=_balancer(member))
    client = H2Client(proxy.port, auto_ack=False)            # reads, never sends WINDOW_UPDATE
    stream = client.streams[client.request("GET", "/big")]
    client.wait(lambda: stream.finished, 10, "the stalled stream to end")
    assert len(stream.body) < MIB
    time.sleep(0.3)
    [state] = member_states(proxy, "app").values()
    blamed = [line for line in proxy.error_text().splitlines() if "backend timed out" in line]
    assert (state["failures"], state["state"], blamed) == (0, "ok", []), \
        f"the client's stall was charged to the member: {state}, {blamed}"
    client.close()
    _assert_worker_lives(proxy, pid)


@pytest.mark.timeout(40)
def test_a_stalled_request_body_gets_408_and_charges_no_member(proxy_factory, backends):
    """A client that stops sending its request body gets 408 Request Timeout (nginx's
    client_body_timeout, Apache's RequestReadTimeout) when the route's timeout runs out, and
    the member that took all it was sent is charged nothing. It got 504 'backend timed out',
    and the member a failure, for every slow uploader."""
    member = backends(serve_simple)          # waits for the whole body, as a backend does
    proxy, pid = _start(proxy_factory, [{"path": "/", "to": "balancer://app/", "timeout": 1}],
                        balancers=_balancer(member))
    started = time.monotonic()
    answer = raw_exchange(proxy, b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n" + b"a" * 10,
                          timeout=10)
    waited = time.monotonic() - started
    assert status_of(answer) == 408, f"after {waited:.1f}s: {answer[:200]!r}"
    [state] = member_states(proxy, "app").values()
    blamed = [line for line in proxy.error_text().splitlines() if "backend timed out" in line]
    assert (state["failures"], state["state"], blamed) == (0, "ok", []), \
        f"the client's stall was charged to the member: {state}, {blamed}"
    _assert_worker_lives(proxy, pid)


# == leaks ===================================================================================

@pytest.mark.timeout(60)
def test_connection_header_field_names_do_not_grow_the_worker(proxy_factory, backends):
    """A client's Connection header names fields (hop-by-hop), any names it likes: the worker's
    memory does not grow with them. Every name was cached for ever: ~128 KB of worker memory
    a request with ~900 new names, never freed (1,000 requests: +120 MB), until the worker
    was OOM-killed with every connection on it."""
    backend = backends()
    proxy, pid = _start(proxy_factory, [{"path": "/", "to": backend.url + "/"}])
    worker = psutil.Process(pid)
    with proxy.connect(10) as sock:
        buf = bytearray()
        for i in range(1000):
            if i == 100:                      # the worker's steady state
                before = worker.memory_info().rss
            tokens = b",".join(b"x%x" % (i * 1000 + j) for j in range(900))     # ~7.5 KB, under the field limit
            buf = _keepalive_get(sock, buf, b"GET /t HTTP/1.1\r\nHost: t\r\nConnection: keep-alive, " + tokens
                                 + b"\r\n\r\n")
    grown = (worker.memory_info().rss - before) / MIB
    assert grown < 20, f"worker RSS grew {grown:.1f} MB over 900 requests naming new fields"
    _assert_worker_lives(proxy, pid)


@pytest.mark.timeout(40)
def test_a_trusted_proxys_forwarded_clients_do_not_pile_up_backend_connections(proxy_factory, backends):
    """A front proxy (limits.trusted_proxies) forwarding many clients over one keep-alive
    connection to a route that sends the PROXY protocol keeps a few private backend
    connections, not one per client it ever named: each new X-Forwarded-For kept an idle
    backend connection until the pool's sweep (400 requests: 400 more fds), towards EMFILE."""
    def member(conn: RawConn) -> None:
        while conn.read_head() is not None:     # the PROXY line comes as the first head's first line
            conn.send(respond(200, b"ok"))

    backend = backends(member)
    proxy, pid = _start(proxy_factory, [{"path": "/", "to": backend.url + "/", "proxy_protocol": "v1"}],
                        limits={"trusted_proxies": ["127.0.0.0/8"]})
    worker = psutil.Process(pid)
    base = worker.num_fds()
    with proxy.connect(10) as sock:
        buf = bytearray()
        for i in range(400):
            buf = _keepalive_get(sock, buf, b"GET /t HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 10.0.%d.%d\r\n\r\n"
                                 % (i >> 8, i & 255))
        grown = worker.num_fds() - base
        assert grown <= 10, f"the worker holds {grown} more fds after 400 forwarded clients on one connection"
    _assert_worker_lives(proxy, pid)
