"""A request body larger than the socket buffers, to a TLS backend (issue #6's backends,
found by a review): the proxy stops reading the client while the backend connection holds
unsent bytes, and must start again once they have gone.

A TLS 1.3 backend sends session tickets: the backend socket is then readable (no application
data) in the same event as it becomes writable.  The event's read found nothing and returned
without deriving the interest again, so the client was never read again: the upload stalled
until the proxy timeout (a 504)."""

from __future__ import annotations

import pytest
import trustme
from proxyproc import Proxy
from rawbackend import respond
from support import cert_files
from test_pool_isolation import TlsServer

BODY = 200 * 1024


class CountingBackend(TlsServer):
    """Reads each request's whole Content-Length body, then answers 200 with its size."""

    def serve(self, conn, index):
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
                         .split(b":")[1])
            while len(buf) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            body, buf = buf[:length], buf[length:]
            conn.sendall(respond(200, b"got %d" % len(body)))


@pytest.mark.timeout(60)
def test_uploads_to_a_tls_backend_go_through_whole(tmp_path):
    backend = CountingBackend(*cert_files(trustme.CA(), tmp_path, "127.0.0.1"))
    proxy = Proxy(tmp_path / "proxy", [{"path": "/", "to": f"https://127.0.0.1:{backend.port}/",
                                        "tls": {"verify": False}}], workers=1, timeouts={"proxy": 5})
    proxy.start()
    try:
        for i in range(10):
            with proxy.connect(10) as sock:
                sock.sendall(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % BODY + b"u" * BODY)
                sock.settimeout(8)
                answer = b""
                while not answer.endswith(b"got %d" % BODY):    # a stalled upload times out here
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    answer += chunk
                assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"got %d" % BODY), (i, answer[:200])
    finally:
        proxy.stop()
        backend.close()
