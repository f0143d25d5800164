"""systemd's watchdog (review 2026-12-03-operating #4): with `WatchdogSec=` systemd passes
WATCHDOG_USEC (and WATCHDOG_PID) and kills a service that does not send WATCHDOG=1 that often.
The master feeds it from its loop while it runs, stops once it stops, and feeds nothing for a
WATCHDOG_PID that is some other process's.

A real master with NOTIFY_SOCKET on a datagram socket the test reads, as systemd's."""

from __future__ import annotations

import socket
import time

import pytest
from rawbackend import RawBackend
from support import wait_for


@pytest.fixture
def notify(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(0.05)
    yield sock
    sock.close()


@pytest.fixture
def raw_backend():
    backend = RawBackend()
    yield backend
    backend.close()


def _messages(sock: socket.socket, seconds: float) -> list[tuple[float, list[str]]]:
    """(arrival time, fields) of every datagram in the next `seconds`."""
    found, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            found.append((time.monotonic(), sock.recv(4096).decode().split("\n")))
        except TimeoutError:
            pass
    return found


def _start(proxy_factory, raw_backend, notify, **environ):
    return proxy_factory([{"path": "/", "to": raw_backend.url + "/"}], workers=1,
                         environ={"NOTIFY_SOCKET": notify.getsockname(), **environ})


def test_watchdog_is_fed_while_the_master_runs_and_not_once_it_stops(proxy_factory, raw_backend, notify):
    proxy = _start(proxy_factory, raw_backend, notify, WATCHDOG_USEC="600000")    # WatchdogSec=0.6s
    feeds = [at for at, fields in _messages(notify, 2.0) if "WATCHDOG=1" in fields]
    # (parent: none at all)
    assert len(feeds) >= 4, f"{len(feeds)} WATCHDOG=1 in 2 s with WatchdogSec=0.6s"
    gaps = [b - a for a, b in zip(feeds, feeds[1:], strict=False)]
    assert max(gaps) < 0.6, f"gaps between two WATCHDOG=1: {gaps}"
    proxy.proc.send_signal(15)
    after = _messages(notify, 1.0)
    stopping = next(i for i, (_, fields) in enumerate(after) if "STOPPING=1" in fields)
    assert not any("WATCHDOG=1" in fields for _, fields in after[stopping + 1:])
    wait_for(lambda: proxy.proc.poll() is not None, 10, 0.05, "the master to exit")


def test_no_watchdog_for_another_process(proxy_factory, raw_backend, notify):
    """WATCHDOG_PID names some other process (pid 1 here): the variables were not meant for us."""
    _start(proxy_factory, raw_backend, notify, WATCHDOG_USEC="600000", WATCHDOG_PID="1")
    fields = [field for _, message in _messages(notify, 1.0) for field in message]
    assert "WATCHDOG=1" not in fields


def test_stopping_asks_systemd_for_the_time_a_graceful_stop_takes(proxy_factory, raw_backend, notify):
    """STOPPING=1 comes with EXTEND_TIMEOUT_USEC covering graceful_timeout (10 s here) and the
    5 s before SIGKILL: a unit whose TimeoutStopSec= is shorter does not cut the drain."""
    proxy = _start(proxy_factory, raw_backend, notify)
    _messages(notify, 0.5)                                # READY=1 and the first STATUS= lines
    proxy.proc.send_signal(15)
    stopping = next(fields for _, fields in _messages(notify, 1.0) if "STOPPING=1" in fields)
    extend = [int(f.split("=", 1)[1]) for f in stopping if f.startswith("EXTEND_TIMEOUT_USEC=")]
    assert extend and extend[0] >= 15_000_000, stopping     # (parent: ['STOPPING=1', 'STATUS=stopping'])
    wait_for(lambda: proxy.proc.poll() is not None, 15, 0.05, "the master to exit")
