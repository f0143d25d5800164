"""Shared harness for the repros: a real mpm master (tests/proxyproc.Proxy), an h11 backend
(tests/backends.HttpBackend), raw-socket clients.  Everything started is stopped at exit."""
import atexit
import os
import socket
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)
from backends import HttpBackend  # noqa: E402
from proxyproc import Proxy  # noqa: E402


def slow_handler(request, body):
    """/slow/S sleeps S seconds; /big/N answers N bytes; anything else: 'hello'."""
    parts = request["target"].split("/")
    if len(parts) > 2 and parts[1] == "slow":
        time.sleep(float(parts[2]))
    if len(parts) > 2 and parts[1] == "big":
        return 200, [("Content-Type", "application/octet-stream")], b"x" * int(parts[2])
    return 200, [("Content-Type", "text/plain")], b"hello"


def backend(handler=slow_handler):
    b = HttpBackend(handler)
    atexit.register(b.close)
    return b


def start_proxy(routes, workers=1, start=True, **sections):
    p = Proxy(tempfile.mkdtemp(prefix="mpm-op-"), routes, workers=workers, **sections)
    if start:
        p.start()
    atexit.register(p.stop)
    return p


def request(port, target="/", extra=b"", timeout=5.0):
    """One Connection: close request; (status or None, seconds)."""
    t = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s\r\n" % (target.encode(), extra))
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return (int(data[9:12]) if data.startswith(b"HTTP/1.1 ") else None), time.monotonic() - t
    except OSError:
        return None, time.monotonic() - t


class FastBackend:
    """Keep-alive, one write per response ("hello"): for measuring the proxy, not the backend."""

    RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"

    def __init__(self):
        import threading
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()
        atexit.register(self.sock.close)

    def _accept(self):
        import threading
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                buf = buf[buf.index(b"\r\n\r\n") + 4:]
                conn.sendall(self.RESPONSE)
        except OSError:
            return
        finally:
            conn.close()
