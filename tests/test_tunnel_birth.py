"""A tunnel whose first send fails is counted open, then closed, once (review 2026-12-03-tunnels #1).

`Tunnel.__init__` sends the bytes read past either head (the 101 to the client; an adopted
tunnel's leftovers).  A peer gone by then used to close the tunnel inside its constructor,
before its owner counted it: a new tunnel stayed in the worker's tunnel set for ever, and an
adopted one released its client's holds before they were counted here, so the client's count
went to -1.

The windows are widened without changing the product: a `sitecustomize.py` on the workers'
PYTHONPATH holds the worker 0.5 s before it turns a 101 for /ws/birth into a tunnel, and a
successor 1 s before it adopts a tunnel, while the test resets the client.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import time

import pytest
from proxyproc import wait_log
from rawbackend import RawBackend
from rawsock import read_head, status_of
from wsutil import switch_response, upgrade_request

SITECUSTOMIZE = '''
import os


def _arm():
    import time
    from worker import upgrade
    from worker.handover import _Inbound

    open_tunnel = upgrade.open_tunnel
    adopt = _Inbound._adopt_tunnel

    def slow_birth(ex, head101, rest):
        if ex.head.target == b"/ws/birth":
            time.sleep(0.5)         # the client resets meanwhile
        return open_tunnel(ex, head101, rest)

    def slow_adoption(self, *args):
        time.sleep(1.0)             # the record waits at the successor; its client resets meanwhile
        return adopt(self, *args)

    upgrade.open_tunnel = slow_birth              # worker.response calls it through the module
    _Inbound._adopt_tunnel = slow_adoption


os.register_at_fork(after_in_child=_arm)
'''


def _behaviour(conn) -> None:
    """101; /ws/push then sends 4 MiB the client does not read (the proxy keeps a leftover for
    it); then echo until the end."""
    head = conn.read_head()
    conn.send(switch_response("websocket", head.raw))
    try:
        if head.target == "/ws/push":
            conn.sock.sendall(b"p" * (4 << 20))
        while data := conn.sock.recv(65536):
            conn.sock.sendall(data)
    except OSError:
        pass


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _tunnel(proxy, path: str, source: str, rcvbuf: int = 0) -> tuple[socket.socket, int]:
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((source, 0))
    sock.settimeout(5)
    sock.connect(("127.0.0.1", proxy.port))
    sock.sendall(upgrade_request(path))
    head, _ = read_head(sock)
    return sock, status_of(head)


@pytest.mark.timeout(40)
def test_tunnels_whose_first_send_fails_leave_nothing_behind(proxy_factory, tmp_path):
    (tmp_path / "inject").mkdir()
    (tmp_path / "inject" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    backend = RawBackend(_behaviour, timeout=20)
    proxy = proxy_factory([{"path": "/ws/", "to": backend.ws_url + "/ws/"}], workers=1,
                          environ={"PYTHONPATH": str(tmp_path / "inject")},
                          limits={"per_client": {"tunnels": 1}})
    try:
        # 1. Born dead: the client resets while the worker holds its 101.
        doomed = socket.create_connection(("127.0.0.1", proxy.port), timeout=5, source_address=("127.0.0.2", 0))
        doomed.sendall(upgrade_request("/ws/birth"))
        time.sleep(0.25)
        _reset(doomed)
        # 2. Adopted dead: a tunnel with a leftover for its client, which resets while the
        # tunnel waits at the successor.
        pushed, status = _tunnel(proxy, "/ws/push", "127.0.0.3", rcvbuf=4096)
        assert status == 101
        time.sleep(0.5)
        os.kill(proxy.proc.pid, signal.SIGHUP)
        log = wait_log(proxy, "hand-over: passed", timeout=10)
        _reset(pushed)
        # The stopping worker names what it keeps: nothing (the born-dead tunnel closed, the other moved).
        stay = re.findall(r"hand-over: passed (\d+) tunnels and connections to the successor; (\d+) tunnels", log)
        assert stay == [("1", "0")], f"the stopping worker still held a closed tunnel: {stay}"
        wait_log(proxy, "hand-over: adopted 1 tunnels", timeout=10)
        time.sleep(0.3)             # the successor closes the adopted tunnel on its next turn
        # The adopted tunnel's hold was counted once and released once: the limit still holds.
        first, first_status = _tunnel(proxy, "/ws/again", "127.0.0.3")
        second, second_status = _tunnel(proxy, "/ws/again", "127.0.0.3")
        first.close()
        second.close()
        assert (first_status, second_status) == (101, 503), \
            "per_client.tunnels: 1 let the client whose adopted tunnel died open a second tunnel"
        lines = [line for line in proxy.access_lines() if "/ws/birth" in line or "/ws/push" in line]
        assert len(lines) == 2 and all('end="send failed' in line for line in lines), lines
    finally:
        proxy.stop()
        backend.close()
