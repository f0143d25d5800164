"""Helpers for the balancer tests (issue #7).

- `Member`: one balancer member as a real server in threads: HTTP/1.1 keep-alive (its
  name in every body) and WebSocket upgrades (a real RFC 6455 echo), on a port that
  survives `kill()` (listener closed, every open connection reset) and `restart()`.
- `balancer_config`: the `balancers:` + `routes:` sections for a list of members.
- `ws_open`: a WebSocket handshake through the proxy, raw sockets (wsutil's frames).
- `DnsServer`: Debian's dnsmasq on a free loopback port, answering from records we write
  (issue #18: members found in DNS).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest
from rawsock import read_head, status_of
from support import free_port
from wsutil import OP_CLOSE, frame, read_frame, switch_response, upgrade_request

from conf.model import Limits
from worker.http1 import parse_request


class Member:
    """A backend that answers `name` to every request and echoes WebSocket messages."""

    def __init__(self, name: str, port: int = 0, status: int = 200, host: str = "127.0.0.1"):
        self.name = name
        self.host = host                     # any 127.0.0.0/8 address: DNS can give several with one port
        self.status = status                 # what plain HTTP requests get
        self.requests: list[dict] = []       # {"method", "target", "headers" (lower-case), "ws"}
        self.tunnels = 0                     # WebSocket connections open right now
        self.conns: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.port = port
        self._listen()

    def _listen(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((self.host, self.port))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.alive = True
        threading.Thread(target=self._accept_loop, args=(self.sock,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _accept_loop(self, lsock: socket.socket) -> None:
        while True:
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        buf = bytearray()
        try:
            while True:
                try:
                    head, buf = read_head(conn, buf)
                except ConnectionError:
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if line:
                        key, _, value = line.partition(":")
                        headers[key.strip().lower()] = value.strip()
                ws = headers.get("upgrade", "").lower() == "websocket"
                self.requests.append({"method": method, "target": target, "headers": headers, "ws": ws})
                if ws:
                    self._echo(conn, head, buf)
                    return
                length = int(headers.get("content-length", "0"))
                while len(buf) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                del buf[:length]
                body = self.name.encode()
                conn.sendall(f"HTTP/1.1 {self.status} X\r\nContent-Length: {len(body)}\r\n"
                             f"X-Member: {self.name}\r\n\r\n".encode() + (body if method != "HEAD" else b""))
        except OSError:
            return
        finally:
            with self.lock:
                self.conns.discard(conn)
            conn.close()

    def _echo(self, conn: socket.socket, head: bytes, buf: bytearray) -> None:
        # Counted before the 101 goes out: a test that has read the 101 may look at `tunnels`
        # at once, and must find this one (counting after the send lost that race under load).
        with self.lock:
            self.tunnels += 1
        try:
            conn.sendall(switch_response("websocket", head))
            while True:
                opcode, payload = read_frame(conn, buf)
                if opcode == OP_CLOSE:
                    conn.sendall(frame(payload, OP_CLOSE, masked=False))
                    return
                conn.sendall(frame(payload, opcode, masked=False))
        except (OSError, ConnectionError):
            return
        finally:
            with self.lock:
                self.tunnels -= 1

    def served(self, kind: str = "http") -> int:
        return sum(1 for r in self.requests if r["ws"] == (kind == "ws"))

    def kill(self) -> None:
        """The process dies: nothing listens any more and every connection is reset."""
        self.alive = False
        try:
            self.sock.shutdown(socket.SHUT_RDWR)   # wakes the thread blocked in accept()
        except OSError:
            pass
        self.sock.close()
        with self.lock:
            conns = list(self.conns)
        for conn in conns:
            try:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def restart(self) -> None:
        self._listen()

    def close(self) -> None:
        if self.alive:
            self.kill()


def members_section(members: list[Member], weights=None, routes: bool = True, **extra) -> dict:
    """One balancer's section; `extra` adds balancer keys (method, sticky, health...)."""
    entries = []
    for i, member in enumerate(members):
        entry = {"url": member.url, "weight": weights[i] if weights else 1}
        if routes:
            entry["route"] = member.name
        entries.append(entry)
    return {**extra, "members": entries}


def request_head(headers: str = "", target: str = "/"):
    """A parsed request head, as a worker hands it to the balancer's pick."""
    return parse_request(f"GET {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode(), Limits())


def ws_open(proxy, path: str = "/ws", headers: str = "") -> tuple[socket.socket, bytes, bytearray]:
    """A WebSocket through the proxy: (socket, 101 head, bytes behind it)."""
    sock = proxy.connect()
    sock.sendall(upgrade_request(path, extra=headers))
    head, rest = read_head(sock)
    assert status_of(head) == 101, head
    return sock, head, rest


def ws_echo(sock: socket.socket, rest: bytearray, message: bytes) -> bytes:
    sock.sendall(frame(message))
    _, payload = read_frame(sock, rest)
    return payload


def ws_close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


class KeepAlive:
    """A plain keep-alive HTTP/1.1 client on one connection to the proxy: (status, headers, body)."""

    def __init__(self, proxy, timeout: float = 10.0):
        self.proxy = proxy
        self.timeout = timeout
        self.sock = None
        self.buf = bytearray()

    def get(self, path: str, headers: str = "", method: str = "GET") -> tuple[int, dict, bytes]:
        if self.sock is None:
            self.sock = self.proxy.connect(self.timeout)
            self.buf = bytearray()
        self.sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: proxy.test\r\n{headers}\r\n".encode())
        head, self.buf = read_head(self.sock, self.buf)
        fields = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            if line:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip().lower(), []).append(value.strip())
        length = 0 if method == "HEAD" else int(fields.get("content-length", ["0"])[0])
        while len(self.buf) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("EOF inside a body")
            self.buf += chunk
        body = bytes(self.buf[:length])
        del self.buf[:length]
        if "close" in ",".join(fields.get("connection", [])).lower():
            self.close()
        return status_of(head), fields, body

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class DnsServer:
    """dnsmasq in the foreground on 127.0.0.1:`port` (UDP and TCP), answering only for `.test`
    from what `records` wrote: A records from a hosts file (re-read on SIGHUP), SRV records
    from the config file (dnsmasq re-reads that only when restarted).  Names under `.test`
    that it does not know get NXDOMAIN."""

    def __init__(self, directory):
        self.binary = _dnsmasq()
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        self._port = free_port(udp=True)
        self.told = False            # `port` was read: whoever read it asks dnsmasq there
        self.hosts = os.path.join(self.dir, "hosts")
        self.conf = os.path.join(self.dir, "dnsmasq.conf")
        self.log = open(os.path.join(self.dir, "dnsmasq.log"), "ab")
        self.proc: subprocess.Popen | None = None
        self.conf_text = None

    @property
    def port(self) -> int:
        self.told = True
        return self._port

    @property
    def resolver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def records(self, a: dict[str, list[str]] | None = None, srv: list[tuple] = (), extra: str = "") -> None:
        """`a`: name -> addresses; `srv`: (name, target, port, priority, weight).  Applied at
        once: SIGHUP when only A records changed, else a restart on the same port."""
        with open(self.hosts + ".new", "w") as f:
            for name, addresses in (a or {}).items():
                f.writelines(f"{address} {name}\n" for address in addresses)
        os.replace(self.hosts + ".new", self.hosts)
        conf = "local=/test/\n" + "".join(f"srv-host={n},{t},{p},{pr},{w}\n" for n, t, p, pr, w in srv) + extra
        if self.proc is not None and self.proc.poll() is None and conf == self.conf_text:
            self.proc.send_signal(signal.SIGHUP)
            time.sleep(0.1)              # dnsmasq re-reads the file in its own loop
            return
        self.stop()
        with open(self.conf, "w") as f:
            f.write(conf)
        self.conf_text = conf
        self.start()

    def start(self) -> None:
        """dnsmasq on `port`, answering.  The port was free when chosen, but any connect() in
        the meantime (the suite's other processes make thousands) may have taken it as its
        ephemeral port, and dnsmasq then exits at once (EADDRINUSE): while nobody has read
        the port yet it moves to a fresh one, else it tries the same port again for a while."""
        for _ in range(6):
            if self._run_until_answering(5):
                return
            if not self.told:
                self._port = free_port(udp=True)
            else:
                time.sleep(0.5)
        raise AssertionError(f"dnsmasq did not start (see {self.dir}/dnsmasq.log)")

    def _run_until_answering(self, timeout: float) -> bool:
        """Whether dnsmasq answers on `port` within `timeout`; if it exited instead, False."""
        self.proc = subprocess.Popen(
            [self.binary, "--no-daemon", f"--port={self._port}", "--listen-address=127.0.0.1", "--bind-interfaces",
             "--no-resolv", "--no-hosts", f"--conf-file={self.conf}", f"--addn-hosts={self.hosts}", "--pid-file=",
             f"--user={_user()}", "--log-queries"], stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + timeout
        while not _answers(self._port):
            if self.proc.poll() is not None:
                self.proc = None
                return False
            if time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"dnsmasq did not answer within {timeout} s (see {self.dir}/dnsmasq.log)")
            time.sleep(0.02)
        return True

    def stop(self) -> None:
        """Dead: nothing listens on the port any more (the proxy's queries are refused)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        self.log.close()


def _dnsmasq() -> str:
    """Debian's /usr/sbin/dnsmasq; without it the DNS tests are skipped, unless CI is set
    (then they fail: CI installs it, see .ci/run)."""
    for candidate in (shutil.which("dnsmasq"), "/usr/sbin/dnsmasq"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    reason = "dnsmasq is not installed (Debian: apt-get install dnsmasq-base); the DNS discovery tests need it"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}, and CI is set: CI must run these tests")
    pytest.skip(reason)


def _user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name      # root would otherwise become "nobody" and lose our files


def _answers(port: int) -> bool:
    """dnsmasq is up when it answers a query (for a name it knows nothing about)."""
    query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05probe\x04test\x00\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        try:
            sock.sendto(query, ("127.0.0.1", port))
            return sock.recv(512)[:2] == b"\x12\x34"
        except OSError:
            return False
