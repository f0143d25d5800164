"""Fixtures only: each one starts real things (a proxy master, backends, a DNS server) for
one test and stops them at teardown.  The classes they are made of live in plain modules
that tests import: support.py, proxyproc.py, backends.py, rawbackend.py."""

from __future__ import annotations

import pytest
import trustme
from backends import BenchBackend, HttpBackend, WebSocketBackend
from balancer_util import Member
from proxyproc import Proxy


@pytest.fixture
def proxy_factory(tmp_path):
    proxies: list[Proxy] = []

    def make(routes, name: str = "proxy", start: bool = True, **kwargs) -> Proxy:
        proxy = Proxy(tmp_path / f"{name}{len(proxies)}", routes, **kwargs)
        proxies.append(proxy)
        return proxy.start() if start else proxy
    yield make
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def http_backend():
    backends: list[HttpBackend] = []

    def make(handler=None) -> HttpBackend:
        backend = HttpBackend(handler)
        backends.append(backend)
        return backend
    yield make
    for backend in backends:
        backend.close()


@pytest.fixture
def bench_backend(tmp_path):
    """The bundled backend (`python -m bench.backends`, raw epoll, its own process): the demo
    page at /, a streaming WebSocket echo at /ws, /small and /64k."""
    backend = BenchBackend(str(tmp_path))
    yield backend
    backend.close()


@pytest.fixture
def ws_backend():
    backends: list[WebSocketBackend] = []

    def make(handler=None, **kwargs) -> WebSocketBackend:
        backend = WebSocketBackend(handler, **kwargs)
        backends.append(backend)
        return backend
    yield make
    for backend in backends:
        backend.close()


@pytest.fixture
def dns_server(tmp_path):
    """Debian's dnsmasq on a free loopback port (balancer_util.DnsServer), stopped by pid at teardown."""
    from balancer_util import DnsServer
    server = DnsServer(tmp_path / "dns")
    yield server
    server.close()


@pytest.fixture
def fleet():
    """Five members on 127.0.0.2 .. 127.0.0.6, all on one port, named m2 .. m6."""
    first = Member("m2", host="127.0.0.2")
    members = [first] + [Member(f"m{i}", port=first.port, host=f"127.0.0.{i}") for i in range(3, 7)]
    yield members
    for member in members:
        member.close()


@pytest.fixture
def member():
    """Members (balancer_util.Member) made by the test, closed at teardown."""
    made: list[Member] = []

    def make(name: str, host: str = "127.0.0.1", port: int = 0) -> Member:
        made.append(Member(name, port=port, host=host))
        return made[-1]
    yield make
    for m in made:
        m.close()


@pytest.fixture(scope="module")
def ca():
    """A certificate authority for a module's TLS listeners and the clients that trust them
    (a module may define its own)."""
    return trustme.CA()
