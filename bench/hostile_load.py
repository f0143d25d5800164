"""The load generators of bench/hostile.py, one process each (`--role NAME`), one JSON line out.

    legit      clients on their own addresses, each at a steady rate, a new connection every
               N requests; success and latency (connect included when there is one)
    attacker   one address holding many connections and sending requests at a rate over them;
               a connection the proxy closes is opened again a second later
    slowloris  one address holding many connections that never finish their head (a header
               line every 10 s); closed ones are opened again a second later
    pipeline   many requests in one write on one connection, every answer read and counted
    churn      connect/close cycles from a few threads, one in ten with a request
"""

from __future__ import annotations

import argparse
import collections
import errno
import json
import random
import select
import socket
import threading
import time

REQUEST = b"GET /small HTTP/1.1\r\nHost: bench\r\n\r\n"
HEAD_END = b"\r\n\r\n"


def _sources(text: str) -> list[str]:
    """"127.0.0.3-52" -> 127.0.0.3 ... 127.0.0.52; "127.0.0.2" -> itself."""
    if "-" not in text:
        return [text]
    first, last = text.rsplit("-", 1)
    prefix, start = first.rsplit(".", 1)
    return [f"{prefix}.{n}" for n in range(int(start), int(last) + 1)]


def _responses(buf: bytearray) -> list[int]:
    """Take the complete responses out of `buf` (Content-Length framed); their statuses."""
    found = []
    while True:
        end = buf.find(HEAD_END)
        if end < 0:
            return found
        head = bytes(buf[:end]).lower()
        at = head.find(b"content-length:")
        length = int(head[at + 15:head.find(b"\r", at) if head.find(b"\r", at) > 0 else None]) if at >= 0 else 0
        if len(buf) < end + 4 + length:
            return found
        found.append(int(head[9:12]))
        del buf[:end + 4 + length]


def _quantile(values: list[float], q: float) -> float:
    return round(sorted(values)[min(int(q * len(values)), len(values) - 1)] * 1000, 2) if values else 0.0


# == legit ======================================================================================
def legit(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sources", required=True)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--rate", type=float, default=10, help="requests per second per client")
    ap.add_argument("--reconnect-every", type=int, default=10)
    opts = ap.parse_args(argv)
    latencies, failures = [], collections.Counter()
    lock = threading.Lock()
    end = time.monotonic() + opts.seconds

    def client(source: str) -> None:
        sock, done = None, 0
        next_at = time.monotonic() + random.random() / opts.rate
        while next_at < end:
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at += 1 / opts.rate
            started = time.monotonic()
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", opts.port), timeout=5, source_address=(source, 0))
                sock.sendall(REQUEST)
                buf = bytearray()
                statuses = []
                while not statuses:
                    data = sock.recv(65536)
                    if not data:
                        raise ConnectionError("closed")
                    buf += data
                    statuses = _responses(buf)
                took = time.monotonic() - started
                with lock:
                    if statuses[0] == 200:
                        latencies.append(took)
                    else:
                        failures[f"status {statuses[0]}"] += 1
            except OSError as exc:
                with lock:
                    failures[type(exc).__name__] += 1
                if sock is not None:
                    sock.close()
                sock = None
                continue
            done += 1
            if done % opts.reconnect_every == 0:
                sock.close()
                sock = None
        if sock is not None:
            sock.close()
    threads = [threading.Thread(target=client, args=(s,)) for s in _sources(opts.sources)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = len(latencies) + sum(failures.values())
    print(json.dumps({"requests": total, "ok": len(latencies),
                      "ok_pct": round(100 * len(latencies) / total, 2) if total else 0, "failures": dict(failures),
                      "p50_ms": _quantile(latencies, 0.5), "p99_ms": _quantile(latencies, 0.99),
                      "max_ms": _quantile(latencies, 1.0)}), flush=True)
    return 0


# == many connections from one address (attacker, slowloris) =======================================
class Crowd:
    """Non-blocking connections from one source, kept open: opened again a second after the
    proxy closes one, at most `open_rate` new ones a second."""

    def __init__(self, port: int, source: str, count: int, open_rate: float = 2000.0):
        self.port, self.source, self.count, self.open_rate = port, source, count, open_rate
        self.epoll = select.epoll()
        self.socks: dict[int, socket.socket] = {}
        self.bufs: dict[int, bytearray] = {}
        self.connected: set[int] = set()
        self.reopen = collections.deque()            # times at which to open one again
        self.opened = self.closed = 0
        self.budget = 0.0
        self.last = time.monotonic()
        for _ in range(count):
            self.reopen.append(0.0)

    def open_some(self, now: float) -> None:
        self.budget = min(self.budget + (now - self.last) * self.open_rate, self.open_rate)
        self.last = now
        while self.reopen and self.reopen[0] <= now and self.budget >= 1:
            self.reopen.popleft()
            self.budget -= 1
            sock = socket.socket()
            sock.setblocking(False)
            try:
                sock.bind((self.source, 0))
                err = sock.connect_ex(("127.0.0.1", self.port))
            except OSError:
                sock.close()
                self.reopen.append(now + 1.0)
                continue
            if err not in (0, errno.EINPROGRESS):
                sock.close()
                self.reopen.append(now + 1.0)
                continue
            self.socks[sock.fileno()] = sock
            self.bufs[sock.fileno()] = bytearray()
            self.epoll.register(sock.fileno(), select.EPOLLOUT | select.EPOLLIN)
            self.opened += 1

    def lost(self, fd: int, now: float) -> None:
        sock = self.socks.pop(fd)
        self.bufs.pop(fd, None)
        self.connected.discard(fd)
        self.epoll.unregister(fd)
        sock.close()
        self.closed += 1
        self.reopen.append(now + 1.0)

    def poll(self, timeout: float, on_connect, on_data) -> None:
        now = time.monotonic()
        for fd, mask in self.epoll.poll(timeout):
            sock = self.socks.get(fd)
            if sock is None:
                continue
            if fd not in self.connected:
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    self.lost(fd, now)
                    continue
                self.connected.add(fd)
                self.epoll.modify(fd, select.EPOLLIN)
                on_connect(fd, sock)
                if not mask & select.EPOLLIN:
                    continue
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                self.lost(fd, now)
            else:
                on_data(fd, data)


def attacker(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sources", required=True)
    ap.add_argument("--connections", type=int, default=5000)
    ap.add_argument("--rate", type=float, default=2000)
    ap.add_argument("--seconds", type=float, default=30)
    opts = ap.parse_args(argv)
    crowd = Crowd(opts.port, _sources(opts.sources)[0], opts.connections)
    idle: collections.deque = collections.deque()
    statuses: collections.Counter = collections.Counter()
    sent = 0
    tokens = 0.0
    end = time.monotonic() + opts.seconds
    last = time.monotonic()
    peak = 0

    def on_data(fd: int, data: bytes) -> None:
        buf = crowd.bufs[fd]
        buf += data
        for status in _responses(buf):
            statuses[status] += 1
            idle.append(fd)
    while time.monotonic() < end:
        now = time.monotonic()
        crowd.open_some(now)
        tokens = min(tokens + (now - last) * opts.rate, opts.rate)
        last = now
        while tokens >= 1 and idle:
            fd = idle.popleft()
            sock = crowd.socks.get(fd)
            if sock is None:
                continue
            try:
                sock.send(REQUEST)
                sent += 1
                tokens -= 1
            except OSError:
                crowd.lost(fd, now)
        crowd.poll(0.005, lambda fd, sock: idle.append(fd), on_data)
        peak = max(peak, len(crowd.connected))
    print(json.dumps({"sent": sent, "statuses": {str(k): v for k, v in statuses.items()},
                      "connections_opened": crowd.opened, "closed_by_proxy": crowd.closed,
                      "open_at_end": len(crowd.connected), "peak_open": peak}), flush=True)
    return 0


def slowloris(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sources", required=True)
    ap.add_argument("--connections", type=int, default=3000)
    ap.add_argument("--seconds", type=float, default=30)
    opts = ap.parse_args(argv)
    crowd = Crowd(opts.port, _sources(opts.sources)[0], opts.connections, open_rate=1000)
    next_line: dict[int, float] = {}
    answered = collections.Counter()
    end = time.monotonic() + opts.seconds
    peak = 0

    def on_connect(fd: int, sock: socket.socket) -> None:
        try:
            sock.send(b"GET /slow HTTP/1.1\r\nHost: bench\r\n")
        except OSError:
            return
        next_line[fd] = time.monotonic() + 10

    def on_data(fd: int, data: bytes) -> None:
        answered[data[9:12].decode(errors="replace")] += 1
    while time.monotonic() < end:
        now = time.monotonic()
        crowd.open_some(now)
        for fd, due in list(next_line.items()):
            if fd not in crowd.socks:
                del next_line[fd]
            elif due <= now:
                try:
                    crowd.socks[fd].send(b"X-Slow: 1\r\n")
                except OSError:
                    pass
                next_line[fd] = now + 10
        crowd.poll(0.01, on_connect, on_data)
        peak = max(peak, len(crowd.connected))
    print(json.dumps({"connections_opened": crowd.opened, "closed_by_proxy": crowd.closed,
                      "answers": dict(answered), "open_at_end": len(crowd.connected), "peak_open": peak}), flush=True)
    return 0


# == pipeline, churn ===============================================================================
def pipeline(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--requests", type=int, default=20000)
    opts = ap.parse_args(argv)
    sock = socket.create_connection(("127.0.0.1", opts.port), timeout=30)
    started = time.monotonic()
    sender = threading.Thread(target=sock.sendall, args=(REQUEST * opts.requests,))
    sender.start()
    buf, statuses = bytearray(), collections.Counter()
    got = 0
    try:
        while got < opts.requests:
            data = sock.recv(1 << 20)
            if not data:
                break
            buf += data
            found = _responses(buf)
            got += len(found)
            statuses.update(found)
    except OSError as exc:
        statuses[type(exc).__name__] += 1
    sender.join(30)
    sock.close()
    print(json.dumps({"requests": opts.requests, "responses": got, "statuses": {str(k): v for k, v in statuses.items()},
                      "seconds": round(time.monotonic() - started, 2)}), flush=True)
    return 0


def churn(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cycles", type=int, default=50000)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--first-source", type=int, default=60, help="threads connect from 127.0.0.N, N+1, ...")
    opts = ap.parse_args(argv)
    counts = collections.Counter()
    lock = threading.Lock()
    started = time.monotonic()

    def cycles(n: int, source: str) -> None:
        mine = collections.Counter()
        for i in range(n):
            try:
                with socket.create_connection(("127.0.0.1", opts.port), timeout=5, source_address=(source, 0)) as s:
                    if i % 10 == 0:
                        s.sendall(REQUEST)
                        buf = bytearray()
                        while not _responses(buf):
                            data = s.recv(65536)
                            if not data:
                                raise ConnectionError("closed")
                            buf += data
                        mine["requests_ok"] += 1
                mine["cycles"] += 1
            except OSError as exc:
                mine[type(exc).__name__] += 1
        with lock:
            counts.update(mine)
    threads = [threading.Thread(target=cycles, args=(opts.cycles // opts.threads, f"127.0.0.{opts.first_source + t}"))
               for t in range(opts.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({**counts, "seconds": round(time.monotonic() - started, 1)}), flush=True)
    return 0


ROLES = {"legit": legit, "attacker": attacker, "slowloris": slowloris, "pipeline": pipeline, "churn": churn}
