"""Shared helper for the cross-version upgrade repros (review 2026-12-04-versions).

Builds a tree of any commit of /work/main with `git archive` (never a worktree), copies the
C extensions when that commit's C sources equal HEAD's (else builds them), and runs a real
master from an "install" directory: PYTHONPATH points at a symlink `site/current`, which is
what the master and every master it execs import from.  `swap(tree)` re-points the symlink,
as an operator's `pip install` of another version replaces the installed files.

Everything on 127.0.0.1, ports from the OS, every process stopped by pid.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

REPO = "/work/main"
PY = "/work/main/.venv/bin/python"
CACHE = "/tmp/upgv-trees"


def sh(*args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=kw.pop("timeout", 60), **kw)


def resolve(commit: str) -> str:
    return sh("git", "-C", REPO, "rev-parse", "--short", commit).stdout.strip()


def tree(commit: str) -> str:
    """A directory holding `commit`'s files and C extensions (cached)."""
    commit = resolve(commit)
    path = os.path.join(CACHE, commit)
    if os.path.exists(os.path.join(path, ".ready")):
        return path
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    archive = subprocess.run(["git", "-C", REPO, "archive", commit], capture_output=True, check=True, timeout=60)
    subprocess.run(["tar", "-x", "-C", path], input=archive.stdout, check=True, timeout=60)
    head_conf = os.path.join(REPO, "conf")
    need_build = False
    for name in os.listdir(os.path.join(path, "conf")):
        if name.endswith(".c"):
            mine = open(os.path.join(path, "conf", name), "rb").read()
            theirs_path = os.path.join(head_conf, name)
            if os.path.exists(theirs_path) and open(theirs_path, "rb").read() == mine:
                stem = name[:-2]
                for so in os.listdir(head_conf):
                    if so.startswith(stem + ".") and so.endswith(".so"):
                        shutil.copy(os.path.join(head_conf, so), os.path.join(path, "conf", so))
            else:
                need_build = True
    if need_build:
        sh(PY, "setup.py", "build_ext", "--inplace", cwd=path, timeout=300)
    open(os.path.join(path, ".ready"), "w").close()
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- a backend: HTTP/1.1 keep-alive + WebSocket echo, threaded -------------------------------
class Backend:
    def __init__(self, name: str):
        self.name = name
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.close()
        for c in list(self.conns):
            with contextlib.suppress(OSError):
                c.close()

    def _accept(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                fields = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    fields[k.strip().lower()] = v.strip()
                if fields.get("upgrade", "").lower() == "websocket":
                    key = fields["sec-websocket-key"]
                    accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
                    conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                  f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode())
                    self._echo(conn, buf)
                    return
                length = int(fields.get("content-length", "0"))
                while len(buf) < length:
                    buf += conn.recv(65536)
                buf = buf[length:]
                target = lines[0].split()[1]
                if target.startswith("/slow/"):
                    time.sleep(float(target.split("/")[2]))
                body = f"{self.name} {target}\n".encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def _echo(self, conn, buf):
        def need(n):
            nonlocal buf
            while len(buf) < n:
                data = conn.recv(65536)
                if not data:
                    raise OSError("eof")
                buf += data
        while True:
            need(2)
            b0, b1 = buf[0], buf[1]
            n, off = b1 & 0x7F, 2
            if n == 126:
                need(4); n = struct.unpack("!H", buf[2:4])[0]; off = 4
            elif n == 127:
                need(10); n = struct.unpack("!Q", buf[2:10])[0]; off = 10
            masked = b1 & 0x80
            if masked:
                need(off + 4); mask = buf[off:off + 4]; off += 4
            need(off + n)
            payload = bytes(buf[off:off + n]); buf = buf[off + n:]
            if masked:
                payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
            opcode = b0 & 0x0F
            if opcode == 8:
                conn.sendall(b"\x88\x00")
                return
            if opcode == 9:
                opcode = 10
            if opcode in (1, 2, 10):
                payload = (self.name + ":").encode() + payload if opcode in (1, 2) else payload
                header = bytes([0x80 | opcode])
                if len(payload) < 126:
                    header += bytes([len(payload)])
                elif len(payload) < 65536:
                    header += bytes([126]) + struct.pack("!H", len(payload))
                else:
                    header += bytes([127]) + struct.pack("!Q", len(payload))
                conn.sendall(header + payload)


# -- clients ----------------------------------------------------------------------------------
class WS:
    """A minimal WebSocket client on a raw socket (masking, text frames)."""

    def __init__(self, port: int, path: str = "/ws/x"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise OSError("closed before 101")
            self.buf += data
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        self.status = int(head.split()[1])

    def echo(self, text: str, timeout: float = 5.0) -> str:
        self.sock.settimeout(timeout)
        payload = text.encode()
        mask = os.urandom(4)
        frame = bytes([0x81, 0x80 | len(payload)]) + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        self.sock.sendall(frame)
        while len(self.buf) < 2 or len(self.buf) < 2 + (self.buf[1] & 0x7F):
            data = self.sock.recv(65536)
            if not data:
                raise OSError("EOF")
            self.buf += data
        n = self.buf[1] & 0x7F
        out, self.buf = self.buf[2:2 + n], self.buf[2 + n:]
        return out.decode()

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()


class KeepAlive:
    def __init__(self, port: int):
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, dict, bytes]:
        self.sock.settimeout(timeout)
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        while b"\r\n\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise OSError("EOF before response head")
            self.buf += data
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        fields = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
        n = int(fields.get("content-length", "0"))
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                raise OSError("EOF in body")
            self.buf += data
        body, self.buf = self.buf[:n], self.buf[n:]
        return int(lines[0].split()[1]), fields, body

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# -- the installation and the master ----------------------------------------------------------
class Install:
    """site/current -> a tree; the master runs with PYTHONPATH=site/current from a neutral cwd."""

    def __init__(self, first_tree: str, **conf):
        self.dir = tempfile.mkdtemp(prefix="upgv-")
        os.makedirs(os.path.join(self.dir, "site"))
        os.makedirs(os.path.join(self.dir, "run"))
        self.current = os.path.join(self.dir, "site", "current")
        os.symlink(first_tree, self.current)
        self.b1, self.b2 = Backend("b1"), Backend("b2")
        self.port, self.admin = free_port(), free_port()
        self.config_path = os.path.join(self.dir, "mpm.yaml")
        self.error_log = os.path.join(self.dir, "error.log")
        per_client = conf.pop("per_client", {"connections": 40, "tunnels": 6})
        self.config = conf.pop("raw", None) or f"""
listen: ["127.0.0.1:{self.port}"]
mpm: {{workers: 2, server_limit: 16, graceful_timeout: 10}}
timeouts: {{connect: 2, proxy: 60, client_header: 5, keepalive: 30}}
control: {{pidfile: run/mpm.pid, socket: run/mpm.sock}}
log: {{level: info, access: {os.path.join(self.dir, 'access.log')}, error: {self.error_log}}}
admin: {{listen: "127.0.0.1:{self.admin}"}}
limits:
  per_client: {json.dumps(per_client)}
routes:
  - {{path: /ws/, to: "balancer://cluster/", upgrade: websocket}}
  - {{path: /, to: "balancer://cluster/"}}
balancers:
  cluster:
    method: byrequests
    members:
      - {{url: "http://127.0.0.1:{self.b1.port}", route: a}}
      - {{url: "http://127.0.0.1:{self.b2.port}", route: b}}
"""
        with open(self.config_path, "w") as f:
            f.write(self.config)
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        self.env["PYTHONPATH"] = self.current
        self.env["PYTHONDONTWRITEBYTECODE"] = "1"
        self.master: subprocess.Popen | None = None
        self.pids: set[int] = set()

    def swap(self, new_tree: str) -> None:
        tmp = self.current + ".tmp"
        os.symlink(new_tree, tmp)
        os.replace(tmp, self.current)      # atomic, as a package manager's rename

    def ctl(self, *args, timeout: float = 60) -> subprocess.CompletedProcess:
        """mpmctl of the version installed now (site/current)."""
        try:
            return subprocess.run([PY, "-m", "mpm", *args, "-c", self.config_path], capture_output=True, text=True,
                                  timeout=timeout, cwd=os.path.join(self.dir, "run"), env=self.env)
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(e.cmd, 124, e.stdout or "", f"TIMEOUT after {timeout}s")

    def start(self) -> None:
        self.out = open(os.path.join(self.dir, "master.out"), "wb")
        self.master = subprocess.Popen([PY, "-m", "mpm", "start", "-c", self.config_path], stdout=self.out,
                                       stderr=subprocess.STDOUT, cwd=os.path.join(self.dir, "run"), env=self.env)
        self.pids.add(self.master.pid)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.master.poll() is not None:
                raise RuntimeError(f"master exited {self.master.returncode}: {self.log_text()[-2000:]}")
            st = self.status()
            if st and len([w for w in st["workers"] if w.get("state") not in ("starting",)]) >= 2:
                return
            time.sleep(0.2)
        raise RuntimeError("master not ready: " + self.log_text()[-2000:])

    def status(self) -> dict | None:
        r = self.ctl("status", "--json", timeout=15)
        if r.returncode != 0:
            return None
        try:
            st = json.loads(r.stdout)
        except ValueError:
            return None
        self.pids.add(st.get("master_pid", 0))
        self.pids.update(w["pid"] for w in st.get("workers", []))
        return st

    def master_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int(open(os.path.join(self.dir, "run", "mpm.pid")).read().strip())
        return None

    def log_text(self) -> str:
        out = ""
        for p in (os.path.join(self.dir, "master.out"), self.error_log):
            with contextlib.suppress(OSError):
                out += open(p, errors="replace").read()
        return out

    def metrics(self) -> tuple[int, str]:
        try:
            code, body = http_get(self.admin, "/metrics")
            return code, body.decode(errors="replace")
        except OSError as e:
            return 0, str(e)

    def mpm_processes(self) -> list[tuple[int, str]]:
        """Our processes: those whose command line or environment names this install's
        directory (setproctitle may overwrite the environment area), and their descendants."""
        procs = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                cmd = open(f"/proc/{name}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace").strip()
                stat = open(f"/proc/{name}/stat").read()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                state = stat.rsplit(")", 1)[1].split()[0]
                try:
                    env = open(f"/proc/{name}/environ", "rb").read()
                except OSError:
                    env = b""
            except (OSError, ValueError, IndexError):
                continue
            if state == "Z":
                continue
            procs[int(name)] = (ppid, cmd, env)
        mine = {pid for pid, (ppid, cmd, env) in procs.items()
                if pid != os.getpid() and (self.dir in cmd or self.current.encode() in env)}
        grown = True
        while grown:
            grown = False
            for pid, (ppid, cmd, env) in procs.items():
                if ppid in mine and pid not in mine:
                    mine.add(pid)
                    grown = True
        return sorted((pid, procs[pid][1]) for pid in mine)

    def cleanup(self) -> list:
        """Stop everything we started, by pid; returns what had to be killed."""
        killed = []
        if self.master_pid():
            self.pids.add(self.master_pid())
        procs = self.mpm_processes()
        for pid, cmd in procs:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.time() + 12
        while time.time() < deadline and self.mpm_processes():
            time.sleep(0.2)
        for pid, cmd in self.mpm_processes():
            killed.append((pid, cmd))
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if self.master:
            with contextlib.suppress(Exception):
                self.master.wait(5)
        self.b1.close()
        self.b2.close()
        return killed


def new_masters_code(inst: Install, pid: int) -> str:
    """Which tree a master imports from: its /proc/PID/maps lists the C extensions' paths."""
    with contextlib.suppress(OSError):
        for line in open(f"/proc/{pid}/maps"):
            if "/conf/_tickets" in line:
                return line.split()[-1].rsplit("/conf/", 1)[0]
    return "?"
