"""Conversations on a new TLS connection (a worker.newcomer.Newcomer when the TLS lane is on)
compared byte for byte, and by access-log line and status counters, with the TLS lane off
(MPM_NATIVE_LANE_TLS=0).  Written by the review of the change (docs/reviews/2026-12-06-newcomer)."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest
from newcomerutil import REQ, read_marked, shapes
from proxyproc import Proxy
from rawbackend import RawBackend
from support import serve_tls

pytestmark = pytest.mark.timeout(300)


def _conversation(proxy, steps) -> bytes:
    sock = proxy.connect(10)
    raw = sock
    got = b""
    try:
        for step in steps:
            if step == "shut":
                socket.socket.shutdown(raw, socket.SHUT_WR)
            elif isinstance(step, float):
                time.sleep(step)
            elif step == "read":
                got += read_marked(sock, 3.0)
            else:
                try:
                    sock.sendall(step)
                except OSError as exc:
                    got += f"<send {type(exc).__name__}>".encode()
    finally:
        sock.close()
    return got


CONVERSATIONS = {
    "plain": [REQ % b"a", "read"],
    "head": [b"HEAD /h HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "read"],
    "more_after": [REQ % b"pause", 0.1, b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n", "read"],
    "more_after_then_shut": [REQ % b"pause", 0.1, b"junk", 0.1, "shut", "read"],
    "half_close": [REQ % b"pause", 0.1, "shut", "read"],
    "half_close_first": [REQ % b"a", "shut", "read"],
    "http10": [b"GET /ten HTTP/1.0\r\nHost: t\r\n\r\n", "read"],
    "hints": [REQ % b"hints", "read"],
    "drop": [REQ % b"drop", "read"],
    "backend_closes": [REQ % b"close-after", "read"],
    "keep_alive_two": [b"GET /k1 HTTP/1.1\r\nHost: t\r\n\r\n", 0.3, REQ % b"k2", "read"],
    "late": [1.3, REQ % b"late", "read"],
    "pieces": [b"GET /p HTTP/1.1\r\n", 0.1, b"Host: t\r\nConnection: close\r\n\r\n", "read"],
    "nothing": ["shut", "read"],
    "parts_more": [REQ % b"parts", 0.2, b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n", "read"],
    "parts_more_shut": [REQ % b"parts", 0.2, b"junk", 0.1, "shut", "read"],
    "parts_shut": [REQ % b"parts", 0.2, "shut", "read"],
    "parts_more_linger": [REQ % b"parts", 0.2, b"junk", 1.0, b"more junk", 0.3, "read"],
}


def _run(directory, tls_lane: str, fmt: str):
    backend = RawBackend(shapes())
    proxy = Proxy(directory, [{"path": "/", "to": backend.url + "/", "timeout": 5}], workers=1,
                  environ={"MPM_NATIVE_LANE_TLS": tls_lane}, log={"format": fmt},
                  timeouts={"connect": 2, "proxy": 10, "client_header": 3, "keepalive": 2, "lingering": 1})
    serve_tls(proxy, directory)
    proxy.start()
    got = {}
    try:
        for name, steps in CONVERSATIONS.items():
            got["warm-" + name] = _conversation(proxy, [REQ % b"warm", "read"])
            time.sleep(0.05)
            got[name] = _conversation(proxy, steps)
        time.sleep(1.5)
        status = proxy.status()
        counters = {k: status["totals"].get(k) for k in ("connections", "requests", "bytes_in", "bytes_out")}
        time.sleep(0.5)
        lines = proxy.access_lines()
        if fmt == "json":
            lines = [json.dumps({k: v for k, v in json.loads(line).items() if k not in ("time", "duration_us")})
                     for line in lines]
        else:
            lines = [re.sub(r"\[[^]]*\]", "[t]", re.sub(r'" \d+ "/', '" D "/', line)) for line in lines]
        lines = [line.replace(str(backend.port), "P") for line in lines]
        errors = [re.sub(r"^\[[^]]*\] \[(\w+)\] \[[^]]*\]", r"\1", line).replace(str(backend.port), "P")
                  for line in proxy.error_text().splitlines() if "Traceback" in line or "[error]" in line]
        return got, sorted(lines), counters, errors
    finally:
        proxy.stop()
        backend.close()


@pytest.mark.parametrize("fmt", ["combined", "json"])
def test_conversations_match_the_python_path(tmp_path, fmt):
    lane = _run(tmp_path / "lane", "1", fmt)
    python = _run(tmp_path / "python", "0", fmt)
    assert {k: v for k, v in lane[0].items() if v != python[0][k]} == {}, python[0]
    assert lane[1] == python[1]
    assert lane[2] == python[2]
    assert lane[3] == python[3]
