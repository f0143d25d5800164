"""Shared fixtures: a real master (`python -m mpm start -c FILE`) on a free port, and
real backends in threads of the test process (raw sockets + h11, the websockets library).
Everything started here is stopped at teardown, and the teardown checks that no
master or worker process is left behind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import h11
import psutil
import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _merge(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


class Proxy:
    """A real mpm master and its workers, driven through `mpmctl`."""

    def __init__(self, directory, routes, workers: int = 2, environ: dict | None = None, **sections):
        self.dir = str(directory)
        self.environ = None if environ is None else {**os.environ, **environ}   # the master's and workers' own
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.config_path = os.path.join(self.dir, "mpm.yaml")
        self.access_log = os.path.join(self.dir, "access.log")
        self.error_log = os.path.join(self.dir, "error.log")
        self.config = _merge({
            "listen": [f"127.0.0.1:{self.port}"],
            "mpm": {"workers": workers, "server_limit": 16, "graceful_timeout": 10},
            "timeouts": {"connect": 2, "proxy": 10, "client_header": 5, "keepalive": 5},
            "control": {"pidfile": "run/mpm.pid", "socket": "run/mpm.sock"},
            "log": {"level": "info", "access": self.access_log, "error": self.error_log},
            "routes": routes,
        }, sections)
        self.proc: subprocess.Popen | None = None
        self.seen_pids: set[int] = set()

    def write_config(self, config: dict | None = None) -> None:
        with open(self.config_path, "w") as f:
            yaml.safe_dump(config or self.config, f, sort_keys=False)

    def mpmctl(self, *args, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mpm", *args, "-c", self.config_path],
                              capture_output=True, text=True, timeout=timeout, cwd=ROOT)

    def start(self) -> Proxy:
        self.write_config()
        self.stdout = open(os.path.join(self.dir, "stdout.log"), "wb")
        self.stderr = open(os.path.join(self.dir, "stderr.log"), "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "mpm", "start", "-c", self.config_path],
                                     stdout=self.stdout, stderr=self.stderr, cwd=ROOT, env=self.environ)
        self.seen_pids.add(self.proc.pid)
        self.wait_ready()
        return self

    def wait_ready(self, generation: int | None = None, timeout: float = 15.0) -> dict:
        workers = self.config["mpm"]["workers"]

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"master exited with {self.proc.returncode}: {self.stderr_text()}")
            status = self.status()
            if status is None:
                return None
            current = [w for w in status["workers"] if w["generation"] == status["generation"]
                       and w["state"] == "ready"]
            if generation is not None and status["generation"] != generation:
                return None
            if len(current) == workers:
                self.seen_pids.update(w["pid"] for w in status["workers"])
                return status
            return None
        return wait_for(ready, timeout, 0.05, "workers ready")

    def status(self) -> dict | None:
        result = self.mpmctl("status", "--json")
        if result.returncode != 0:
            return None
        status = json.loads(result.stdout)
        self.seen_pids.update(w["pid"] for w in status["workers"])
        return status

    def worker_pids(self, current_only: bool = True) -> list[int]:
        status = self.status()
        return [w["pid"] for w in status["workers"]
                if not current_only or w["generation"] == status["generation"]]

    def reload(self) -> subprocess.CompletedProcess:
        return self.mpmctl("reload")

    def url(self, path: str = "/", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def connect(self, timeout: float = 5.0, source: str | None = None) -> socket.socket:
        """`source`: a loopback address to connect from (127.0.0.2, ...): a distinct client."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout,
                                        source_address=(source, 0) if source else None)
        return sock

    def stderr_text(self) -> str:
        with open(os.path.join(self.dir, "stderr.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def error_text(self) -> str:
        try:
            with open(self.error_log, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def access_lines(self) -> list[str]:
        try:
            with open(self.access_log) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self.seen_pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    os.kill(pid, signal.SIGKILL)
                    raise AssertionError(f"process {pid} outlived the master's stop")
            except psutil.NoSuchProcess:
                pass
        self.stdout.close()
        self.stderr.close()
        self.proc = None


@contextlib.contextmanager
def running_proxy(directory, routes, **sections):
    """A real master for a whole module (starting one costs about a second)."""
    proxy = Proxy(directory, routes, **sections)
    try:
        proxy.start()
        yield proxy
    finally:
        proxy.stop()


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


# == backends =================================================================================
class HttpBackend:
    """A threaded HTTP/1.1 server built on h11 (an independent implementation).

    `handler(request, body) -> (status, headers, body)`; every request it receives is
    recorded with the id of the connection it came on."""

    def __init__(self, handler=None):
        self.handler = handler or (lambda req, body: (200, [("Content-Type", "text/plain")], b"hello"))
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.requests: list[dict] = []
        self.connections = 0
        self.raw: list[bytes] = []       # every byte received, per connection
        self.closing = False
        self._threads: list[threading.Thread] = []
        threading.Thread(target=self._accept_loop, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept_loop(self) -> None:
        while not self.closing:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            t = threading.Thread(target=self._serve, args=(conn, self.connections), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn: socket.socket, conn_id: int) -> None:
        h = h11.Connection(h11.SERVER)
        index = len(self.raw)
        self.raw.append(b"")
        conn.settimeout(30)
        try:
            while True:
                event = h.next_event()
                if event is h11.NEED_DATA:
                    data = conn.recv(65536)
                    self.raw[index] += data
                    h.receive_data(data)
                    continue
                if isinstance(event, (h11.ConnectionClosed,)) or event is h11.PAUSED:
                    return
                if isinstance(event, h11.Request):
                    body = b""
                    while True:
                        ev = h.next_event()
                        if ev is h11.NEED_DATA:
                            data = conn.recv(65536)
                            self.raw[index] += data
                            h.receive_data(data)
                        elif isinstance(ev, h11.Data):
                            body += ev.data
                        elif isinstance(ev, h11.EndOfMessage):
                            break
                        else:
                            return
                    record = {"method": event.method.decode(), "target": event.target.decode(),
                              "headers": [(k.decode(), v.decode()) for k, v in event.headers],
                              "body": body, "conn": conn_id}
                    self.requests.append(record)
                    status, headers, payload = self.handler(record, body)
                    if not any(k.lower() == "content-length" for k, _ in headers) and \
                            not any(k.lower() == "transfer-encoding" for k, _ in headers):
                        headers = [*headers, ("Content-Length", str(len(payload)))]
                    conn.sendall(h.send(h11.Response(status_code=status, headers=headers)))
                    if payload:
                        conn.sendall(h.send(h11.Data(data=payload)))
                    conn.sendall(h.send(h11.EndOfMessage()))
                    if h.our_state is h11.MUST_CLOSE:
                        return
                    h.start_next_cycle()
        except (OSError, h11.ProtocolError):
            return
        finally:
            conn.close()

    def header(self, index: int, name: str) -> list[str]:
        return [v for k, v in self.requests[index]["headers"] if k.lower() == name.lower()]

    def close(self) -> None:
        self.closing = True
        self.sock.close()


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
    from wsutil import BenchBackend
    backend = BenchBackend(str(tmp_path))
    yield backend
    backend.close()


class WebSocketBackend:
    """The `websockets` library's server in a thread: echo by default."""

    def __init__(self, handler=None, **serve_kwargs):
        from websockets.asyncio.server import serve
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.handler = handler or self.echo
        self.requests: list = []
        ready = threading.Event()

        async def main():
            async def record(connection):
                self.requests.append(connection.request)
                await self.handler(connection)
            self.stop_event = asyncio.Event()
            async with serve(record, "127.0.0.1", self.port, max_size=None, **serve_kwargs):
                ready.set()
                await self.stop_event.wait()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(main(),), daemon=True)
        self.thread.start()
        assert ready.wait(10)

    @staticmethod
    async def echo(connection):
        async for message in connection:
            await connection.send(message)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(10)


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


def raw_exchange(proxy: Proxy, data: bytes, timeout: float = 5.0, until_close: bool = True) -> bytes:
    """Send raw bytes, return everything the proxy answers until it closes (or times out)."""
    with proxy.connect(timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if not until_close:
                    break
        except (TimeoutError, ConnectionResetError):
            pass
        return b"".join(chunks)
