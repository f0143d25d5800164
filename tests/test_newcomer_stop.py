"""A graceful stop (SIGTERM, no successor) and a reload with worker.newcomer's Newcomers silent,
waiting for their response, and relaying it, compared with the TLS lane off
(MPM_NATIVE_LANE_TLS=0): what each client gets, the access log, and when the old worker ends.
Written by the review of the change (docs/reviews/2026-12-06-newcomer)."""

from __future__ import annotations

import signal
import time

import pytest
from newcomerutil import REQ, combined_lines, newcomer, read_marked, shapes
from proxyproc import Proxy
from rawbackend import RawBackend
from support import serve_tls, wait_for

pytestmark = pytest.mark.timeout(300)


def _run(directory, tls_lane: str, how: str):
    backend = RawBackend(shapes(pause=0.8, parts=0.8))
    proxy = Proxy(directory, [{"path": "/", "to": backend.url + "/", "timeout": 5}], workers=1,
                  environ={"MPM_NATIVE_LANE_TLS": tls_lane},
                  timeouts={"connect": 2, "proxy": 10, "client_header": 3, "keepalive": 2})
    serve_tls(proxy, directory)
    proxy.start()
    got = {}
    try:
        silent = newcomer(proxy)
        parked = newcomer(proxy)
        time.sleep(1.3)                 # parked: past the lane's PARK (grown / left the lane)
        busy = newcomer(proxy)
        busy.sendall(REQ % b"pause")
        relaying = newcomer(proxy)
        relaying.sendall(REQ % b"parts")
        keep = newcomer(proxy)
        keep.sendall(b"GET /k HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.3)
        old = proxy.worker_pids()
        started = time.monotonic()
        if how == "stop":
            proxy.proc.send_signal(signal.SIGTERM)
        else:
            assert proxy.reload().returncode == 0
        time.sleep(0.1)
        got["busy"] = read_marked(busy)
        got["relaying"] = read_marked(relaying)
        got["keep"] = read_marked(keep, 1.0)
        keep.sendall(b"GET /k2 HTTP/1.1\r\nHost: t\r\n\r\n")
        got["keep2"] = read_marked(keep)
        silent.sendall(REQ % b"late")
        got["silent"] = read_marked(silent)
        parked.sendall(REQ % b"late2")
        got["parked"] = read_marked(parked)
        if how == "stop":
            proxy.proc.wait(15)
        else:
            wait_for(lambda: not set(old) & set(proxy.worker_pids(current_only=False)), 15, 0.05, "old worker gone")
        got["seconds"] = round(time.monotonic() - started, 1)
        time.sleep(0.3)
        lines = combined_lines(proxy, backend.port)
        for sock in (silent, parked, busy, relaying, keep):
            sock.close()
        return got, sorted(lines)
    finally:
        proxy.stop()
        backend.close()


@pytest.mark.parametrize("how", ["stop", "reload"])
def test_a_stop_with_newcomers_matches_the_python_path(tmp_path, how):
    lane = _run(tmp_path / "lane", "1", how)
    python = _run(tmp_path / "python", "0", how)
    assert abs(lane[0].pop("seconds") - python[0].pop("seconds")) < 0.7
    assert lane[0] == python[0]
    assert lane[1] == python[1]
