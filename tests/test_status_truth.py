"""What the master says about workers that stopped serving (review 2026-12-03-operating #6): a
worker whose heartbeat stopped (SIGSTOP here; a loop that never returns or a blocking call look
the same from the master) is not counted as serving by /healthz, is shown as not responding by
/server-status, and `mpmctl status --json` says how old its heartbeat is; once it runs again,
everything is as before.  (mpm.watchdog, 30 s by default, would replace it later.)  And the
admin listener answers a request target it cannot parse with 400, not with a traceback.

A real master, two workers, the admin listener on loopback."""

from __future__ import annotations

import os
import signal
import socket

import pytest
from admin_util import admin_port, admin_section, get
from rawbackend import RawBackend
from rawsock import read_head, status_of
from support import wait_for


def _auto(port: int) -> dict:
    body = get(port, "/server-status?auto")[2].decode()
    pairs = (line.split(": ", 1) for line in body.splitlines() if ": " in line)
    return {key: value for key, value in pairs if "=" not in key}


@pytest.fixture
def backend():
    backend = RawBackend()
    yield backend
    backend.close()


def test_workers_whose_heartbeat_stopped_are_not_reported_serving(proxy_factory, backend):
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=2, admin=admin_section())
    port = admin_port(proxy)
    pids = proxy.worker_pids()
    assert get(port, "/healthz")[0] == 200
    stopped = []
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        # (parent: 200 "2 workers serving" all along, until the watchdog)
        wait_for(lambda: get(port, "/healthz")[0] == 503, 6, 0.1, "/healthz to say no worker serves")
        auto = _auto(port)
        assert (auto["Scoreboard"], auto["IdleWorkers"], auto["BusyWorkers"], auto["Unresponsive"]) == \
            ("!!", "0", "0", "2"), auto
        workers = proxy.status()["workers"]
        assert all(w["state"] == "ready" and w["heartbeat_age"] >= 3 for w in workers), workers
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
    wait_for(lambda: get(port, "/healthz")[0] == 200, 3, 0.1, "/healthz 200 again")
    # One worker's heartbeat is enough for /healthz; the other's follows within its 0.5 s beat
    # (a clean-clone CI run read "!_" between the two).
    wait_for(lambda: (lambda auto: auto["Scoreboard"] == "__" and auto["Unresponsive"] == "0")(_auto(port)),
             3, 0.1, "both workers heartbeating again")
    assert proxy.worker_pids() == pids


def test_a_target_urlsplit_refuses_is_a_400_not_a_traceback(proxy_factory, backend):
    """`GET http://[ HTTP/1.1` to the admin listener is the client's error: 400, and nothing in
    the master's log (each one was a 500 and a traceback there: a way to flood it)."""
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1, admin=admin_section())
    port = admin_port(proxy)
    for target in ("http://[", "//[::1"):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(f"GET {target} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
            head, _ = read_head(sock)
        assert status_of(head) == 400, head         # (parent: 500)
    assert get(port, "/healthz")[0] == 200
    assert "Traceback" not in proxy.error_text()
