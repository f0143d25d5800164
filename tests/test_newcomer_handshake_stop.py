"""A graceful stop that comes in the same loop turn as the end of a Newcomer's handshake, whose
client sent its first request with its Finished (one segment: the request waits in the SSL
object, where epoll does not report it; the Newcomer queued its `kick`).  The stop's
`leave_all` grows the Newcomer and takes it out of the lane before the `kick` runs; the kick
must still have the request read (by what the Newcomer grew into, through worker.client), as
the ServerHandshake path (MPM_NATIVE_LANE_TLS=0) reads it: review 2026-12-06-handshake #2, where
the kick found the lane gone and did nothing (also before that change: 1bb80c6 failed too).

To put the client's last flight and the stop in one epoll batch, the worker is stopped
(SIGSTOP) while the client sends its Finished with its request and the master forwards its
SIGTERM; on SIGCONT the worker sees both.  Whether the client's event comes before the stop
depends on the wake-up: against the defect, one run of this test in three failed (each run
tries three times), so it catches a return of it sometimes, never falsely.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import time

import pytest
import trustme
from proxyproc import Proxy
from rawbackend import RawBackend, respond

pytestmark = pytest.mark.timeout(120)


def _backend(conn) -> None:
    while (head := conn.read_head()) is not None:
        conn.send(respond(200, f"{head.method} {head.target}".encode()))


def _context(ca) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.set_alpn_protocols(["http/1.1"])
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


def _get(port: int, ca, target: str) -> bytes:
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with _context(ca).wrap_socket(raw, server_hostname="localhost") as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
    return got


class _Halfway:
    """A TLS 1.3 client on memory BIOs that has read the server's flight and holds its Finished."""

    def __init__(self, port: int, ca):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = _context(ca).wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        with pytest.raises(ssl.SSLWantReadError):
            self.tls.do_handshake()
        self.sock.sendall(self.outgoing.read())
        while True:
            self.incoming.write(self.sock.recv(65536))
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                continue

    def send_finished_with(self, request: bytes) -> None:
        self.tls.write(request)
        self.sock.sendall(self.outgoing.read())        # Finished + request: one segment

    def answer(self, timeout: float) -> bytes:
        self.sock.settimeout(timeout)
        got = b""
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return got + b"<closed>"
                self.incoming.write(data)
                try:
                    while chunk := self.tls.read(65536):
                        got += chunk
                except ssl.SSLWantReadError:
                    continue
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    return got + b"<closed>"
        except TimeoutError:
            return got + b"<timeout>"
        except OSError as exc:
            return got + f"<{type(exc).__name__}>".encode()
        finally:
            self.sock.close()


def _run(directory, ca, tls_lane: str) -> bytes:
    os.makedirs(directory, exist_ok=True)
    backend = RawBackend(_backend)
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_path, key_path = str(directory / "cert.pem"), str(directory / "key.pem")
    cert.private_key_pem.write_to_path(key_path)
    cert.cert_chain_pems[0].write_to_path(cert_path)
    proxy = Proxy(directory, [{"path": "/", "to": backend.url + "/"}], workers=1,
                  environ={"MPM_NATIVE_LANE_TLS": tls_lane},
                  timeouts={"handshake": 10, "client_header": 4, "keepalive": 10})
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "tls": {"cert": cert_path, "key": key_path}}]
    proxy.start()
    worker = None
    try:
        assert _get(proxy.port, ca, "/warm").endswith(b"GET /warm")
        time.sleep(0.1)
        worker = proxy.worker_pids()[0]
        client = _Halfway(proxy.port, ca)
        time.sleep(0.3)                              # its round waits for the Finished (in epoll)
        os.kill(worker, signal.SIGSTOP)
        client.send_finished_with(b"GET /late HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        time.sleep(0.3)
        proxy.proc.send_signal(signal.SIGTERM)       # the master forwards it to the (stopped) worker
        time.sleep(0.5)
        os.kill(worker, signal.SIGCONT)
        answer = client.answer(8)
        proxy.proc.wait(20)
        return answer
    finally:
        if worker is not None:
            try:
                os.kill(worker, signal.SIGCONT)
            except ProcessLookupError:
                pass
        proxy.stop()
        backend.close()


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


def test_a_stop_in_the_turn_of_the_last_flight_still_answers_the_request(tmp_path, ca):
    python = _run(tmp_path / "python", ca, "0")
    assert python.startswith(b"HTTP/1.1 200 ") and b"GET /late" in python, python     # the reference
    # (The client's event comes before the stop's in most runs, not all: three tries.)
    lanes = [_run(tmp_path / f"lane{n}", ca, "1") for n in range(3)]
    for lane in lanes:
        assert lane.startswith(b"HTTP/1.1 200 ") and b"GET /late" in lane, lanes
