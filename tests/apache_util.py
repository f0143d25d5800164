"""Helpers for the import-apache tests (issue #16): a real Apache httpd (Debian's apache2)
started in the foreground from a generated configuration, and the request corpus runner
that asks which backend, and which backend path, a request reached.

Apache runs as `apache2 -X -f CONF` (one process, no detach) with its own ServerRoot,
PidFile, ErrorLog and DefaultRuntimeDir under the test's directory, on ports the OS gave
out, and is stopped by its pid."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

from rawsock import read_head, status_of
from support import ROOT, terminate, wait_for
from wsutil import upgrade_request

APACHE = shutil.which("apache2") or "/usr/sbin/apache2"
MODULES = "/usr/lib/apache2/modules"
PROXY_MODULES = ("mpm_event", "authz_core", "proxy", "proxy_http", "proxy_wstunnel", "proxy_balancer",
                 "slotmem_shm", "lbmethod_byrequests", "rewrite", "headers")


def run_user() -> str | None:
    """Apache insists on an unprivileged user for its workers when started as root."""
    if os.geteuid() != 0:
        return None
    import pwd
    for name in ("www-data", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    return None


def preamble(directory: str, modules=PROXY_MODULES) -> str:
    """What makes a snippet a whole httpd configuration, everything under `directory`."""
    user = run_user()
    lines = [f"ServerRoot {directory}", "ServerName localhost", f"DefaultRuntimeDir {directory}",
             f"PidFile {directory}/httpd.pid", f"ErrorLog {directory}/error.log", "LogLevel warn"]
    lines += [f"LoadModule {m}_module {MODULES}/mod_{m}.so" for m in modules]
    if user:
        lines += [f"User {user}", f"Group {'nogroup' if user == 'nobody' else user}"]
    return "\n".join(lines) + "\n"


class Apache:
    """httpd on `ports` (Listen lines of the configuration), stopped by pid."""

    def __init__(self, conf_path: str, ports: list[int]):
        self.conf = conf_path
        self.dir = os.path.dirname(conf_path)
        self.ports = ports
        self.proc: subprocess.Popen | None = None

    def start(self) -> Apache:
        check = subprocess.run([APACHE, "-t", "-f", self.conf], capture_output=True, text=True, timeout=20)
        assert check.returncode == 0, check.stderr
        self.log = open(os.path.join(self.dir, "apache-stderr.log"), "wb")
        self.proc = subprocess.Popen([APACHE, "-X", "-f", self.conf], stdout=self.log, stderr=subprocess.STDOUT)

        def up():
            assert self.proc.poll() is None, f"apache2 exited: {self.error_text()}"
            for port in self.ports:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                except OSError:
                    return False
            return True
        wait_for(up, 15, 0.05, "apache2 listening")
        return self

    def error_text(self) -> str:
        try:
            with open(os.path.join(self.dir, "error.log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        terminate(self.proc, 15)
        self.log.close()
        self.proc = None


def import_apache(conf: str, out: str | None = None, *extra: str, env: dict | None = None
                  ) -> subprocess.CompletedProcess:
    """`python -m mpm import-apache CONF [-o OUT]`, the real command line."""
    argv = [sys.executable, "-m", "mpm", "import-apache", conf, *extra] + (["-o", out] if out else [])
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env=None if env is None else {**os.environ, **env})


# == the corpus ==================================================================================


def ask(port: int, path: str, headers: dict | None = None, ws: bool = False, host: str = "proxy.test",
        connection: str = "Upgrade", timeout: float = 10.0) -> int:
    """One request on a fresh connection; the status line's code (101 for a tunnel).
    `host` None: an HTTP/1.0 request without Host (a monitor's, HAProxy's default httpchk)."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        if ws:
            sock.sendall(upgrade_request(path, host=host, connection=connection, extra=extra))
        elif host is None:
            sock.sendall(f"GET {path} HTTP/1.0\r\n{extra}\r\n".encode())
        else:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n".encode())
        head, _ = read_head(sock)
        return status_of(head)


def reached(members, port: int, path: str, headers: dict | None = None, ws: bool = False,
            host: str = "proxy.test", connection: str = "Upgrade") -> tuple:
    """(backend name, path it saw, whether it saw an upgrade, the Host it saw) or ('-', status) when
    no backend did."""
    before = {m.name: len(m.requests) for m in members}
    status = ask(port, path, headers, ws, host, connection)
    hits = [(m, m.requests[before[m.name]:]) for m in members if len(m.requests) > before[m.name]]
    if not hits:
        return ("-", status)
    assert len(hits) == 1 and len(hits[0][1]) == 1, f"{path}: more than one backend request: {hits}"
    member, (request,) = hits[0]
    return (member.name, request["target"], request["ws"], request["headers"].get("host"))
