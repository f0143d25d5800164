"""A graceful stop (SIGTERM, no successor) and a reload with worker.newcomer's Newcomers silent,
waiting for their response, and relaying it, compared with the TLS lane off
(MPM_NATIVE_LANE_TLS=0): what each client gets, the access log, and when the old worker ends.
Written by the review of the change (docs/reviews/2026-12-06-newcomer)."""

from __future__ import annotations

import re
import signal
import ssl
import time

import pytest
from proxyproc import Proxy
from rawbackend import RawBackend, respond
from support import serve_tls, wait_for

pytestmark = pytest.mark.timeout(300)


def _backend(conn) -> None:
    while (head := conn.read_head()) is not None:
        if head.target == "/pause":
            time.sleep(0.8)
        elif head.target == "/parts":
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nfirst")
            time.sleep(0.8)
            conn.send(b"-last")
            continue
        conn.send(respond(200, f"{head.method} {head.target}".encode()))


REQ = b"GET /%s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


def _read(sock, timeout=4.0) -> bytes:
    sock.settimeout(timeout)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
        got += b"<closed>"
    except TimeoutError:
        got += b"<timeout>"
    except (ssl.SSLError, OSError) as exc:
        got += f"<{type(exc).__name__}>".encode()
    return re.sub(rb"Date: [^\r]*\r\n", b"", got)


def _newcomer(proxy):
    with proxy.connect() as warm:
        warm.sendall(REQ % b"warm")
        _read(warm)
    time.sleep(0.05)
    return proxy.connect()


def _run(directory, tls_lane: str, how: str):
    backend = RawBackend(_backend)
    proxy = Proxy(directory, [{"path": "/", "to": backend.url + "/", "timeout": 5}], workers=1,
                  environ={"MPM_NATIVE_LANE_TLS": tls_lane},
                  timeouts={"connect": 2, "proxy": 10, "client_header": 3, "keepalive": 2})
    serve_tls(proxy, directory)
    proxy.start()
    got = {}
    try:
        silent = _newcomer(proxy)
        parked = _newcomer(proxy)
        time.sleep(1.3)                 # parked: past the lane's PARK (grown / left the lane)
        busy = _newcomer(proxy)
        busy.sendall(REQ % b"pause")
        relaying = _newcomer(proxy)
        relaying.sendall(REQ % b"parts")
        keep = _newcomer(proxy)
        keep.sendall(b"GET /k HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.3)
        old = proxy.worker_pids()
        started = time.monotonic()
        if how == "stop":
            proxy.proc.send_signal(signal.SIGTERM)
        else:
            assert proxy.reload().returncode == 0
        time.sleep(0.1)
        got["busy"] = _read(busy)
        got["relaying"] = _read(relaying)
        got["keep"] = _read(keep, 1.0)
        keep.sendall(b"GET /k2 HTTP/1.1\r\nHost: t\r\n\r\n")
        got["keep2"] = _read(keep)
        silent.sendall(REQ % b"late")
        got["silent"] = _read(silent)
        parked.sendall(REQ % b"late2")
        got["parked"] = _read(parked)
        if how == "stop":
            proxy.proc.wait(15)
        else:
            wait_for(lambda: not set(old) & set(proxy.worker_pids(current_only=False)), 15, 0.05, "old worker gone")
        got["seconds"] = round(time.monotonic() - started, 1)
        time.sleep(0.3)
        lines = [re.sub(r"\[[^]]*\]", "[t]", re.sub(r'" \d+ "/', '" D "/', line)).replace(str(backend.port), "P")
                 for line in proxy.access_lines()]
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
    print("LANE", lane[0]["seconds"], "PY", python[0]["seconds"])
    assert abs(lane[0].pop("seconds") - python[0].pop("seconds")) < 0.7
    assert lane[0] == python[0]
    assert lane[1] == python[1]
