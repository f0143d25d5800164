"""The things being compared: a direct connection and four reverse proxies in front of one backend.

Each peer is started by hand from a generated config under the run's temp dir
(bench/configs.py), in the foreground as our child with its own pid file, probed (one
HTTP request and one WebSocket echo, plain and TLS) before it is measured, reloaded with the
signal its documentation names, and stopped by pid. A peer whose program is not installed is
reported as missing, never faked.

    peer      started as                                    reload          stop
    direct    (nothing: the load goes to the backend)       -               -
    mpm       mpmctl start -c mpm.yaml                      SIGHUP          SIGTERM
    nginx     nginx -c nginx.conf -p DIR -e LOG             SIGHUP          SIGTERM (fast)
    haproxy   haproxy -W -f haproxy.cfg -p PID              SIGUSR2         SIGTERM
    apache2   apache2 -f apache2.conf -DFOREGROUND          SIGUSR1 (graceful)  SIGTERM
    floor     python -m bench.floor (opt-in: not in ALL)    -               SIGTERM

`floor` is not a proxy to compare with but the least a Python proxy can do (bench/floor.py):
what the language costs per request on the machine of the run, plain HTTP and WebSocket only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from bench import configs, procs, tools
from bench.configs import Site, Sizing
from bench.loadgen_ws import LoadGen

ALL = ("direct", "mpm", "nginx", "haproxy", "apache2")
OPT_IN = ("floor",)          # measured only when --peers names it


def log_tail(path: str, lines: int = 6) -> str:
    try:
        text = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def http_probe(port: int, path: str = "/small") -> str | None:
    """One GET through the peer; None if it answered 200 with the 100-byte body.

    The body is read by its Content-Length, not until the peer closes: whether a peer
    honours ``Connection: close`` is not what this probe is for.
    """
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < 100:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        return f"GET {path}: {exc}"
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") or len(body) != 100:
        return f"GET {path}: {head[:60]!r}..., {len(body)} body bytes"
    return None


def ws_probe(url: str) -> str | None:
    gen = LoadGen(url, 32)
    try:
        opened, _failed, _ = gen.open_all(1, timeout=5)
        if not opened:
            return f"{url}: {'; '.join(gen.errors) or 'no connection'}"
        gen.run(0, 0, check=True, timeout=5)
        return None if gen.completed == 1 else f"{url}: no echo ({'; '.join(gen.errors)})"
    finally:
        gen.close_all()


class Peer:
    name = ""
    program = ""
    reload_signal: int | None = signal.SIGHUP
    stop_signal = signal.SIGTERM
    protocols: frozenset = frozenset()     # "h2" (ALPN on the TLS port), "rfc8441" (WebSockets over it)
    plain_only: str | None = None          # why this peer has no TLS listener (its TLS cells are not run)

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.site: Site | None = None
        self.version = ""
        self.log = ""
        self.tls_problem: str | None = None   # why wss:// failed its probe, if it did

    # -- what a subclass says ---------------------------------------------------------------------

    def missing(self) -> str | None:
        """Why this peer cannot run here, or None (and self.version is set)."""
        path = tools.which(self.program)
        if not path:
            return f"{self.program} is not installed (bench/setup installs it)"
        self.program = path
        self.version = self.read_version()
        return None

    def read_version(self) -> str:
        return ""

    def config(self, site: Site, size: Sizing) -> tuple[str, str]:
        """(file name, text) of the generated config."""
        raise NotImplementedError

    def argv(self, conf: str) -> list[str]:
        raise NotImplementedError

    def check_config(self, conf: str) -> str | None:
        return None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, site: Site, size: Sizing) -> str | None:
        """Start and probe; None when it serves, else why not."""
        self.site = site
        name, text = self.config(site, size)
        conf = os.path.join(site.workdir, name)
        Path(conf).write_text(text)
        problem = self.check_config(conf)
        if problem:
            return problem
        self.log = os.path.join(site.workdir, f"{self.name}.log")
        self.proc = procs.spawn(self.argv(conf), log=self.log, cwd=site.workdir)
        for port in (p for p in (site.port, site.tls_port, site.tls_port_ec) if p):   # 0: no TLS port
            if not procs.wait_port(port, self.proc, timeout=20):
                why = "exited" if self.proc.poll() is not None else "not listening after 20 s"
                return f"{self.name} {why} on port {port}: {log_tail(self.log)}"
        return self.probe()

    def probe(self) -> str | None:
        """Plain HTTP and WebSocket must work; TLS trouble only keeps the peer out of the TLS cells."""
        site = self.site
        problem = http_probe(site.port) or ws_probe(f"ws://127.0.0.1:{site.port}/ws")
        if not problem and site.tls_port:
            self.tls_problem = ws_probe(f"wss://127.0.0.1:{site.tls_port}/ws")
        return problem

    def unsupported(self, protocol: str) -> str | None:
        """Why a cell that needs `protocol` cannot be measured on this peer, or None."""
        if not protocol or protocol in self.protocols:
            return None
        what = {"h2": "HTTP/2", "rfc8441": "WebSockets over HTTP/2 (RFC 8441)"}[protocol]
        return f"{self.name} does not offer {what}" + (" (the backend is HTTP/1.1)" if self.name == "direct" else "")

    def pids(self) -> list[int]:
        """Roots of the process trees whose CPU and memory are this peer's."""
        return [self.proc.pid] if self.proc is not None and self.proc.poll() is None else []

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tls_counts(self) -> tuple[int, int] | None:
        """(full, resumed) TLS handshakes so far, when the peer counts them itself."""
        return None

    def reload(self) -> None:
        if self.reload_signal is not None and self.alive():
            os.kill(self.proc.pid, self.reload_signal)

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop(self.proc, self.stop_signal, timeout=10)
            self.proc = None


class Direct(Peer):
    """No proxy: the load generator talks to the backend (and to a TLS copy of it for S7)."""

    name = "direct"
    reload_signal = None

    def missing(self) -> str | None:
        self.version = "-"
        return None

    def start(self, site: Site, size: Sizing) -> str | None:
        self.site = site
        return self.probe()


class Mpm(Peer):
    name = "mpm"
    program = "mpmctl"
    protocols = frozenset({"h2", "rfc8441"})     # TLS listeners offer h2 by default
    extra = ""          # --mpm-extra: YAML appended to this peer's config (mpm-base has its own)

    def missing(self) -> str | None:
        local = Path(sys.executable).with_name("mpmctl")
        if local.exists():
            self.program = str(local)
        elif not shutil.which("mpmctl"):
            return "mpmctl is not installed (pip install -e . in this checkout)"
        try:
            self.version = metadata.version("mpm-proxy")
        except metadata.PackageNotFoundError:
            self.version = "?"
        return None

    def config(self, site, size):
        return "mpm.yaml", configs.mpm_yaml(site, size) + (self.extra + "\n" if self.extra else "")

    def check_config(self, conf):
        try:
            out = subprocess.run([self.program, "configtest", "-c", conf], capture_output=True, text=True,
                                 timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"mpmctl configtest: {exc}"
        if out.returncode != 0:
            return f"mpmctl configtest failed: {(out.stdout + out.stderr).strip()[-400:]}"
        return None

    def argv(self, conf):
        return [self.program, "start", "-c", conf]

    def _ctl(self) -> list[str]:
        return [self.program]

    def tls_counts(self):
        """From `mpmctl status --json`: workers of older generations count while they live."""
        conf = os.path.join(self.site.workdir, self.config(self.site, Sizing(0, 0))[0])
        try:
            out = subprocess.run([*self._ctl(), "status", "--json", "-c", conf], capture_output=True, text=True,
                                 timeout=10)
            totals = json.loads(out.stdout)["totals"]
            return totals["tls_full"], totals["tls_resumed"]
        except (OSError, subprocess.TimeoutExpired, ValueError, KeyError):
            return None


class MpmBase(Mpm):
    """Another checkout of mpm-proxy (`--base DIR`), run by the same Python unless
    `--base-python` names another (`--base . --base-python P`: the same code on another
    interpreter build): a before/after comparison inside one run, where the machine's drift
    falls on both alike."""
    name = "mpm-base"
    src = ""
    python = sys.executable

    def missing(self) -> str | None:
        if not self.src or not os.path.isfile(os.path.join(self.src, "mpm", "__main__.py")):
            return "--base DIR must name a checkout of mpm-proxy"
        self.version = f"{self.src}" if self.python == sys.executable else f"{self.src} on {self.python}"
        if not os.path.isdir(os.path.join(self.src, "worker", "h2")):
            self.protocols = frozenset()          # a checkout from before issue #17
        return None

    def _python(self) -> list[str]:
        return ["env", f"PYTHONPATH={self.src}", self.python, "-m", "mpm"]

    access_log = False      # --base-access-log: this peer writes its access log (what it costs)

    def config(self, site, size):
        text = configs.mpm_yaml(site, size).replace("/mpm.pid", "/mpm-base.pid").replace("/mpm.sock", "/mpm-base.sock")
        if self.access_log:
            text = text.replace('access: "off"', f'access: "{site.workdir}/mpm-base-access.log"')
        return "mpm-base.yaml", text

    def check_config(self, conf):
        out = subprocess.run([*self._python(), "configtest", "-c", conf], capture_output=True, text=True, timeout=30)
        return None if out.returncode == 0 else f"configtest failed: {(out.stdout + out.stderr).strip()[-400:]}"

    def argv(self, conf):
        return [*self._python(), "start", "-c", conf]

    def _ctl(self) -> list[str]:
        return self._python()


class Nginx(Peer):
    name = "nginx"
    program = "nginx"
    protocols = frozenset({"h2"})                # no RFC 8441 (its WebSockets are HTTP/1.1 only)

    def read_version(self):
        out = subprocess.run([self.program, "-v"], capture_output=True, text=True).stderr
        m = re.search(r"nginx/(\S+)", out)
        return m.group(1) if m else "?"

    def config(self, site, size):
        os.makedirs(os.path.join(site.workdir, "nginx-tmp"), exist_ok=True)
        return "nginx.conf", configs.nginx_conf(site, size)

    def check_config(self, conf):
        return _config_test([self.program, "-t", "-q", "-c", conf, "-p", self.site.workdir,
                             "-e", os.path.join(self.site.workdir, "nginx-error.log")])

    def argv(self, conf):
        return [self.program, "-c", conf, "-p", self.site.workdir,
                "-e", os.path.join(self.site.workdir, "nginx-error.log")]


class Haproxy(Peer):
    name = "haproxy"
    program = "haproxy"
    protocols = frozenset({"h2", "rfc8441"})     # 2.4+: h2 frontends advertise extended CONNECT
    reload_signal = signal.SIGUSR2   # master-worker mode: the master re-executes, old workers finish

    def read_version(self):
        out = subprocess.run([self.program, "-v"], capture_output=True, text=True).stdout
        m = re.search(r"version (\S+)", out)
        return m.group(1) if m else "?"

    def config(self, site, size):
        return "haproxy.cfg", configs.haproxy_cfg(site, size)

    def check_config(self, conf):
        return _config_test([self.program, "-c", "-q", "-f", conf])

    def argv(self, conf):
        return [self.program, "-W", "-f", conf, "-p", os.path.join(self.site.workdir, "haproxy.pid")]


class Apache(Peer):
    name = "apache2"
    program = "apache2"
    reload_signal = signal.SIGUSR1   # "graceful": children finish what they are doing

    def missing(self):
        why = super().missing()
        if why:
            return why
        for module in ("mpm_event", "proxy", "proxy_http", "proxy_wstunnel", "ssl"):
            if not os.path.exists(f"{configs.APACHE_MODULES}/mod_{module}.so"):
                return f"apache2 is installed but mod_{module} is not"
        return None

    def read_version(self):
        out = subprocess.run([self.program, "-v"], capture_output=True, text=True).stdout
        m = re.search(r"Apache/(\S+)", out)
        return m.group(1) if m else "?"

    def config(self, site, size):
        return "apache2.conf", configs.apache_conf(site, size)

    def check_config(self, conf):
        return _config_test([self.program, "-t", "-f", conf])

    def argv(self, conf):
        return [self.program, "-f", conf, "-DFOREGROUND"]


class Floor(Peer):
    """bench/floor.py, in front of the same backend: the Python floor of a run."""

    name = "floor"
    reload_signal = None
    plain_only = "the floor has no TLS (bench/floor.py)"

    def missing(self) -> str | None:
        self.version = "bench/floor.py"
        return None

    def start(self, site: Site, size: Sizing) -> str | None:
        self.site = site
        self.log = os.path.join(site.workdir, "floor.log")
        self.proc = procs.spawn([procs.python(), "-m", "bench.floor", "--port", str(site.port), "--backend-port",
                                 str(site.backend_port)], log=self.log, cwd=str(Path(__file__).parent.parent))
        if not procs.wait_port(site.port, self.proc, timeout=20):
            return f"floor not listening on port {site.port}: {log_tail(self.log)}"
        return http_probe(site.port) or ws_probe(f"ws://127.0.0.1:{site.port}/ws")


def _config_test(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{argv[0]} config test: {exc}"
    if out.returncode != 0:
        return f"{os.path.basename(argv[0])} rejected its config: {(out.stdout + out.stderr).strip()[-400:]}"
    return None


def make(name: str) -> Peer:
    return {"direct": Direct, "mpm": Mpm, "mpm-base": MpmBase, "nginx": Nginx, "haproxy": Haproxy,
            "apache2": Apache, "floor": Floor}[name]()
