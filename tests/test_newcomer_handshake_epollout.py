"""Review 2026-12-06-handshake: a handshake whose server flight does not fit in the socket (a
certificate chain of ~80 KB, a client with a small receive buffer that reads late) has to wait
for EPOLLOUT in the lane's C (`handshake_wants`), then for EPOLLIN; it ends, its request is
answered, and the worker does not spin meanwhile: the same as on the ServerHandshake path."""

from __future__ import annotations

import os
import socket
import ssl
import time

import psutil
import pytest
import trustme
from newcomerutil import echo, tls_proxy
from rawbackend import RawBackend
from support import wait_for

pytestmark = pytest.mark.timeout(120)


def _slow_reader(port: int, ca, target: str) -> bytes:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 88)     # a small MSS: the server's send buffer is small too
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    try:
        with pytest.raises(ssl.SSLWantReadError):
            tls.do_handshake()
        sock.sendall(outgoing.read())
        time.sleep(1.0)                  # the server's flight waits on a full socket (EPOLLOUT)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                data = sock.recv(2048)
                assert data, "closed during the handshake"
                incoming.write(data)
                time.sleep(0.005)
        tls.write(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        sock.sendall(outgoing.read())
        got = b""
        while True:
            try:
                chunk = tls.read(65536)
                if not chunk:
                    return got
                got += chunk
            except ssl.SSLWantReadError:
                data = sock.recv(65536)
                if not data:
                    return got
                incoming.write(data)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return got
    finally:
        sock.close()


def _run(directory, ca, tls_lane: str) -> dict:
    os.makedirs(directory, exist_ok=True)
    backend = RawBackend(echo)
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_path, key_path = str(directory / "cert.pem"), str(directory / "key.pem")
    cert.private_key_pem.write_to_path(key_path)
    # The leaf, then 75 other CAs' certificates: a Certificate message of ~90 KB (a client takes 100).
    with open(cert_path, "wb") as f:
        f.write(cert.cert_chain_pems[0].bytes() + b"".join(trustme.CA().cert_pem.bytes() for _ in range(75)))
    proxy = tls_proxy(directory, ca, backend, (cert_path, key_path), environ={"MPM_NATIVE_LANE_TLS": tls_lane},
                      timeouts={"handshake": 20, "client_header": 5, "keepalive": 30})
    try:
        got = {"warm": _slow_reader(proxy.port, ca, "/warm").split(b"\r\n")[0]}
        time.sleep(0.1)
        worker = psutil.Process(proxy.worker_pids()[0])
        spent = sum(worker.cpu_times()[:2])
        answer = _slow_reader(proxy.port, ca, "/late")
        got["cpu < 0.5 s"] = sum(worker.cpu_times()[:2]) - spent < 0.5
        got["answer"] = answer.split(b"\r\n")[0] + b" " + answer[-9:]
        wait_for(lambda: proxy.status()["totals"]["connections"] == 0, 5, 0.05, "the connection closed")
        status = proxy.status()
        got["counts"] = {key: status["workers"][0][key] for key in ("tls_full", "tls_resumed", "tls_failures")}
        got["connections"] = status["totals"]["connections"]
        return got
    finally:
        proxy.stop()
        backend.close()



def test_a_handshake_that_waits_to_write_matches_the_serverhandshake_path(tmp_path, ca):
    python = _run(tmp_path / "python", ca, "0")
    assert python["answer"].endswith(b"GET /late") and python["cpu < 0.5 s"], python
    lane = _run(tmp_path / "lane", ca, "1")
    assert lane == python
