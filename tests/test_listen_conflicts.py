"""A listen address another program holds (review 2026-12-03-control #7): refused at start and
at reload with FILE:LINE, even when that program uses SO_REUSEPORT as mpm itself does (the
kernel then lets a same-user socket bind beside it, and the two split the connections)."""

from __future__ import annotations

import socket

import pytest
from proxyproc import raw_exchange
from support import free_port


@pytest.fixture
def shared_port():
    """A port held by another server that listens with SO_REUSEPORT (a second mpm, an nginx
    with `reuseport`, an envoy)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", free_port()))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


def _line_of(path: str, needle: str) -> int:
    with open(path) as f:
        return next(number for number, line in enumerate(f, 1) if needle in line)


@pytest.mark.timeout(30)
def test_start_on_a_port_another_server_shares_is_refused(proxy_factory, http_backend, shared_port):
    proxy = proxy_factory([{"path": "/", "to": http_backend().url + "/"}], workers=1, start=False)
    proxy.config["listen"] = [f"127.0.0.1:{shared_port}"]
    with pytest.raises(AssertionError, match="master exited"):
        proxy.start()
    said = proxy.error_text() + proxy.stderr_text()
    where = f"{proxy.config_path}:{_line_of(proxy.config_path, str(shared_port))}:"
    assert where in said and f"cannot bind listen 127.0.0.1:{shared_port}: Address already in use" in said, said


@pytest.mark.timeout(30)
def test_reload_adding_a_port_another_server_shares_is_refused(proxy_factory, http_backend, shared_port):
    proxy = proxy_factory([{"path": "/", "to": http_backend().url + "/"}], workers=1)
    before = proxy.worker_pids()
    proxy.config["listen"] = [f"127.0.0.1:{proxy.port}", f"127.0.0.1:{shared_port}"]
    proxy.write_config()
    result = proxy.reload()
    assert result.returncode == 1 and "Address already in use" in result.stderr, result.stdout + result.stderr
    assert proxy.worker_pids() == before
    assert raw_exchange(proxy, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 200")


@pytest.mark.timeout(30)
def test_a_wildcard_and_a_loopback_listener_on_one_port_still_start(proxy_factory, http_backend):
    """The probe is skipped where we hold a socket on the port already: ours would look taken."""
    proxy = proxy_factory([{"path": "/", "to": http_backend().url + "/"}], workers=1, start=False)
    proxy.config["listen"] = [f"0.0.0.0:{proxy.port}", f"127.0.0.1:{proxy.port}"]
    proxy.start()
    assert raw_exchange(proxy, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 200")
