"""python -m bench.instructions [--requests N] [--messages N] [--connections N] [--clients N] [--peer mpm|nginx|floor] [--src DIR] [--by-library] [--json FILE]

Instructions per request (S1's GET /small), per message (S3's 64-byte WebSocket echo) and per
TLS connection (S7c's: a new connection, its handshake, one GET /small with `Connection:
close`; full handshakes, and handshakes resuming the session of the connection before, as
wrk does; TLS 1.3, ECDSA P-256 certificate) of one mpm worker, counted by
`valgrind --tool=callgrind`.  Throughput and CPU time swing
30-60 % between runs on a shared machine; an instruction count repeats to within a few
hundredths of a percent whatever else the machine does, so it is the figure to compare a
change against (before/after: `--src` runs another checkout's code with this harness).

How: the bundled backend runs natively; mpm runs under callgrind with one worker.  Each
figure is the difference between two whole runs, one with few and one with many units,
divided by the difference in units, so start-up and shutdown cancel out.  `--peer nginx`
counts nginx (one process, `master_process off`, the bench's proxy settings) under the
same client and backend: the figure to quote an instruction ratio against.  `--peer floor`
counts bench/floor.py's one worker: the least a Python proxy does (no TLS).  The client sends
one unit at a time on one keep-alive connection: every unit then costs the worker the same
loop turns, which is what makes the count repeat (under load a turn serves many events, so
a real run spends somewhat less per unit on the loop itself).  `--clients N` sends the
requests on N keep-alive connections at once instead (threads, one request in flight on
each): under callgrind the worker is the slow side, so its loop turns serve several events,
and a buffered access log writes many lines at once, as under wrk.  That count depends on how
the requests fall into turns, so it repeats less closely (compare runs of one setting only).

`--by-library` splits each figure by the file whose code ran the instructions (libcrypto,
libssl, libc, libpython or nginx itself, each C extension): what a proxy adds to OpenSSL's own
work per TLS connection, against nginx's.  An instruction of the interpreter is not an
instruction of OpenSSL's, though: per resumed TLS connection (2026-12-05) libpython ran 138,000
of mpm's 2.52 million instructions and about 80 of its 500 µs (perf), libcrypto 2.04 million in
about 230 µs.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

from bench import procs, tools
from bench.certs import make_cert
from bench.configs import NGINX_LOCATION
from bench.runner import start_backend

HERE = os.path.dirname(os.path.abspath(__file__))
SMALL_REQUEST = b"GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _config(workdir: str, port: int, backend: int, tls: bool, access_log: bool, extra: str = "") -> str:
    path = os.path.join(workdir, "mpm.yaml")
    access = f"{workdir}/access.log" if access_log else "off"
    listen = (f'[{{address: "127.0.0.1:{port}", tls: {{cert: "{workdir}/cert-ec.pem", key: "{workdir}/key-ec.pem"}}}}]'
              if tls else f'["127.0.0.1:{port}"]')
    with open(path, "w") as f:
        f.write(f'listen: {listen}\n'
                "mpm: {workers: 1}\n"
                "timeouts: {proxy: 300, keepalive: 300}\n"
                f'control: {{pidfile: "{workdir}/mpm.pid", socket: "{workdir}/mpm.sock"}}\n'
                'log: {level: warning, access: "' + access + '", error: "' + workdir + '/error.log"}\n'
                f'routes:\n  - {{path: /, to: "http://127.0.0.1:{backend}/"}}\n' + (extra + "\n" if extra else ""))
    return path


def _http(port: int, count: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        for _ in range(count):
            sock.sendall(SMALL_REQUEST)
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the proxy closed the connection")
                data += chunk
                end = data.find(b"\r\n\r\n")
                if end >= 0 and len(data) >= end + 4 + _length(data[:end]):
                    break


def _http_clients(port: int, count: int, clients: int) -> None:
    """`count` requests over `clients` connections at once (see the module's docstring)."""
    import threading
    errors: list = []

    def client(share: int) -> None:
        try:
            _http(port, share)
        except OSError as exc:
            errors.append(exc)
    threads = [threading.Thread(target=client, args=(count // clients + (i < count % clients),))
               for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _tls(port: int, count: int, resume: bool) -> None:
    """`count` connections, one request each; with `resume`, each offers the last one's session."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    session = None
    for _ in range(count):
        with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=60),
                                 session=session) as sock:
            sock.sendall(b"GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            while sock.recv(65536):
                pass
            if resume:
                session = sock.session


def _length(head: bytes) -> int:
    lower = head.lower()
    at = lower.find(b"content-length:")
    stop = lower.find(b"\r\n", at)
    return int(lower[at + 15:stop if stop > 0 else None])


def _ws(port: int, count: int) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                     f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(4096)
        assert data.startswith(b"HTTP/1.1 101"), data[:80]
        mask = b"\x01\x02\x03\x04"
        payload = bytes(range(64))
        frame = b"\x82\xc0" + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        for _ in range(count):
            sock.sendall(frame)
            got = 0
            while got < 66:
                got += len(sock.recv(4096))


def _nginx_config(workdir: str, port: int, backend: int, tls: bool) -> str:
    """bench.configs' nginx location, in one process that serves (master_process off)."""
    path = os.path.join(workdir, "nginx.conf")
    listen = (f"listen 127.0.0.1:{port} ssl;\n        ssl_certificate {workdir}/cert-ec.pem;\n"
              f"        ssl_certificate_key {workdir}/key-ec.pem;\n        ssl_protocols TLSv1.2 TLSv1.3;"
              if tls else f"listen 127.0.0.1:{port};")
    temp = " ".join(f"{kind}_temp_path {workdir}/nginx-tmp/{kind};"
                    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    with open(path, "w") as f:
        f.write(f"""worker_processes 1;
master_process off;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    {temp}
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
    upstream backend {{ server 127.0.0.1:{backend}; keepalive 256; }}
    map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
    server {{
        {listen}
{NGINX_LOCATION}    }}
}}
""")
    return path


def _command(peer: str, workdir: str, port: int, backend: int, tls: bool, access_log: bool,
             extra: str) -> list[str]:
    if peer == "nginx":
        os.makedirs(os.path.join(workdir, "nginx-tmp"), exist_ok=True)
        return ["nginx", "-c", _nginx_config(workdir, port, backend, tls), "-p", workdir]
    if peer == "floor":
        return [procs.python(), "-m", "bench.floor", "--port", str(port), "--backend-port", str(backend),
                "--workers", "1"]
    return [procs.python(), "-m", "mpm", "start", "-c", _config(workdir, port, backend, tls, access_log, extra)]


def wait_until_serving(proc: subprocess.Popen, port: int, tls: bool, timeout: float, what: str) -> None:
    """Until one request is answered on `port` (that one is in both runs of a figure: it cancels)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _tls(port, 1, False) if tls else _http(port, 1)
            return
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.3)


def _run(src: str, workdir: str, backend: int, kind: str, count: int, access_log: bool = False,
         extra: str = "", peer: str = "mpm", clients: int = 1, by_library: bool = False):
    """Instructions of the worker (nginx: of its one process) over a whole run of `count` units;
    with `by_library`, (that, {library: its instructions}) (`libraries`)."""
    out = os.path.join(workdir, f"cg-{peer}-{kind}-{count}")
    os.makedirs(out)
    port = procs.free_port()
    tls = kind.startswith("tls")
    command = _command(peer, workdir, port, backend, tls, access_log, extra)
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/callgrind.out.%p", "-q",
                             *command], cwd=src, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_serving(proc, port, tls, 120, "mpm under valgrind")
        if tls:
            _tls(port, count, kind == "tls-resumed")
        elif kind == "http" and clients > 1:
            _http_clients(port, count, clients)
        else:
            (_http if kind == "http" else _ws)(port, count)
    finally:
        if peer == "nginx" and proc.poll() is None:
            # Under valgrind, nginx's epoll_wait sleeps through SIGTERM; a connection wakes it.
            proc.terminate()
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
        procs.stop(proc, timeout=120)
    totals = {}
    for name in os.listdir(out):
        pid = int(name.rsplit(".", 1)[1])
        with open(os.path.join(out, name)) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    totals[pid] = (int(line.split()[1]), os.path.join(out, name))
                    break
    workers = [found for pid, found in totals.items() if pid != proc.pid or peer == "nginx"]
    if len(workers) != 1:
        raise RuntimeError(f"expected one worker's profile, found {len(workers)}")
    total, path = workers[0]
    return (total, libraries(path)) if by_library else total


def libraries(path: str) -> dict[str, int]:
    """A callgrind profile's instructions by the file that ran them (libcrypto.so.3,
    libpython3.11.so.1.0, nginx, ...), from `callgrind_annotate`'s lines per function, which
    end with the file in brackets    (`--threshold=100`: every function that ran)."""
    out = subprocess.run(["callgrind_annotate", "--threshold=100", path], capture_output=True, text=True,
                         timeout=300, check=True).stdout
    found: dict[str, int] = {}
    for line in out.splitlines():
        match = _ANNOTATED.match(line)
        if match:
            name = os.path.basename(match.group(2))
            found[name] = found.get(name, 0) + int(match.group(1).replace(",", ""))
    return found


_ANNOTATED = re.compile(r"\s*([\d,]+)\s.*\[(.+)\]\s*$")


def measure(src: str, requests: int, messages: int, connections: int = 0, access_log: bool = False,
            extra: str = "", peer: str = "mpm", clients: int = 1, by_library: bool = False) -> dict:
    workdir = tempfile.mkdtemp(prefix="mpm-instructions-")
    backend_proc, backend = start_backend(workdir, 1)
    make_cert(workdir, "ec")
    units = [(kind, count, unit) for kind, count, unit in
             (("http", requests, "request"), ("ws", messages, "message"),
              ("tls-full", connections, "tls_full_connection"), ("tls-resumed", connections, "tls_resumed_connection"))
             if count]
    try:
        figures = {}
        for kind, count, unit in units:
            few = max(count // 5, 1)
            if not count:
                continue
            low = _run(src, workdir, backend, kind, few, access_log, extra, peer, clients, by_library)
            high = _run(src, workdir, backend, kind, count + few, access_log, extra, peer, clients, by_library)
            if by_library:
                (low, low_by), (high, high_by) = low, high
                per_unit = {name: round((high_by[name] - low_by.get(name, 0)) / count) for name in high_by}
                figures[f"libraries_per_{unit}"] = dict(sorted(((n, v) for n, v in per_unit.items() if v),
                                                               key=lambda item: -item[1]))
            figures[f"instructions_per_{unit}"] = round((high - low) / count)
        measured = {"mpm": os.path.abspath(src), "floor": "bench/floor.py"}.get(peer) or tools.which("nginx")
        return {"peer": peer, "src": measured, "requests": requests, "messages": messages,
                "connections": connections, "clients": clients, "access_log": access_log, "extra": extra,
                **figures}
    finally:
        procs.stop(backend_proc)
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000, help="S1 requests counted (default 2000)")
    ap.add_argument("--messages", type=int, default=2000, help="S3 messages counted (default 2000)")
    ap.add_argument("--access-log", action="store_true", help="with the access log on (to a file)")
    ap.add_argument("--connections", type=int, default=0,
                    help="TLS connections counted, full and resumed (default 0: not measured)")
    ap.add_argument("--clients", type=int, default=1,
                    help="S1 requests on this many connections at once (default 1: one at a time; see above)")
    ap.add_argument("--peer", choices=("mpm", "nginx", "floor"), default="mpm",
                    help="whose instructions: mpm's worker (default), nginx's one process, or the Python "
                    "floor's worker (bench/floor.py)")
    ap.add_argument("--src", default=os.path.dirname(HERE), help="checkout whose mpm is measured (default: this one)")
    ap.add_argument("--by-library", action="store_true",
                    help="also each figure by the file whose code ran it (libcrypto, libpython, nginx, ...)")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--extra", default="", help="YAML appended to the config (e.g. 'limits: {per_client: ...}'); "
                    "0 requests or messages skips that figure")
    opts = ap.parse_args(argv)
    if not tools.which("valgrind"):
        print("python -m bench.instructions: skipped: valgrind is not installed (apt-get install valgrind)",
              file=sys.stderr)
        return 2
    if opts.peer == "nginx" and not tools.which("nginx"):
        print("python -m bench.instructions: skipped: nginx is not installed", file=sys.stderr)
        return 2
    if opts.peer == "floor" and opts.connections:
        ap.error("the floor has no TLS: --connections needs --peer mpm or nginx")
    result = measure(opts.src, opts.requests, opts.messages, opts.connections, opts.access_log, opts.extra,
                     opts.peer, max(1, opts.clients), opts.by_library)
    print(json.dumps(result, indent=1))
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
