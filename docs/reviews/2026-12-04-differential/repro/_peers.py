"""Differential harness (review 2026-12-04-differential): one recording raw backend, and mpm-proxy, nginx and HAProxy in front of it.

Everything runs on 127.0.0.1 with ports the OS hands out; every process started is stopped by pid."""
from __future__ import annotations

import os, re, signal, socket, subprocess, sys, tempfile, threading, time

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.abspath(os.path.join(_HERE, "..", "..", "..", ".."))     # docs/reviews/<name>/repro -> repo
# The tree mpm runs from: $MPM_TREE, else the repository this script sits in, else the review's frozen copy.
MPM_TREE = os.environ.get("MPM_TREE") or (_REPO if os.path.isdir(os.path.join(_REPO, "mpm")) else "/tmp/rev-diff")
PYTHON = os.environ.get("MPM_PYTHON", "/work/main/.venv/bin/python")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_answer(head: bytes, body: bytes, n: int) -> bytes:
    payload = b"backend-req-%d" % n
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload)


class Backend:
    """Records every byte received per connection; answers each request it can frame (leniently:
    first Content-Length, or chunked if any Transfer-Encoding mentions chunked) with `answer`.
    `answer(head, body, n) -> bytes`, or a callable returning None to answer nothing."""

    def __init__(self, answer=default_answer):
        self.answer = answer
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.log: list[tuple[float, int, bytes]] = []      # (time, conn id, bytes)
        self.heads: list[tuple[float, int, bytes]] = []    # request heads it parsed
        self.nconn = 0
        self.nreq = 0
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closing:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.nconn += 1
                cid = self.nconn
            threading.Thread(target=self._serve, args=(c, cid), daemon=True).start()

    def _serve(self, c, cid):
        buf = b""
        c.settimeout(60)
        def more():
            nonlocal buf
            d = c.recv(65536)
            if not d:
                raise EOFError
            with self.lock:
                self.log.append((time.monotonic(), cid, d))
            buf += d
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    more()
                i = buf.index(b"\r\n\r\n")
                head, buf = buf[:i + 4], buf[i + 4:]
                with self.lock:
                    self.nreq += 1
                    n = self.nreq
                    self.heads.append((time.monotonic(), cid, head))
                cl, chunked = None, False
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    k = k.strip().lower()
                    if k == b"content-length" and cl is None:
                        try: cl = int(v.strip())
                        except ValueError: cl = 0
                    if k == b"transfer-encoding" and b"chunked" in v.lower():
                        chunked = True
                body = b""
                if chunked:
                    while True:
                        while b"\r\n" not in buf:
                            more()
                        j = buf.index(b"\r\n")
                        size = int(buf[:j].split(b";")[0].strip() or b"0", 16)
                        buf = buf[j + 2:]
                        if size == 0:
                            while b"\r\n" not in buf:
                                more()
                            # trailers until empty line
                            while not buf.startswith(b"\r\n"):
                                while b"\r\n" not in buf:
                                    more()
                                buf = buf[buf.index(b"\r\n") + 2:]
                                while b"\r\n" not in buf:
                                    more()
                            buf = buf[2:]
                            break
                        while len(buf) < size + 2:
                            more()
                        body += buf[:size]
                        buf = buf[size + 2:]
                elif cl:
                    while len(buf) < cl:
                        more()
                    body, buf = buf[:cl], buf[cl:]
                out = self.answer(head, body, n)
                if out is None:
                    continue
                if isinstance(out, tuple):       # (bytes, close_after)
                    c.sendall(out[0])
                    if out[1]:
                        c.close(); return
                else:
                    c.sendall(out)
        except (EOFError, OSError, ValueError):
            pass
        finally:
            try: c.close()
            except OSError: pass

    def since(self, t0: float) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        with self.lock:
            for t, cid, d in self.log:
                if t >= t0:
                    out[cid] = out.get(cid, b"") + d
        return out

    def heads_since(self, t0):
        with self.lock:
            return [h for t, cid, h in self.heads if t >= t0]

    def close(self):
        self.closing = True
        self.sock.close()


def _wait_port(port, proc, what, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} never listened")


class Peer:
    name = "?"
    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL); self.proc.wait()


class Mpm(Peer):
    name = "mpm"
    def __init__(self, backend_port, workdir, routes=None, extra=""):
        self.port = free_port()
        self.dir = os.path.join(workdir, "mpm"); os.makedirs(self.dir, exist_ok=True)
        routes = routes or f'  - {{path: /, to: "http://127.0.0.1:{backend_port}/"}}\n'
        cfg = f"""listen: ["127.0.0.1:{self.port}"]
mpm: {{workers: 1, server_limit: 4, graceful_timeout: 5}}
timeouts: {{connect: 2, proxy: 5, client_header: 5, keepalive: 5, lingering: 1}}
control: {{pidfile: run/mpm.pid, socket: run/mpm.sock}}
log: {{level: info, access: {self.dir}/access.log, error: {self.dir}/error.log}}
{extra}routes:
{routes}"""
        self.cfg = os.path.join(self.dir, "mpm.yaml")
        open(self.cfg, "w").write(cfg)
        self.proc = subprocess.Popen([PYTHON, "-m", "mpm", "start", "-c", self.cfg], cwd=MPM_TREE,
                                     stdout=open(os.path.join(self.dir, "out"), "wb"),
                                     stderr=subprocess.STDOUT)
        _wait_port(self.port, self.proc, "mpm")
        time.sleep(0.3)


class Nginx(Peer):
    name = "nginx"
    def __init__(self, backend_port, workdir, location=None):
        self.port = free_port()
        w = os.path.join(workdir, "nginx"); os.makedirs(w + "/tmp", exist_ok=True)
        location = location or """        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
        }
"""
        conf = f"""worker_processes 1;
pid {w}/nginx.pid;
error_log {w}/error.log info;
daemon off;
master_process on;
events {{ worker_connections 256; }}
http {{
    access_log {w}/access.log;
    client_body_temp_path {w}/tmp/body; proxy_temp_path {w}/tmp/proxy;
    fastcgi_temp_path {w}/tmp/f; uwsgi_temp_path {w}/tmp/u; scgi_temp_path {w}/tmp/s;
    upstream backend {{ server 127.0.0.1:{backend_port}; keepalive 16; }}
    map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
    server {{
        listen 127.0.0.1:{self.port};
{location}    }}
}}
"""
        self.cfg = os.path.join(w, "nginx.conf"); open(self.cfg, "w").write(conf)
        self.proc = subprocess.Popen(["/usr/sbin/nginx", "-c", self.cfg, "-p", w], stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(w, "out"), "wb"))
        _wait_port(self.port, self.proc, "nginx")
    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGQUIT if False else signal.SIGTERM)
            self.proc.wait(10)


class HAProxy(Peer):
    name = "haproxy"
    def __init__(self, backend_port, workdir, extra_fe=""):
        self.port = free_port()
        w = os.path.join(workdir, "haproxy"); os.makedirs(w, exist_ok=True)
        cfg = f"""global
    maxconn 256
    nbthread 1
defaults
    mode http
    timeout connect 5s
    timeout client 10s
    timeout server 10s
    timeout http-keep-alive 5s
    option http-keep-alive
frontend fe
    bind 127.0.0.1:{self.port}
{extra_fe}    default_backend be
backend be
    server backend 127.0.0.1:{backend_port}
"""
        self.cfg = os.path.join(w, "haproxy.cfg"); open(self.cfg, "w").write(cfg)
        self.proc = subprocess.Popen(["/usr/sbin/haproxy", "-db", "-f", self.cfg], stdout=open(os.path.join(w, "out"), "wb"),
                                     stderr=subprocess.STDOUT)
        _wait_port(self.port, self.proc, "haproxy")


PEERS = {"mpm": Mpm, "nginx": Nginx, "haproxy": HAProxy}


def exchange(port, data, idle=0.6, total=4.0, chunks=None):
    """Send `data` (or each of `chunks` with a pause), read until the peer closes or goes quiet
    for `idle` seconds. Returns (bytes read, closed?)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=total)
    try:
        for part in (chunks or [data]):
            s.sendall(part)
            if chunks: time.sleep(0.15)
    except OSError:
        pass
    out = b""; closed = False
    deadline = time.monotonic() + total
    s.settimeout(idle)
    while time.monotonic() < deadline:
        try:
            d = s.recv(65536)
        except socket.timeout:
            break
        except OSError:
            closed = True; break
        if not d:
            closed = True; break
        out += d
    s.close()
    return out, closed


def statuses(resp: bytes) -> list[str]:
    return [m.decode() for m in re.findall(rb"HTTP/1\.[01] (\d{3})", resp)]


def run_with(peer_cls, fn, answer=default_answer, **kw):
    """Start a backend and one peer, call fn(peer, backend), stop both."""
    work = tempfile.mkdtemp(prefix="diff-")
    be = Backend(answer)
    peer = None
    try:
        peer = peer_cls(be.port, work, **kw)
        return fn(peer, be)
    finally:
        if peer: peer.stop()
        be.close()


class Apache(Peer):
    """Debian's apache2 in the foreground (-X), mod_proxy_http with `ProxyPass / http://backend/`;
    `extra` is more configuration (e.g. <Location> blocks).  Used by r02 and r04 only."""
    name = "apache"
    def __init__(self, backend_port, workdir, extra=""):
        import pwd
        self.port = free_port()
        w = os.path.join(workdir, "apache"); os.makedirs(w, exist_ok=True)
        mods = ["mpm_event", "authz_core", "proxy", "proxy_http", "headers"]
        user = ""
        if os.geteuid() == 0:
            user = "User www-data\nGroup www-data\n"
        conf = (f"ServerRoot {w}\nServerName localhost\nDefaultRuntimeDir {w}\nPidFile {w}/httpd.pid\n"
                f"ErrorLog {w}/error.log\nLogLevel warn\n{user}"
                + "".join(f"LoadModule {m}_module /usr/lib/apache2/modules/mod_{m}.so\n" for m in mods)
                + f"Listen 127.0.0.1:{self.port}\n{extra}"
                + f"ProxyPass / http://127.0.0.1:{backend_port}/\n")
        self.cfg = os.path.join(w, "httpd.conf"); open(self.cfg, "w").write(conf)
        self.proc = subprocess.Popen(["/usr/sbin/apache2", "-X", "-f", self.cfg], stdout=open(os.path.join(w, "out"), "wb"),
                                     stderr=subprocess.STDOUT)
        _wait_port(self.port, self.proc, "apache2")
