"""Reload and hand-over edges an adversarial review found (each test failed before 4a52eda).

- a reload that lowers `mpm.workers` or moves a listener: every new connection is answered,
  and a port no longer listened on refuses connections (no inherited backlog nobody reads);
- a keep-alive connection whose read-ahead bytes fill several hand-over records (a 100 KB
  head still arriving, 64 KB pipelined behind a slow request) is answered after the move;
- a tunnel handed to a worker that is itself stopping (two reloads close together) is
  passed on to the newest generation and keeps relaying;
- `mpmctl reload` during `mpmctl upgrade` is refused, and the upgrade completes;
- a log file the new workers could not open, and a listener address already in use, refuse
  the reload with FILE:LINE while the old generation keeps serving (`mpmctl start` with a
  busy port names FILE:LINE too);
- requests pipelined before the client's FIN are all answered across a reload, the last
  with `Connection: close`;
- an h2c connection accepted before a reload that speaks after it gets a GOAWAY at once,
  instead of being served the old configuration until graceful_timeout.

Backends wait on events the test sets (`X-Wait: NAME`), so each step happens in the order the
scenario needs without long sleeps."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest
from h2client import H2Client
from proxyproc import Proxy
from rawbackend import RawBackend, echo, respond
from rawsock import http_response_body, read_head, status_of, tokens
from support import ROOT, free_port, wait_for
from wsutil import switch_response, upgrade_of, upgrade_request


def _app(conn) -> None:
    """Answers each request with its target; `X-Wait: NAME` holds the answer until the test
    sets event NAME; an Upgrade gets a 101 and then an echo."""
    while (head := conn.read_head()) is not None:
        conn.read_body(head)
        conn.backend.event(f"got {head.target}").set()
        if head.get("x-wait"):
            conn.backend.event(head.get("x-wait")).wait(20)
        if upgrade_of(head.raw):
            conn.send(switch_response(upgrade_of(head.raw), head.raw))
            echo(conn)
            return
        conn.send(respond(200, head.target.encode()))


@pytest.fixture
def backend():
    server = RawBackend(_app)
    yield server
    for event in list(server.events.values()):     # no handler left waiting
        event.set()
    server.close()


def _routes(backend: RawBackend) -> list[dict]:
    return [{"path": "/", "to": backend.url + "/"}]


def _got(backend: RawBackend, target: str) -> None:
    assert backend.event(f"got {target}").wait(5), f"the backend never received {target}"


def _responses(sock: socket.socket, count: int, limit: float = 10.0) -> list[tuple[bytes, bytes]]:
    """Up to `count` (head, body) responses in order; fewer if the proxy closes or goes silent first."""
    sock.settimeout(limit)
    out, buf = [], bytearray()
    try:
        while len(out) < count:
            head, buf = read_head(sock, buf)
            out.append((head, http_response_body(sock, head, buf)))
    except (ConnectionError, TimeoutError):
        pass
    return out


def _reload(proxy: Proxy, generation: int) -> None:
    result = proxy.reload()
    assert result.returncode == 0, result.stderr
    proxy.wait_ready(generation=generation)


def _wait_stopping(proxy: Proxy, pid: int) -> None:
    wait_for(lambda: any(w["pid"] == pid and w["state"] == "stopping" for w in proxy.status()["workers"]),
             5, 0.05, f"worker {pid} to begin its graceful stop")


def _wait_exited(proxy: Proxy, pids) -> None:
    wait_for(lambda: not set(pids) & set(proxy.worker_pids(current_only=False)), 10, 0.1,
             f"workers {sorted(pids)} to exit")


def _line_of(path: str, needle: str) -> int:
    with open(path) as f:
        return next(n for n, line in enumerate(f, 1) if needle in line)


def _unanswered(port: int, count: int, limit: float = 3.0) -> int:
    """Opens `count` connections at once, a GET on each: how many got no 200 within `limit` s."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=limit) for _ in range(count)]
    deadline, lost = time.monotonic() + limit, 0
    for n, sock in enumerate(socks):
        sock.sendall(b"GET /new/%d HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % n)
    for sock in socks:
        with sock:
            sock.settimeout(max(deadline - time.monotonic(), 0.05))
            try:
                lost += status_of(sock.recv(65536)) != 200
            except OSError:
                lost += 1
    return lost


@pytest.fixture
def busy_port():
    """A port some other program listens on (without SO_REUSEPORT: the proxy cannot share it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


# == 1. retired listening sockets ===========================================================

@pytest.mark.timeout(40)
def test_fewer_workers_after_reload_answer_every_new_connection(proxy_factory, backend):
    proxy = proxy_factory(_routes(backend), workers=2)
    old = proxy.worker_pids()
    proxy.config["mpm"]["workers"] = 1
    proxy.write_config()
    _reload(proxy, 2)
    _wait_exited(proxy, old)
    lost = _unanswered(proxy.port, 20)
    assert lost == 0, f"{lost} of 20 new connections were accepted but never answered after workers 2 -> 1"


@pytest.mark.timeout(40)
def test_a_listener_moved_by_reload_refuses_on_its_old_port(proxy_factory, backend):
    proxy = proxy_factory(_routes(backend), workers=1)
    old, old_port, new_port = proxy.worker_pids(), proxy.port, free_port()
    proxy.config["listen"] = [f"127.0.0.1:{new_port}"]
    proxy.write_config()
    _reload(proxy, 2)
    _wait_exited(proxy, old)
    try:
        socket.create_connection(("127.0.0.1", old_port), timeout=2).close()
        pytest.fail(f"port {old_port}, dropped by the reload, still accepts connections")
    except ConnectionRefusedError:
        pass
    assert _unanswered(new_port, 5) == 0, "the new port serves"


# == 2. hand-over of a connection with more read-ahead than one record ======================

@pytest.mark.timeout(40)
def test_handover_of_a_100kb_head_still_arriving(proxy_factory, backend):
    # The head's deadline runs across the reload: on a loaded machine a reload and the old
    # worker's exit took longer than the suite's 5 s client_header (a 408, not the fault).
    proxy = proxy_factory(_routes(backend), workers=1, timeouts={"client_header": 30})
    old = proxy.worker_pids()
    head = b"GET /big HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-H%d: %s\r\n" % (n, b"v" * 4000) for n in range(25))
    with proxy.connect(10) as sock:
        sock.sendall(head[:-100])
        time.sleep(0.3)                           # read by the worker: it travels as read-ahead bytes
        _reload(proxy, 2)
        _wait_exited(proxy, old)                  # the connection has moved
        sock.sendall(head[-100:] + b"\r\n")
        answers = _responses(sock, 1)
    assert [(status_of(h), b) for h, b in answers] == [(200, b"/big")], \
        f"a {len(head)}-byte head half-sent across a reload got {answers!r}"


@pytest.mark.timeout(40)
def test_handover_of_64kb_pipelined_behind_a_slow_request(proxy_factory, backend):
    proxy = proxy_factory(_routes(backend), workers=1)
    old = proxy.worker_pids()[0]
    rest = b"".join(b"GET /p%d HTTP/1.1\r\nHost: t\r\nX-Pad: %s\r\n\r\n" % (n, b"p" * 2000) for n in range(35))
    with proxy.connect(10) as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\nX-Wait: slow\r\n\r\n" + rest)
        _got(backend, "/slow")
        _reload(proxy, 2)
        _wait_stopping(proxy, old)
        backend.event("slow").set()
        bodies = [body for _, body in _responses(sock, 36)]
    expected = [b"/slow"] + [b"/p%d" % n for n in range(35)]
    assert bodies == expected, f"{len(bodies)} of 36 answered ({len(rest)} bytes pipelined behind /slow)"


# == 3. a tunnel adopted by a worker that is itself stopping ================================

@pytest.mark.timeout(40)
def test_tunnel_handed_to_a_stopping_worker_moves_on_to_the_newest(proxy_factory, backend):
    proxy = proxy_factory(_routes(backend), workers=1)
    tunnel = proxy.connect(10)
    slow = proxy.connect(10)
    try:
        tunnel.sendall(upgrade_request("/tunnel", extra="X-Wait: tunnel\r\n"))
        _got(backend, "/tunnel")                  # gen 1 waits for the 101
        _reload(proxy, 2)
        gen2 = proxy.worker_pids()[0]
        # `slow`, idle in gen 1, is handed to gen 2 at the reload: its request must reach gen 2.
        wait_for(lambda: [w["connections"] for w in proxy.status()["workers"] if w["pid"] == gen2] == [1],
                 5, 0.05, "the idle connection to reach the generation-2 worker")
        slow.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\nX-Wait: slow\r\n\r\n")
        _got(backend, "/slow")                    # keeps gen 2 alive once it stops
        _reload(proxy, 3)
        _wait_stopping(proxy, gen2)
        backend.event("tunnel").set()             # gen 1 hands the tunnel to gen 2, which is stopping
        head, _ = read_head(tunnel)
        assert status_of(head) == 101, head
        wait_for(lambda: [w["tunnels"] for w in proxy.status()["workers"] if w["generation"] == 3] == [1],
                 5, 0.1, "the tunnel to reach the generation-3 worker")
        backend.event("slow").set()
        assert _responses(slow, 1)[0][1] == b"/slow"
        _wait_exited(proxy, [gen2])
        tunnel.sendall(b"still here")
        assert tunnel.recv(100) == b"still here", "the tunnel relays after both older generations left"
    finally:
        tunnel.close()
        slow.close()


# == 4. reload during a hot upgrade ========================================================

SLOW_NEXT_MASTER = """import os, time
if os.environ.get("MPM_UPGRADE_FROM"):
    time.sleep(2)
"""


@pytest.mark.timeout(60)
def test_reload_during_upgrade_is_refused_and_the_upgrade_completes(proxy_factory, backend, tmp_path):
    """The next master is held 2 s at interpreter start (a sitecustomize on the masters'
    PYTHONPATH, active only in the process `mpmctl upgrade` starts), so the reload surely
    comes while the upgrade is under way: otherwise it takes well under a second."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SLOW_NEXT_MASTER)
    proxy = proxy_factory(_routes(backend), workers=1, environ={"PYTHONPATH": str(tmp_path / "site")})
    upgrade = subprocess.Popen([sys.executable, "-m", "mpm", "upgrade", "-c", proxy.config_path], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    new_master = None
    try:
        started = wait_for(lambda: re.search(r"upgrade: started master pid (\d+)", proxy.error_text()), 10, 0.02,
                           "the upgrade to start the next master")
        new_master = int(started.group(1))
        reload = proxy.reload()
        assert reload.returncode != 0 and "upgrade is under way" in reload.stderr, \
            f"a reload during an upgrade: exit {reload.returncode}, {reload.stdout}{reload.stderr}"
        output, _ = upgrade.communicate(timeout=30)
        assert upgrade.returncode == 0, output + proxy.error_text()[-3000:]
        assert proxy.proc.wait(10) == 0, "the old master finished"
        status = proxy.status()
        assert status["master_pid"] == new_master and status["generation"] == 2, status
        assert _unanswered(proxy.port, 3) == 0, "the new master serves"
    finally:
        if upgrade.poll() is None:
            upgrade.kill()
            upgrade.wait()
        if new_master is not None and psutil.pid_exists(new_master):
            master = psutil.Process(new_master)
            family = [master, *master.children()]
            os.kill(new_master, signal.SIGTERM)
            _, alive = psutil.wait_procs(family, 20)
            for process in alive:
                process.kill()


# == 5 and 8. configs that cannot work: refused with FILE:LINE, the old generation serves ===

@pytest.mark.timeout(30)
def test_reload_with_an_unopenable_access_log_is_refused(proxy_factory, backend, tmp_path):
    proxy = proxy_factory(_routes(backend), workers=1)
    before = proxy.worker_pids()
    proxy.config["log"]["access"] = str(tmp_path / "no-such-dir" / "access.log")
    proxy.write_config()
    line = _line_of(proxy.config_path, "no-such-dir")
    result = proxy.reload()
    assert result.returncode != 0 and f"{proxy.config_path}:{line}:" in result.stderr, \
        f"exit {result.returncode}: {result.stdout}{result.stderr}"
    assert proxy.status()["generation"] == 1 and proxy.worker_pids() == before, "the old generation is untouched"
    assert _unanswered(proxy.port, 3) == 0, "and serves"


@pytest.mark.timeout(30)
def test_reload_with_a_listener_address_in_use_names_it(proxy_factory, backend, busy_port):
    proxy = proxy_factory(_routes(backend), workers=1)
    before = proxy.worker_pids()
    address = f"127.0.0.1:{busy_port}"
    proxy.config["listen"] = [f"127.0.0.1:{proxy.port}", address]
    proxy.write_config()
    result = proxy.reload()
    where = f"{proxy.config_path}:{_line_of(proxy.config_path, address)}:"
    assert result.returncode != 0 and where in result.stderr and address in result.stderr, \
        f"wanted {where} and {address}: exit {result.returncode}: {result.stdout}{result.stderr}"
    assert proxy.worker_pids() == before and _unanswered(proxy.port, 3) == 0, "the old generation serves"


@pytest.mark.timeout(30)
def test_start_with_a_listener_address_in_use_names_it(proxy_factory, backend, busy_port):
    proxy = proxy_factory(_routes(backend), workers=1, start=False)
    address = f"127.0.0.1:{busy_port}"
    proxy.config["listen"] = [address]
    with pytest.raises(AssertionError, match="master exited"):
        proxy.start()
    where = f"{proxy.config_path}:{_line_of(proxy.config_path, address)}:"
    said = proxy.error_text() + proxy.stderr_text()
    assert where in said and address in said, f"wanted {where} and {address} in: {said}"


# == 6. requests pipelined before a FIN ====================================================

@pytest.mark.timeout(30)
def test_requests_pipelined_before_fin_are_answered_across_a_reload(proxy_factory, backend):
    proxy = proxy_factory(_routes(backend), workers=1)
    old = proxy.worker_pids()[0]
    with proxy.connect(10) as sock:
        sock.sendall(b"GET /one HTTP/1.1\r\nHost: t\r\nX-Wait: one\r\n\r\n"
                     b"GET /two HTTP/1.1\r\nHost: t\r\n\r\n"
                     b"GET /three HTTP/1.1\r\nHost: t\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        _got(backend, "/one")
        _reload(proxy, 2)
        _wait_stopping(proxy, old)
        backend.event("one").set()
        answers = _responses(sock, 3)
    assert [body for _, body in answers] == [b"/one", b"/two", b"/three"], answers
    assert "close" in tokens(answers[-1][0], "Connection"), "the last response says the connection ends"


# == 7. an HTTP/2 connection that speaks after the graceful stop began ======================

@pytest.mark.timeout(30)
def test_h2c_preface_after_reload_gets_goaway_at_once(proxy_factory, backend, monkeypatch):
    proxy = proxy_factory(_routes(backend), workers=1, start=False)
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
    proxy.start()
    old = proxy.worker_pids()[0]
    with proxy.connect() as early:                # accepted by the old worker, nothing sent yet
        wait_for(lambda: proxy.status()["totals"]["connections"] == 1, 5, 0.05, "the connection to be accepted")
        _reload(proxy, 2)
        _wait_stopping(proxy, old)
        with monkeypatch.context() as patch:       # the client speaks on that earlier connection
            patch.setattr(socket, "create_connection", lambda *args, **kwargs: early)
            client = H2Client(proxy.port)
        client.request("GET", "/late", scheme="http")
        client.wait(lambda: client.goaway is not None, 3, "GOAWAY for a connection born in a stopping worker")
    assert client.goaway.last_stream_id == 0, "no stream is processed by the old generation"
    assert not backend.event("got /late").is_set(), "served with the old configuration"
