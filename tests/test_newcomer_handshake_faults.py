"""Review 2026-12-06-handshake (a Newcomer's TLS handshake in the lane's C): a fault in what the
end of the handshake hands on to (worker.admission's `open_client`, called from the Newcomer's
`_hand_on` for a client that chose HTTP/2 by ALPN) must end that connection as on the
ServerHandshake path (MPM_NATIVE_LANE_TLS=0): worker.faults calls the owner's abandon(), the
connection is closed and no longer counted.

The fault is injected without changing the product, as tests/test_newcomer.py does: a
`sitecustomize.py` on PYTHONPATH wraps `Admission.open_client` in forked workers to raise for
an HTTP/2 connection.
"""

from __future__ import annotations

import os
import socket
import ssl
import time

import psutil
import pytest
from newcomerutil import client_context, echo, https_get, tls_proxy
from rawbackend import RawBackend
from support import wait_for

pytestmark = pytest.mark.timeout(90)

SITECUSTOMIZE = '''
import os


def _arm():
    from worker.admission import Admission

    open_client = Admission.open_client

    def open_client_raises(self, sock, ip, tls, addresses, holds, http2=False, deadline=None):
        if http2:
            raise RuntimeError("injected fault: open_client h2")
        return open_client(self, sock, ip, tls, addresses, holds, http2, deadline)

    Admission.open_client = open_client_raises


os.register_at_fork(after_in_child=_arm)
'''


def _run(directory, ca, tls_lane: str) -> dict:
    os.makedirs(directory / "inject", exist_ok=True)
    (directory / "inject" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    backend = RawBackend(echo)
    proxy = tls_proxy(directory, ca, backend,
                      environ={"MPM_NATIVE_LANE_TLS": tls_lane, "PYTHONPATH": str(directory / "inject")},
                      timeouts={"handshake": 5, "client_header": 30, "keepalive": 30})
    got = {}
    try:
        assert https_get(proxy.port, client_context(ca), "/warm").endswith(b"GET /warm")   # an idle backend connection waits
        time.sleep(0.1)
        pid = proxy.worker_pids()[0]
        fds_before = psutil.Process(pid).num_fds()
        raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        sock = client_context(ca, ("h2",)).wrap_socket(raw, server_hostname="localhost")   # the handshake ends
        sock.settimeout(3)
        try:
            got["client"] = "closed" if sock.recv(100) == b"" else "data"
        except TimeoutError:
            got["client"] = "open"
        except (ssl.SSLError, OSError):
            got["client"] = "closed"        # (closed without close_notify, or reset)
        sock.close()
        wait_for(lambda: "injected fault: open_client h2" in proxy.error_text(), 5, 0.05, "the fault logged")
        time.sleep(0.5)
        got["connections"] = proxy.status()["totals"]["connections"]
        got["fds"] = psutil.Process(pid).num_fds() - fds_before
        got["same worker"] = proxy.worker_pids() == [pid]
        # And a graceful stop: the worker leaves once it holds no connection.
        started = time.monotonic()
        proxy.proc.send_signal(15)
        proxy.proc.wait(20)
        got["stop seconds"] = round(time.monotonic() - started)
        return got
    finally:
        proxy.stop()
        backend.close()



def test_a_fault_handing_on_an_http2_client_closes_it_as_the_serverhandshake_path_does(tmp_path, ca):
    """ServerHandshake path: the fault is contained by ServerHandshake.abandon (worker.arrival:
    the socket closed, `connection_closed` counted).  Newcomer path: `_hand_on` has set
    `self.lane = None` before `open_client`, so Newcomer.abandon -> close() returns at once:
    the connection stays counted in `connections` for ever (and the stopping worker waits for
    it until graceful_timeout)."""
    python = _run(tmp_path / "python", ca, "0")
    lane = _run(tmp_path / "lane", ca, "1")
    assert python["connections"] == 0 and python["client"] == "closed"     # the reference
    assert lane == python, f"Newcomer path {lane} vs ServerHandshake path {python}"
