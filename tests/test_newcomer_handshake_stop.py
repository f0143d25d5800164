"""A graceful stop that comes in the same loop turn as the end of a Newcomer's handshake, whose
client sent its first request with its Finished (one segment: the request waits in the SSL
object, where epoll does not report it; the Newcomer queued its `kick`).  The stop's
`leave_all` grows the Newcomer and takes it out of the lane before the `kick` runs; the kick
must still have the request read (by what the Newcomer grew into, through worker.client), as
the ServerHandshake path (MPM_NATIVE_LANE_TLS=0) reads it: review 2026-12-06-handshake #2, where
the kick found the lane gone and did nothing (also before that change: 1bb80c6 failed too).

To put the client's last flight and the stop in one epoll batch, the worker is stopped
(SIGSTOP) while the client sends its Finished with its request and the master forwards its
SIGTERM; on SIGCONT the worker sees both.  Whether the client's event comes before the stop
depends on the wake-up: against the defect, one run of this test in three failed (each run
tries three times), so it catches a return of it sometimes, never falsely.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from newcomerutil import HalfwayClient, client_context, echo, https_get, tls_proxy
from rawbackend import RawBackend

pytestmark = pytest.mark.timeout(120)


def _run(directory, ca, tls_lane: str) -> bytes:
    os.makedirs(directory, exist_ok=True)
    backend = RawBackend(echo)
    proxy = tls_proxy(directory, ca, backend, environ={"MPM_NATIVE_LANE_TLS": tls_lane},
                      timeouts={"handshake": 10, "client_header": 4, "keepalive": 10})
    worker = None
    try:
        assert https_get(proxy.port, client_context(ca), "/warm").endswith(b"GET /warm")
        time.sleep(0.1)
        worker = proxy.worker_pids()[0]
        client = HalfwayClient(proxy.port, client_context(ca, tls13=True))
        time.sleep(0.3)                              # its round waits for the Finished (in epoll)
        os.kill(worker, signal.SIGSTOP)
        client.send_finished_with(b"GET /late HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        time.sleep(0.3)
        proxy.proc.send_signal(signal.SIGTERM)       # the master forwards it to the (stopped) worker
        time.sleep(0.5)
        os.kill(worker, signal.SIGCONT)
        answer = client.answer(8)
        proxy.proc.wait(20)
        return answer
    finally:
        if worker is not None:
            try:
                os.kill(worker, signal.SIGCONT)
            except ProcessLookupError:
                pass
        proxy.stop()
        backend.close()



def test_a_stop_in_the_turn_of_the_last_flight_still_answers_the_request(tmp_path, ca):
    python = _run(tmp_path / "python", ca, "0")
    assert python.startswith(b"HTTP/1.1 200 ") and b"GET /late" in python, python     # the reference
    # (The client's event comes before the stop's in most runs, not all: three tries.)
    lanes = [_run(tmp_path / f"lane{n}", ca, "1") for n in range(3)]
    for lane in lanes:
        assert lane.startswith(b"HTTP/1.1 200 ") and b"GET /late" in lane, lanes
