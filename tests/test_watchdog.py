"""The master's watchdog (issue #13): a worker whose heartbeat stops is logged, has its stacks
dumped, is killed and replaced, and its slot serves again; a worker that is merely busy
is never touched."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import pytest
from rawbackend import RawBackend, respond, serve_simple
from rawsock import read_head, status_of
from support import wait_for

WATCHDOG = 2.0


@pytest.fixture
def backend():
    server = RawBackend(lambda conn: serve_simple(conn, lambda head, body: respond(200, b"ok")))
    yield server
    server.close()


def _get(port: int, timeout: float = 2.0) -> int | None:
    """One request on a new connection; its status, or None if it got no answer in time."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            head, _ = read_head(sock)
            return status_of(head)
    except OSError:
        return None


def test_a_stopped_worker_is_replaced_within_watchdog_and_its_slot_serves_again(proxy_factory, backend):
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], mpm={"watchdog": WATCHDOG})
    before = {w["slot"]: w["pid"] for w in proxy.status()["workers"]}
    victim_slot, victim = sorted(before.items())[0]
    os.kill(victim, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        def replaced():
            workers = proxy.status()["workers"]
            return [w for w in workers if w["slot"] == victim_slot and w["pid"] != victim and w["state"] == "ready"]
        wait_for(replaced, WATCHDOG + 3, 0.05, "the stuck worker's replacement")
        elapsed = time.monotonic() - stopped_at
        assert elapsed <= WATCHDOG + 1.0, f"replaced after {elapsed:.2f}s"
        wait_for(lambda: victim not in [w["pid"] for w in proxy.status()["workers"]], 3, 0.05, "the victim reaped")
        # Every new connection is served, those landing in the victim's slot included.
        assert [_get(proxy.port) for _ in range(20)] == [200] * 20
        log = proxy.stderr_text() + proxy.error_text()
        assert f"watchdog: worker pid {victim} (slot {victim_slot}, generation 1)" in log, log[-2000:]
    finally:
        try:
            os.kill(victim, signal.SIGCONT)
        except ProcessLookupError:
            pass


def test_the_stack_dump_signal_writes_python_stacks_to_the_error_log(proxy_factory, backend):
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1)
    pid = proxy.status()["workers"][0]["pid"]
    os.kill(pid, signal.SIGUSR2)
    wait_for(lambda: "most recent call first" in proxy.error_text(), 5, 0.05, "the stack dump")
    text = proxy.error_text()
    assert "worker/loop.py" in text and "in run" in text
    assert _get(proxy.port) == 200, "the dump leaves the worker serving"


def test_a_busy_worker_is_never_killed(proxy_factory, backend):
    """A 16 MiB download read slowly and back-to-back requests for 4 watchdog periods."""
    big = RawBackend(lambda conn: serve_simple(conn, lambda head, body: respond(200, b"b" * (16 << 20))))
    try:
        proxy = proxy_factory([{"path": "/big", "to": big.url + "/big"}, {"path": "/", "to": backend.url + "/"}],
                              mpm={"watchdog": 1.0})
        pids = sorted(w["pid"] for w in proxy.status()["workers"])
        stop = time.monotonic() + 4.0
        answers: list = []

        def hammer():
            while time.monotonic() < stop:
                answers.append(_get(proxy.port))

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for thread in threads:
            thread.start()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
            got = 0
            while got < 16 << 20:
                chunk = sock.recv(256 * 1024)
                assert chunk
                got += len(chunk)
                if time.monotonic() < stop:
                    time.sleep(0.01)
        for thread in threads:
            thread.join()
        assert answers and set(answers) == {200}
        assert sorted(w["pid"] for w in proxy.status()["workers"]) == pids
        assert "watchdog" not in proxy.stderr_text() + proxy.error_text()
    finally:
        big.close()
