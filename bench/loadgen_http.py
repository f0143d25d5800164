"""HTTP load: ``wrk`` when it is installed, else a built-in keep-alive generator.

Both report the same dict: requests, seconds, requests/s, response bytes, p50/p99 latency,
errors (non-2xx, socket errors, short bodies) and which tool produced it. The built-in one
is plain Python on raw non-blocking sockets and one epoll loop per process, one request in
flight per connection; it reaches a fraction of wrk's rate, so figures from the two are
not comparable with each other (the report names the tool), only within one run.

    python -m bench.loadgen_http --url http://127.0.0.1:8000/small --conns 64 --duration 5 --standalone
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import resource
import select
import socket
import sys
import time
from urllib.parse import urlsplit

from bench.stats import bucket, require_loopback
from bench.tools import which

IN, OUT = select.EPOLLIN, select.EPOLLOUT


# -- wrk --------------------------------------------------------------------------------------------

def wrk_path() -> str | None:
    return which("wrk")


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, "TB": 1024 ** 4}


def _seconds(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def parse_wrk(out: str) -> dict:
    """The numbers of ``wrk --latency`` output."""
    result: dict = {"tool": "wrk", "errors": 0}
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m), ([\d.]+)([KMGT]?B) read", out)
    if m:
        result["requests"] = int(m.group(1))
        result["seconds"] = float(m.group(2)) * _UNITS[m.group(3)]
        result["bytes"] = int(float(m.group(4)) * _SIZE[m.group(5)])
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        result["rps"] = float(m.group(1))
    for q in ("50", "99"):
        m = re.search(rf"^\s+{q}%\s+(\S+)", out, re.M)
        if m:
            result[f"p{q}_s"] = _seconds(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        result["errors"] += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        result["errors"] += sum(int(g) for g in m.groups())
    return result


def wrk_argv(url: str, conns: int, duration: float, threads: int = 1) -> list[str]:
    """wrk's command line (it takes whole seconds only, at least one)."""
    return [wrk_path() or "wrk", f"-t{max(1, min(threads, conns))}", f"-c{conns}",
            f"-d{max(1, round(duration))}s", "--latency", "--timeout", "10s", url]


# -- built-in generator -------------------------------------------------------------------------------

class HttpConn:
    __slots__ = ("sock", "fd", "buf", "t0", "need", "head_done")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.buf = b""
        self.t0 = 0.0
        self.need = -1          # body bytes still to read once the head is parsed
        self.head_done = False


class HttpLoad:
    def __init__(self, url: str, expect: int) -> None:
        parts = urlsplit(url)
        self.addr = (parts.hostname or "127.0.0.1", parts.port or 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.request = f"GET {path} HTTP/1.1\r\nHost: {self.addr[0]}:{self.addr[1]}\r\n\r\n".encode()
        self.expect = expect     # body size every response must have (-1: any)
        self.epoll = select.epoll()
        self.conns: dict[int, HttpConn] = {}
        self.requests = self.errors = self.bytes = 0
        self.hist: dict[int, int] = {}
        self.notes: list[str] = []

    def open_all(self, count: int) -> int:
        for _ in range(count):
            try:
                sock = socket.create_connection(self.addr, timeout=10)
            except OSError as exc:
                self.errors += 1
                self.notes.append(f"connect: {exc}")
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = HttpConn(sock)
            self.conns[conn.fd] = conn
            self.epoll.register(conn.fd, IN)
        return len(self.conns)

    def send(self, conn: HttpConn) -> None:
        conn.buf, conn.need, conn.head_done = b"", -1, False
        conn.t0 = time.perf_counter()
        try:
            conn.sock.send(self.request)  # ~60 bytes into an idle keep-alive socket
        except OSError as exc:
            self.fail(conn, f"send: {exc}")

    def fail(self, conn: HttpConn, why: str) -> None:
        self.errors += 1
        if len(self.notes) < 5:
            self.notes.append(why)
        self.conns.pop(conn.fd, None)
        try:
            self.epoll.unregister(conn.fd)
        except OSError:
            pass
        conn.sock.close()

    def on_readable(self, conn: HttpConn) -> bool:
        """True when the response in flight is complete."""
        try:
            data = conn.sock.recv(262144)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            self.fail(conn, f"recv: {exc}")
            return False
        if not data:
            self.fail(conn, "closed by the server")
            return False
        self.bytes += len(data)
        if not conn.head_done:
            conn.buf += data
            end = conn.buf.find(b"\r\n\r\n")
            if end < 0:
                return False
            head = conn.buf[:end].lower()
            if not head.startswith(b"http/1.1 200"):
                self.fail(conn, head.split(b"\r\n", 1)[0].decode("latin-1"))
                return False
            m = re.search(rb"\r\ncontent-length:\s*(\d+)", head)
            if not m or b"\r\nconnection: close" in head:
                self.fail(conn, "response without Content-Length or with Connection: close")
                return False
            conn.head_done = True
            length = int(m.group(1))
            if 0 <= self.expect != length:
                self.fail(conn, f"body of {length} bytes, expected {self.expect}")
                return False
            conn.need = length - (len(conn.buf) - end - 4)
            conn.buf = b""
        else:
            conn.need -= len(data)
        if conn.need < 0:
            self.fail(conn, "more bytes than the response announced")
            return False
        return conn.need == 0

    def run(self, duration: float) -> float:
        started = time.monotonic()
        deadline = started + duration
        for conn in list(self.conns.values()):
            self.send(conn)
        busy = len(self.conns)
        while busy and self.conns and time.monotonic() < deadline + 10:
            for fd, _ev in self.epoll.poll(0.5):
                conn = self.conns.get(fd)
                if conn is None:
                    continue
                if self.on_readable(conn):
                    b = bucket(time.perf_counter() - conn.t0)
                    self.hist[b] = self.hist.get(b, 0) + 1
                    self.requests += 1
                    if time.monotonic() < deadline:
                        self.send(conn)
                    else:
                        busy -= 1
                elif fd not in self.conns:
                    busy -= 1
        return time.monotonic() - started


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.loadgen_http", description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--expect", type=int, default=-1, help="body bytes every response must have")
    ap.add_argument("--standalone", action="store_true", help="do not wait for 'go' on stdin")
    args = ap.parse_args(argv)
    require_loopback(urlsplit(args.url).hostname or "127.0.0.1")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    load = HttpLoad(args.url, args.expect)
    opened = load.open_all(args.conns)
    sys.stdout.write(json.dumps({"event": "ready", "connected": opened, "failed": args.conns - opened}) + "\n")
    sys.stdout.flush()
    if args.standalone or sys.stdin.readline().strip() == "go":
        elapsed = load.run(args.duration)
        sys.stdout.write(json.dumps({"event": "result", "tool": "builtin", "elapsed": elapsed,
                                     "requests": load.requests, "bytes": load.bytes, "errors": load.errors,
                                     "hist": load.hist, "notes": load.notes}) + "\n")
        sys.stdout.flush()
    for conn in load.conns.values():
        conn.sock.close()


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:
        os._exit(errno.EPIPE)
