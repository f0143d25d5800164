"""A bug in one connection's handler ends that connection, not the worker with every other one.

The fault is injected without changing the product: the proxy runs with PYTHONPATH pointing
at a `sitecustomize.py` that, in forked workers only, wraps three handlers to raise for a
magic request: an HTTP/1.1 exchange through a balancer when its backend's answer arrives
(`/boom`), a WebSocket tunnel when its client sends (`/ws/boom`), and an HTTP/2 connection
while it starts a stream (`/boom-h2`).  Each time only that connection closes; a WebSocket
tunnel on another connection through the same worker keeps echoing, the worker's pid and
fd count are what they were, the member's busy count is back to 0, and the error log has
the traceback, once for a fault that repeats.

A bug in the worker's own machinery (here its heartbeat timer) cannot be ended alone: the
worker recycles itself, and its tunnels go on in its replacement.

Before the fix (loop without containment) the first fault kills the worker."""

from __future__ import annotations

import socket
import time

import psutil
import pytest
from h2client import H2Client
from proxyproc import wait_log
from rawbackend import RawBackend, echo_after_101, respond, serve_simple
from rawsock import read_head, status_of
from support import wait_for
from test_balancer_failover import member_states
from wsutil import OP_TEXT, frame, read_frame, upgrade_request

SITECUSTOMIZE = '''
import os


def _arm():
    from tunnel.tunnel import Tunnel
    from worker.exchange import Exchange
    from worker.h2.stream import H2Stream
    from worker.process import Worker

    backend_event = Exchange.on_backend_event
    client_event = Tunnel.on_client_event
    start = H2Stream.start
    heartbeat = Worker._heartbeat

    def exchange_raises(self, mask):
        if self.head is not None and self.head.target == b"/boom" and self.phase == 2:   # WAITING
            raise RuntimeError("injected fault: exchange")
        return backend_event(self, mask)

    def tunnel_raises(self, mask):
        if self.context and self.context.get("target") == "/ws/boom":
            raise RuntimeError("injected fault: tunnel")
        return client_event(self, mask)

    def stream_raises(self):
        if self.request.path == b"/boom-h2":
            raise RuntimeError("injected fault: h2")
        return start(self)

    def heartbeat_raises(self):
        trigger = os.environ.get("HEARTBEAT_FAULT", "")
        if trigger and os.path.exists(trigger):
            os.unlink(trigger)
            raise RuntimeError("injected fault: heartbeat")
        return heartbeat(self)

    Worker._heartbeat = heartbeat_raises
    Exchange.on_backend_event = exchange_raises
    Tunnel.on_client_event = tunnel_raises
    H2Stream.start = stream_raises


os.register_at_fork(after_in_child=_arm)
'''


@pytest.fixture
def backends():
    made = []

    def make(handler) -> RawBackend:
        made.append(RawBackend(handler))
        return made[-1]
    yield make
    for backend in made:
        backend.close()


def _closing(conn) -> None:
    """Answers with Connection: close, so no idle pooled connection blurs the fd count."""
    serve_simple(conn, lambda head, body: respond(200, b"ok", [("Connection", "close")]))


def _echoes(sock: socket.socket, buf: bytearray, text: bytes) -> bool:
    sock.sendall(frame(text, OP_TEXT))
    return read_frame(sock, buf) == (OP_TEXT, text)


def _request(proxy, path: str) -> bytes:
    """What the proxy answers to one request before it closes (b"" for a bare close)."""
    with proxy.connect() as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
        return data


def _inject(tmp_path, native_relay: bool = False) -> dict:
    (tmp_path / "inject").mkdir()
    (tmp_path / "inject" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    # The tunnel's fault is injected in tunnel.tunnel's event handler, which relays plain tunnels
    # only with MPM_NATIVE_RELAY=0 (the C relay runs no Python per event; what it calls, a
    # tunnel's close, is contained per tunnel: tests/test_relay_native.py).  With the C relay,
    # the loop's turn is C's (tunnel/_relay_turn.c), which hands the other faults to containment.
    environ = {"PYTHONPATH": str(tmp_path / "inject"), "HEARTBEAT_FAULT": str(tmp_path / "heartbeat-fault")}
    return environ if native_relay else {**environ, "MPM_NATIVE_RELAY": "0"}


def _open_tunnel(proxy) -> tuple[socket.socket, bytearray]:
    tunnel = proxy.connect()
    tunnel.sendall(upgrade_request("/ws/echo"))
    head, buf = read_head(tunnel, bytearray())
    assert status_of(head) == 101
    assert _echoes(tunnel, buf, b"before")
    return tunnel, buf


@pytest.mark.timeout(30)
@pytest.mark.parametrize("relay", ["python", "c"])
def test_a_raising_handler_closes_its_connection_only(proxy_factory, backends, tmp_path, relay):
    """relay="c": the loop's turn in C dispatches the events; the tunnels' are relayed in C, so
    no tunnel handler of Python's can raise there."""
    member, ws = backends(_closing), backends(echo_after_101)
    proxy = proxy_factory([{"path": "/ws/", "to": f"ws://127.0.0.1:{ws.port}/ws/"},
                           {"path": "/", "to": "balancer://app/"}], start=False, workers=1,
                          environ=_inject(tmp_path, relay == "c"), balancers={"app": {"members": [{"url": member.url, "route": "a"}]}})
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
    proxy.start()
    [pid] = proxy.worker_pids()
    worker = psutil.Process(pid)

    tunnel, buf = _open_tunnel(proxy)        # the bystander, through the same (only) worker
    h2 = H2Client(proxy.port)
    assert h2.get("/fine-h2").status == 200
    h2.close()
    # Served after that close was read (a backend round trip later), and closed by the proxy
    # before its client sees the end: nothing else is open now but the tunnel.
    assert status_of(_request(proxy, "/fine")) == 200
    fds = worker.num_fds()

    for _ in range(2):                              # the second one's traceback is not logged again
        assert _request(proxy, "/boom") == b""      # nothing was sent yet: the connection just closes
    if relay == "python":
        wild = proxy.connect()
        wild.sendall(upgrade_request("/ws/boom"))
        head, wild_buf = read_head(wild, bytearray())
        assert status_of(head) == 101
        wild.sendall(frame(b"x", OP_TEXT))
        wild.settimeout(5)
        try:
            assert wild.recv(100) == b""            # that tunnel closed (a reset: our frame was unread)
        except ConnectionResetError:
            pass
        wild.close()
    broken = H2Client(proxy.port)
    broken.request("GET", "/boom-h2")
    broken.wait(lambda: broken.closed, 5, "the connection's close")
    broken.close()

    assert _echoes(tunnel, buf, b"after")           # the bystander's tunnel never noticed
    assert status_of(_request(proxy, "/fine")) == 200
    assert proxy.worker_pids() == [pid] and worker.is_running()
    assert wait_for(lambda: member_states(proxy, "app")["a"]["busy"] == 0 or None, 3, 0.1, "busy back to 0")
    assert wait_for(lambda: worker.num_fds() == fds or None, 3, 0.05, f"fds back to {fds}: {worker.num_fds()}")
    log = wait_log(proxy, "injected fault: h2")
    faults = (("exchange", "BackendConnection"), ("h2", "H2Connection"))
    for fault, owner in faults + ((("tunnel", "Tunnel"),) if relay == "python" else ()):
        assert log.count(f"RuntimeError: injected fault: {fault}") == 1, log
        assert f"internal error in {owner}: its connection is closed" in log, log
    assert "Traceback (most recent call last)" in log and "worker crashed" not in proxy.stderr_text()
    tunnel.close()
    time.sleep(0.1)


@pytest.mark.timeout(30)
def test_a_raising_timer_recycles_the_worker_and_its_tunnels_go_on(proxy_factory, backends, tmp_path):
    ws = backends(echo_after_101)
    proxy = proxy_factory([{"path": "/ws/", "to": f"ws://127.0.0.1:{ws.port}/ws/"}], workers=1,
                          environ=_inject(tmp_path))
    [pid] = proxy.worker_pids()
    tunnel, buf = _open_tunnel(proxy)
    (tmp_path / "heartbeat-fault").touch()
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
             10, 0.05, "the faulty worker's exit")
    [successor] = proxy.worker_pids()
    assert successor != pid
    assert _echoes(tunnel, buf, b"after")           # handed over, not dropped
    log = proxy.error_text()
    assert "heartbeat_raises: the worker recycles itself" in log, log
    assert "RuntimeError: injected fault: heartbeat" in log and "worker crashed" not in proxy.stderr_text()
    tunnel.close()
