"""A hand-over to a successor short of file descriptors cuts no tunnel (review 2026-12-03-tunnels #2).

`recv_fds` at the fd limit installs what fits and the kernel drops the rest (MSG_CTRUNC).  The
sender used to close its copies as soon as a record was sent, so those tunnels were cut, and
the short record dropped the whole stream with every record queued behind it.  Now the
successor answers each item (taken, or refused for want of fds) and the sender keeps its
sockets until then: a refused tunnel relays on in the old worker.

Here a worker holds 30 echo tunnels (60 fds) when the master reloads, and its successor starts
under RLIMIT_NOFILE 60 (a `sitecustomize.py` on the master's PYTHONPATH sets it in workers
forked once the test has created a marker file): every tunnel must still echo, the ones the
successor could not take through the old worker, and nothing may be left half-moved.
"""

from __future__ import annotations

import os
import signal
import socket

import pytest
from proxyproc import total_tunnels, wait_log
from rawbackend import RawBackend, echo_after_101
from rawsock import read_head, status_of
from support import wait_for
from wsutil import upgrade_request

LIMIT = 60
TUNNELS = 30
SITECUSTOMIZE = f"""
import os, resource


def _limit():
    if os.path.exists(os.environ["FD_LIMIT_MARK"]):
        resource.setrlimit(resource.RLIMIT_NOFILE, ({LIMIT}, {LIMIT}))


os.register_at_fork(after_in_child=_limit)
"""


def _echoes(sock: socket.socket, i: int) -> bool:
    try:
        sock.sendall(b"ping %d" % i)
        return sock.recv(100) == b"ping %d" % i
    except OSError:
        return False


@pytest.mark.timeout(40)
def test_tunnels_the_successor_cannot_take_stay_with_the_old_worker(proxy_factory, tmp_path):
    (tmp_path / "inject").mkdir()
    (tmp_path / "inject" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    backend = RawBackend(echo_after_101, timeout=30)
    mark = tmp_path / "limit-the-next-workers"
    proxy = proxy_factory([{"path": "/ws/", "to": backend.ws_url + "/ws/"}], workers=1, log={"access": "off"},
                          environ={"PYTHONPATH": str(tmp_path / "inject"), "FD_LIMIT_MARK": str(mark)})
    tunnels = []
    try:
        old = proxy.worker_pids()
        for i in range(TUNNELS):
            sock = proxy.connect(5)
            sock.sendall(upgrade_request(f"/ws/{i}"))
            head, _ = read_head(sock)
            assert status_of(head) == 101, head
            tunnels.append(sock)
        mark.touch()
        os.kill(proxy.proc.pid, signal.SIGHUP)
        proxy.wait_ready(generation=2)
        wait_log(proxy, "hand-over: passed", timeout=10)
        silent = [i for i, sock in enumerate(tunnels) if not _echoes(sock, i)]
        assert not silent, f"{len(silent)} of {len(tunnels)} tunnels cut by the hand-over: " + \
            "; ".join(line.split("] ", 2)[-1] for line in proxy.error_text().splitlines() if "hand-over" in line)
        assert "hand-over: out of file descriptors" in proxy.error_text()      # the case did arise
        assert set(old) & set(proxy.worker_pids(current_only=False)), "the old worker kept none of them"
        wait_for(lambda: total_tunnels(proxy) == TUNNELS, 5, 0.1, "every tunnel counted once, here or there")
    finally:
        for sock in tunnels:
            sock.close()
        proxy.stop()
        backend.close()


LEGACY = """
import os


def _silence():
    if os.path.exists(os.environ["LEGACY_MARK"]):
        from worker import handover
        handover._Inbound._answer = lambda self, what: None     # a receiver of a release before the answers


os.register_at_fork(after_in_child=_silence)
"""


@pytest.mark.timeout(40)
def test_a_successor_that_does_not_answer_still_gets_every_tunnel(proxy_factory, tmp_path):
    """`mpmctl upgrade` to a release before the answers: its workers never say b"H", so after
    HELLO_WAIT the sender lets go of each item once it is sent, as it always did."""
    (tmp_path / "inject").mkdir()
    (tmp_path / "inject" / "sitecustomize.py").write_text(LEGACY)
    backend = RawBackend(echo_after_101, timeout=30)
    mark = tmp_path / "legacy-next-workers"
    proxy = proxy_factory([{"path": "/ws/", "to": backend.ws_url + "/ws/"}], workers=1, log={"access": "off"},
                          environ={"PYTHONPATH": str(tmp_path / "inject"), "LEGACY_MARK": str(mark)})
    tunnels = []
    try:
        old = proxy.worker_pids()
        for i in range(10):
            sock = proxy.connect(5)
            sock.sendall(upgrade_request(f"/ws/{i}"))
            head, _ = read_head(sock)
            assert status_of(head) == 101, head
            tunnels.append(sock)
        mark.touch()
        os.kill(proxy.proc.pid, signal.SIGHUP)
        proxy.wait_ready(generation=2)
        assert "hand-over: passed 10 tunnels" in wait_log(proxy, "hand-over: passed", timeout=10)
        wait_for(lambda: not set(old) & set(proxy.worker_pids(current_only=False)), 5, 0.1, "the old worker to exit")
        assert [i for i, sock in enumerate(tunnels) if not _echoes(sock, i)] == []
    finally:
        for sock in tunnels:
            sock.close()
        proxy.stop()
        backend.close()
