"""TLS read-ahead (issue #20): a listener reads whatever the kernel holds in one read(), and what
it read ahead is served without waiting for epoll, which cannot see it (conf.readahead).

The client here is an `ssl.SSLObject` over memory BIOs, so the test decides which TLS records
share one TCP segment: the handshake's last flight with two requests, or a record cut in two."""

from __future__ import annotations

import socket
import ssl
import threading
import time

import pytest
import trustme
import wsutil

from conf import readahead, tlscontext

REQUEST = b"GET /page HTTP/1.1\r\nHost: localhost\r\n\r\n"
LAST_REQUEST = b"GET /page HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


def _listener_files(tmp_path, ca) -> tuple[str, str]:
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_pem.write_to_path(str(key_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    return str(cert_path), str(key_path)


def _proxy(proxy_factory, http_backend, tmp_path, ca):
    cert, key = _listener_files(tmp_path, ca)
    proxy = proxy_factory([{"path": "/", "to": http_backend().url + "/"}], start=False)
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "tls": {"cert": cert, "key": key}}]
    return proxy.start()


class MemoryClient:
    """A TLS client whose records leave only when `flush` sends them, in one send()."""

    def __init__(self, port: int, ca):
        context = ssl.create_default_context()
        ca.configure_trust(context)
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_3
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")

    def handshake_unsent(self) -> None:
        """Handshake up to the client's last flight, which stays unsent (in `outgoing`)."""
        while True:
            try:
                self.tls.do_handshake()
                return
            except ssl.SSLWantReadError:
                self.flush()
                self._receive()

    def flush(self, upto: int | None = None) -> None:
        data = self.outgoing.read() if upto is None else self.outgoing.read(upto)
        if data:
            self.sock.sendall(data)

    def _receive(self) -> bool:
        data = self.sock.recv(65536)
        if data:
            self.incoming.write(data)
        else:
            self.incoming.write_eof()
        return bool(data)

    def read_until(self, done, timeout: float) -> bytes:
        """What arrives until `done(received)` or `timeout` seconds pass."""
        received = b""
        deadline = time.monotonic() + timeout
        while not done(received) and time.monotonic() < deadline:
            try:
                received += self.tls.read(65536)
            except ssl.SSLWantReadError:
                self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
                try:
                    if not self._receive():
                        break
                except TimeoutError:
                    break
        return received

    def read_all(self) -> bytes:
        """Everything until the proxy closes."""
        received = b""
        while True:
            try:
                chunk = self.tls.read(65536)
            except ssl.SSLWantReadError:
                if not self._receive():
                    return received
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return received
            if not chunk:
                return received
            received += chunk


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / 100.0       # USER_HZ: 100 on Linux


@pytest.mark.timeout(30)
def test_listeners_read_ahead_where_the_check_is_built(tmp_path, ca):
    # CI builds conf._readahead (gcc and the Python headers are there); this is what makes
    # the other tests of this file exercise the read-ahead path rather than the old one.
    assert readahead.why_not() is None
    cert, key = _listener_files(tmp_path, ca)
    context = tlscontext._server_context(cert, key, None, ("http/1.1",))
    assert readahead.reads_ahead(context)
    assert not readahead.reads_ahead(ssl.create_default_context())     # clients to backends: as OpenSSL makes them


@pytest.mark.timeout(30)
def test_requests_that_came_with_the_handshake_are_all_answered(proxy_factory, http_backend, tmp_path, ca):
    proxy = _proxy(proxy_factory, http_backend, tmp_path, ca)
    client = MemoryClient(proxy.port, ca)
    client.handshake_unsent()
    client.tls.write(REQUEST)          # two records after the client's Finished: one TCP send, so
    client.tls.write(LAST_REQUEST)     # one read() of the proxy takes all three
    client.flush()
    answer = client.read_all()
    assert answer.count(b"HTTP/1.1 200") == 2, answer[:300]
    assert answer.endswith(b"hello")
    assert proxy.status()["tls"]["read_ahead"] is True


@pytest.mark.timeout(30)
def test_a_record_cut_in_two_waits_without_spinning(proxy_factory, http_backend, tmp_path, ca):
    proxy = _proxy(proxy_factory, http_backend, tmp_path, ca)
    client = MemoryClient(proxy.port, ca)
    client.handshake_unsent()
    finished = client.outgoing.pending
    client.tls.write(LAST_REQUEST)
    client.flush(finished + 10)        # the Finished and the first 10 bytes of the request's record
    workers = proxy.worker_pids()
    before = _cpu_seconds(workers)
    time.sleep(1.0)
    spent = _cpu_seconds(workers) - before
    client.flush()
    answer = client.read_all()
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"hello")
    # A reader that took SSL_has_pending alone for "readable" would loop on the partial record
    # for the whole second.
    assert spent < 0.3, f"the workers spent {spent:.2f} s of CPU waiting for the rest of a record"


class LateUpgradeEcho:
    """A backend that answers 101 only after `delay` seconds, then echoes every byte: while the
    exchange waits, the proxy reads the client ahead up to its bound and stops."""

    def __init__(self, delay: float):
        self.delay = delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(65536)
            head, rest = head.split(b"\r\n\r\n", 1)
            time.sleep(self.delay)
            conn.sendall(wsutil.switch_response("websocket", head + b"\r\n\r\n") + rest)
            while data := conn.recv(65536):
                conn.sendall(data)

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=5)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("frames", [65, 66])
def test_a_tunnel_starts_with_what_was_read_ahead_before_its_101(proxy_factory, tmp_path, ca, frames):
    # 65 frames: the proxy's last read before the 101 stops at its 64 KiB bound inside a record
    # (the rest waits decrypted); 66: whole records wait undecrypted in OpenSSL's read-ahead
    # buffer.  Neither is seen by epoll, and the client sends nothing more: the tunnel must
    # start with them.
    backend = LateUpgradeEcho(0.3)
    try:
        cert, key = _listener_files(tmp_path, ca)
        proxy = proxy_factory([{"path": "/ws/", "to": f"ws://127.0.0.1:{backend.port}/"}], start=False)
        proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "tls": {"cert": cert, "key": key}}]
        proxy.start()
        client = MemoryClient(proxy.port, ca)
        client.handshake_unsent()
        client.tls.write(wsutil.upgrade_request("/ws/echo", host="localhost"))
        sent = b""
        for number in range(frames):               # one TLS record each, all in one TCP send
            frame = wsutil.frame(b"%04d" % number + b"z" * 1000)
            client.tls.write(frame)
            sent += frame
        client.flush()
        received = client.read_until(lambda data: len(data.partition(b"\r\n\r\n")[2]) >= len(sent), timeout=5)
        head, _, echoed = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head[:100]
        assert echoed == sent, f"{len(echoed)} of {len(sent)} bytes echoed"
    finally:
        backend.close()
