"""Shared harness for the h2-bounds repros: a real mpm (1 worker, h2c listener, optionally
TLS), threaded raw HTTP/1.1 backends (bulk, slow-reading, small), a raw h2 client, and
/proc readings of the worker (RSS, CPU, fds).

Run from a copy of the tree (the script finds the repository root by walking up to worker/):
    /work/main/.venv/bin/python docs/reviews/2026-12-04-h2-bounds/repro/NAME.py
Each script arms a SIGALRM timeout and stops what it started (Proxy.stop by pid; backends
are threads of the script)."""

from __future__ import annotations

import atexit
import os
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = HERE
while not os.path.isdir(os.path.join(ROOT, "worker")):
    ROOT = os.path.dirname(ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)

import h2.config          # noqa: E402
import h2.connection      # noqa: E402
import h2.events          # noqa: E402
import h2.exceptions      # noqa: E402
import h2.settings        # noqa: E402
from proxyproc import Proxy  # noqa: E402

_stoppers = []
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def arm(seconds: int = 90) -> None:
    def fire(*_):
        print(f"TIMEOUT after {seconds}s", flush=True)
        cleanup()
        os._exit(2)
    signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)


def cleanup() -> None:
    while _stoppers:
        try:
            _stoppers.pop()()
        except Exception as exc:      # noqa: BLE001
            print("cleanup:", exc)


atexit.register(cleanup)


def show(label, value="") -> None:
    print(f"{label}: {value}" if value != "" else label, flush=True)


# == /proc ====================================================================================
def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK      # utime + stime


def nfds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# == backends =================================================================================
class Backend:
    """Threaded raw HTTP/1.1 backend on 127.0.0.1:0.  `script(sock, head, buf)` serves one
    request (returns False to close the connection); the default reads heads only."""

    def __init__(self, script, rcvbuf: int | None = None):
        self.script = script
        self.rcvbuf = rcvbuf
        self.lsock = socket.socket()
        if rcvbuf:
            self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(512)
        self.port = self.lsock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.open = 0
        self.lock = threading.Lock()
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()
        _stoppers.append(self.close)

    def close(self) -> None:
        self.stopped = True
        try:
            self.lsock.close()
        except OSError:
            pass
        for c in list(self.conns):
            try:
                c.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self.stopped:
            try:
                sock, _ = self.lsock.accept()
            except OSError:
                return
            self.conns.append(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock) -> None:
        with self.lock:
            self.open += 1
        buf = bytearray()
        try:
            while not self.stopped:
                while b"\r\n\r\n" not in buf:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf += data
                end = buf.index(b"\r\n\r\n") + 4
                head = bytes(buf[:end])
                del buf[:end]
                if self.script(sock, head, buf) is False:
                    return
        except OSError:
            return
        finally:
            with self.lock:
                self.open -= 1
            try:
                sock.close()
            except OSError:
                pass


def bulk(size: int):
    """Answers every request with `size` bytes (Content-Length), written as fast as taken."""
    chunk = b"r" * (1 << 20)

    def script(sock, head, buf):
        if head.startswith(b"GET /small"):
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            return True
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        left = size
        while left:
            n = min(left, len(chunk))
            sock.sendall(chunk[:n])
            left -= n
        return True
    return script


# == the proxy ================================================================================
def start_proxy(routes, tls: bool = False, workers: int = 1, **sections) -> Proxy:
    directory = tempfile.mkdtemp(prefix="h2bounds-")
    proxy = Proxy(directory, routes, workers=workers, **sections)
    listen = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
    if tls:
        import trustme
        from support import free_port
        ca = trustme.CA()
        cert = ca.issue_cert("localhost", "127.0.0.1")
        cert_path, key_path = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
        cert.private_key_pem.write_to_path(key_path)
        cert.cert_chain_pems[0].write_to_path(cert_path)
        proxy.tls_port = free_port()
        proxy.ca = ca
        listen.append({"address": f"127.0.0.1:{proxy.tls_port}", "tls": {"cert": cert_path, "key": key_path}})
    proxy.config["listen"] = listen
    proxy.start()
    _stoppers.append(proxy.stop)
    return proxy


# == clients ==================================================================================
def h2_socket(proxy, tls: bool = False, rcvbuf: int | None = None):
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", proxy.tls_port if tls else proxy.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls:
        ctx = ssl.create_default_context()
        proxy.ca.configure_trust(ctx)
        ctx.set_alpn_protocols(["h2"])
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
        assert sock.selected_alpn_protocol() == "h2"
    return sock


def h2_machine(settings: dict | None = None):
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    if settings:
        c.local_settings = h2.settings.Settings(client=True, initial_values=settings)
    c.initiate_connection()
    return c


def get_headers(path: bytes, authority: bytes = b"a.test", extra=()):
    return [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", authority), (b":path", path), *extra]


def h1_get(port: int, path: bytes = b"/small", timeout: float = 10.0) -> float:
    """One HTTP/1.1 request on a fresh connection: seconds to the whole answer (or -1)."""
    t0 = time.monotonic()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        s.close()
    except OSError:
        return -1.0
    if not data.startswith(b"HTTP/1.1 200"):
        return -1.0
    return time.monotonic() - t0


class Victim(threading.Thread):
    """HTTP/1.1 GETs one after another (fresh connection each) with `gap` between them;
    latencies in ms."""

    def __init__(self, port: int, path: bytes = b"/small", gap: float = 0.02):
        super().__init__(daemon=True)
        self.port, self.path, self.gap = port, path, gap
        self.lat: list[float] = []
        self.failed = 0
        self.stop = False

    def run(self):
        while not self.stop:
            t = h1_get(self.port, self.path)
            if t < 0:
                self.failed += 1
            else:
                self.lat.append(t * 1000)
            time.sleep(self.gap)

    def summary(self) -> str:
        lat = sorted(self.lat)
        if not lat:
            return f"no answers, {self.failed} failed"
        return (f"{len(lat)} requests, median {lat[len(lat) // 2]:.1f} ms, p99 {lat[int(len(lat) * 0.99)]:.1f} ms, "
                f"max {lat[-1]:.1f} ms, failed {self.failed}")


def pump_events(sock, c, seconds: float, ack: bool = True, on_event=None):
    """Read the connection for `seconds`, acknowledging DATA if `ack`; returns events seen."""
    deadline = time.monotonic() + seconds
    seen = []
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(1 << 20)
        except (socket.timeout, TimeoutError, ssl.SSLWantReadError):
            break
        except OSError:
            break
        if not data:
            break
        try:
            events = c.receive_data(data)
        except h2.exceptions.FlowControlError as exc:     # a server that sent past a window we shrank
            print("   (client-side h2:", exc, "- the rest of the read discarded)", flush=True)
            break
        for ev in events:
            seen.append(ev)
            if ack and isinstance(ev, h2.events.DataReceived) and ev.flow_controlled_length:
                c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            if on_event:
                on_event(ev)
        out = c.data_to_send()
        if out:
            sock.sendall(out)
    return seen


def raw_drain(sock, seconds: float) -> int:
    """Read and discard for `seconds` (no h2 parsing); bytes read."""
    deadline = time.monotonic() + seconds
    total = 0
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(1 << 20)
        except (socket.timeout, TimeoutError, ssl.SSLWantReadError):
            break
        except OSError:
            break
        if not data:
            break
        total += len(data)
    return total


# == helpers in their own processes (aux_procs.py) ============================================
import json as _json          # noqa: E402
import subprocess as _sp      # noqa: E402

_AUX = os.path.join(HERE, "aux_procs.py")


def small_backend_process() -> int:
    """A 200 "ok" backend in its own process (stopped at exit); its port."""
    proc = _sp.Popen([sys.executable, _AUX, "small"], stdout=_sp.PIPE, text=True)
    port = int(proc.stdout.readline())

    def stop():
        proc.kill()
        proc.wait()
    _stoppers.append(stop)
    return port


class VictimProcess:
    """HTTP/1.1 GETs /small on fresh connections, from a process of their own."""

    def __init__(self, port: int, seconds: float, gap: float = 0.05):
        self.proc = _sp.Popen([sys.executable, _AUX, "victim", str(port), str(seconds), str(gap)],
                              stdout=_sp.PIPE, text=True)

    def summary(self) -> str:
        out = _json.loads(self.proc.communicate(timeout=60)[0])
        lat = sorted(out["lat"])
        if not lat:
            return f"no answers, {out['failed']} failed"
        return (f"{len(lat)} requests, median {lat[len(lat) // 2]:.1f} ms, p99 {lat[int(len(lat) * 0.99)]:.1f} ms, "
                f"max {lat[-1]:.1f} ms, failed {out['failed']}")


# == nginx, for comparison ====================================================================
class Nginx:
    """nginx in the foreground, 1 worker: `port` an h2c listener (prior knowledge; nginx's plain
    http2 listener speaks only h2), `h1port` HTTP/1.1, both proxying `routes` [(prefix, port)]."""

    def __init__(self, routes, extra_http: str = ""):
        from support import free_port
        self.dir = tempfile.mkdtemp(prefix="h2bounds-nginx-")
        self.port, self.h1port = free_port(), free_port()
        locations = "".join(
            f"location {prefix} {{ proxy_pass http://127.0.0.1:{port}; proxy_http_version 1.1; "
            f"proxy_set_header Connection \"\"; }}\n" for prefix, port in routes)
        conf = f"""daemon off; user root; worker_processes 1; pid {self.dir}/nginx.pid; error_log {self.dir}/error.log;
events {{ worker_connections 4096; }}
http {{ access_log off; client_body_temp_path {self.dir}/body; proxy_temp_path {self.dir}/proxy;
  fastcgi_temp_path {self.dir}/f; uwsgi_temp_path {self.dir}/u; scgi_temp_path {self.dir}/s; {extra_http}
  server {{ listen 127.0.0.1:{self.port} http2; listen 127.0.0.1:{self.h1port}; {locations} }} }}
"""
        with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
            f.write(conf)
        self.proc = _sp.Popen(["nginx", "-p", self.dir, "-c", os.path.join(self.dir, "nginx.conf")])
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.h1port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        _stoppers.append(self.stop)

    def worker_pid(self) -> int:
        for _ in range(100):       # the master forks its worker a moment after it listens
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                pids = f.read().split()
            if pids:
                return int(pids[0])
            time.sleep(0.05)
        raise RuntimeError("nginx started no worker")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except _sp.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
