"""Shared harness for the hostile-client repros: a real mpm proxy (tests/proxyproc.Proxy, stopped
by pid at exit, which also checks that no worker outlived it), scripted backends as threads of
this process, and raw-socket clients from distinct loopback sources (127.0.0.N)."""
import atexit
import os
import socket
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)
os.chdir(ROOT)
from proxyproc import Proxy  # noqa: E402

import worker  # noqa: E402

assert worker.__file__.startswith(ROOT), worker.__file__


class Backend:
    """HTTP/1.1 backend: GET /slow* waits `hold` seconds before its 200; a WebSocket-ish
    upgrade gets 101 and an echo; everything else a small 200 at once."""

    def __init__(self, hold=30.0):
        self.hold = hold
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(512)
        self.port = self.ls.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.heads = []
        self.closed = False
        threading.Thread(target=self._run, daemon=True).start()
        atexit.register(self.close)

    def _run(self):
        while not self.closed:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(s,), daemon=True).start()

    def _one(self, s):
        s.settimeout(self.hold + 5)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = s.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                self.heads.append(head)
                if b"upgrade: " in head.lower():
                    s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
                    while True:
                        d = s.recv(65536)
                        if not d:
                            return
                        s.sendall(d)
                if head.split(b" ")[1].startswith(b"/slow"):
                    time.sleep(self.hold)
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except OSError:
            pass
        finally:
            s.close()

    def close(self):
        self.closed = True
        try:
            self.ls.close()
        except OSError:
            pass


def start_proxy(routes, listen=None, workers=1, **sections):
    p = Proxy(tempfile.mkdtemp(prefix="mpmhostile-"), routes, workers=workers, **sections)
    if listen is not None:
        p.config["listen"] = listen(p.port)
    p.start()
    atexit.register(p.stop)
    return p


def connect(port, source="127.0.0.1", timeout=5.0):
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def status_of(s, timeout=5.0):
    """The status code of the response on `s`, or 'closed' / 'reset' / 'timeout'."""
    s.settimeout(timeout)
    buf = b""
    try:
        while b"\r\n" not in buf:
            d = s.recv(65536)
            if not d:
                return "closed"
            buf += d
    except ConnectionResetError:
        return "reset"
    except TimeoutError:
        return "timeout"
    return int(buf.split(b" ", 2)[1])


def get(port, path="/", source="127.0.0.1", headers=b""):
    try:
        s = connect(port, source)
    except ConnectionResetError:
        return "reset"
    with s:
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + headers + b"\r\n")
        return status_of(s)


def upgrade(port, path="/ws/", source="127.0.0.1", extra=b""):
    """(socket, status) of a WebSocket upgrade; the socket stays open (a tunnel on 101)."""
    s = connect(port, source)
    s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
              b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" + extra + b"\r\n")
    s.settimeout(5)
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            return s, "closed"
        buf += d
    return s, int(buf.split(b" ", 2)[1])


class Victim:
    """A keep-alive client on its own source address: GET /v every `interval` s, latencies kept."""

    def __init__(self, port, source="127.0.0.250", interval=0.01, preface=b""):
        self.lat, self.errors, self.stop_flag = [], [], False
        self.s = connect(port, source, timeout=10)
        if preface:
            self.s.sendall(preface)
        self.interval = interval
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop_flag:
            t0 = time.perf_counter()
            try:
                self.s.sendall(b"GET /v HTTP/1.1\r\nHost: v\r\n\r\n")
                buf = b""
                while not buf.endswith(b"ok"):
                    d = self.s.recv(65536)
                    if not d:
                        self.errors.append("closed")
                        return
                    buf += d
            except OSError as exc:
                self.errors.append(repr(exc))
                return
            self.lat.append(time.perf_counter() - t0)
            time.sleep(self.interval)

    def stop(self):
        self.stop_flag = True
        self.t.join(5)
        self.s.close()
        lat = sorted(self.lat)
        if not lat:
            return "no answers " + repr(self.errors)
        pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
        return f"{len(lat)} answers, p50 {pick(0.5):.2f} ms, p99 {pick(0.99):.2f} ms, max {lat[-1] * 1000:.2f} ms" + \
            (f", errors {self.errors}" if self.errors else "")


def ask(s, request, timeout=5.0):
    """Send one request on a keep-alive socket and read its whole response (Content-Length);
    its status, or 'closed'."""
    s.settimeout(timeout)
    s.sendall(request)
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            return "closed"
        buf += d
    head, body = buf.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        d = s.recv(65536)
        if not d:
            break
        body += d
    return int(head.split(b" ", 2)[1])
