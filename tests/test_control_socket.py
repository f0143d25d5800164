"""The control socket against clients that misbehave (review 2026-12-03-control): one that
never reads its answer, never sends, or opens connections until the master runs out of
descriptors costs the master's loop nothing; mpmctl still gets its answer at once."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest
from proxyproc import Proxy


def _ask(path: str, payload: dict, timeout: float = 30.0) -> tuple[dict, float]:
    """(answer, seconds): a blocking connect, so a full backlog is waited for, not refused."""
    started = time.monotonic()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
        sock.settimeout(timeout)
        sock.sendall(json.dumps(payload).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    return json.loads(data), time.monotonic() - started


@pytest.fixture(scope="module")
def big_answers(tmp_path_factory):
    """A master whose `balancer` answer (1,000 members, ~330 KB) overflows a Unix socket's buffer."""
    members = [{"url": f"http://127.0.0.1:{20000 + i}", "route": f"r{i}"} for i in range(1000)]
    proxy = Proxy(tmp_path_factory.mktemp("control"), [{"path": "/", "to": "balancer://big/"}], workers=1,
                  balancers={"big": {"members": members}})
    proxy.start()
    yield proxy, os.path.join(proxy.dir, "run", "mpm.sock")
    proxy.stop()


@pytest.mark.timeout(60)
def test_clients_that_never_read_their_answer_do_not_hold_the_master(big_answers):
    """Each answer was sent with a blocking sendall and a 1 s timeout in the master's loop:
    10 such clients held a status request ~10 s (and mpmctl, finding the backlog full, none)."""
    proxy, path = big_answers
    answer, _ = _ask(path, {"cmd": "balancer"})
    assert len(answer["balancers"][0]["members"]) == 1000
    stuck = []
    for _ in range(10):
        sock = socket.socket(socket.AF_UNIX)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(path)
        sock.sendall(b'{"cmd": "balancer"}\n')
        stuck.append(sock)
    try:
        time.sleep(0.1)
        answer, took = _ask(path, {"cmd": "status"})
        assert answer["master_pid"] == proxy.proc.pid
        assert took < 2.5, f"status took {took:.1f} s behind clients that do not read"
        assert proxy.mpmctl("status", timeout=10).returncode == 0
    finally:
        for sock in stuck:
            sock.close()
