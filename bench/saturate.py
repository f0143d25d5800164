"""python -m bench.saturate [--rounds N] [--duration S] [--conns N] [--perf] PEER...

One process of each peer, saturated by `wrk -t1 -c64 -H 'Connection: close'` over https (ECDSA
P-256, TLS 1.3, every connection after the first resumed): the CPU the serving process spends
per new TLS connection, from /proc, rounds interleaved.  Issue #20's figure, with one worker:
python -m bench's S7c runs two per peer beside a two-thread wrk on this 2-core machine, where
handshakes per second swing with who gets the cores; a saturated single process is steadier.

Peers: `mpm` (one worker of this tree; `mpm@DIR`: of the tree in DIR, its C modules built
there, for an A/B in one run; `mpm+PYTHON`, `mpm@DIR+PYTHON`: run by that interpreter, a
Debian venv's say, whose 3.11 loads the same C modules), `nginx` (worker_processes 1), `floor-tls`
(bench/floor_tls.py: the least a Python proxy does through CPython's ssl objects), `floor-c`
and `floor-c0` (bench/floor_c.py: a connection owned by C, with the per-request Python of
today's keep-alive lane, or with none).  `--perf` records 5 s of each with perf and prints
the share of each library.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

from bench import procs
from bench.certs import make_cert
from bench.runner import start_backend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _mpm_conf(work: str, port: int, backend: int, python: str) -> list[str]:
    conf = os.path.join(work, "mpm.yaml")
    with open(conf, "w") as f:
        f.write(f'listen: [{{address: "127.0.0.1:{port}", tls: {{cert: "{work}/cert-ec.pem", key: "{work}/key-ec.pem"}}}}]\n'
                "mpm: {workers: 1}\n"
                f'control: {{pidfile: "{work}/mpm.pid", socket: "{work}/mpm.sock"}}\n'
                f'log: {{level: warning, access: "off", error: "{work}/mpm-error.log"}}\n'
                f'routes:\n  - {{path: /, to: "http://127.0.0.1:{backend}/"}}\n')
    return [python, "-m", "mpm", "start", "-c", conf]


def _nginx_conf(work: str, port: int, backend: int) -> list[str]:
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"worker_processes 1; daemon off; master_process on; pid {work}/nginx.pid; "
                f"error_log {work}/nginx-error.log;\nevents {{ worker_connections 4096; }}\n"
                f"http {{ access_log off; upstream b {{ server 127.0.0.1:{backend}; keepalive 64; }}\n"
                f"server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {work}/cert-ec.pem; "
                f"ssl_certificate_key {work}/key-ec.pem; ssl_protocols TLSv1.2 TLSv1.3;\n"
                ' location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection ""; } } }\n')
    return ["nginx", "-c", conf, "-p", work]


def command(peer: str, work: str, port: int, backend: int) -> list[str]:
    if peer.split("@")[0].split("+")[0] == "mpm":
        return _mpm_conf(work, port, backend, peer.partition("+")[2] or sys.executable)
    if peer == "nginx":
        return _nginx_conf(work, port, backend)
    files = ["--port", str(port), "--backend-port", str(backend),
             "--cert", f"{work}/cert-ec.pem", "--key", f"{work}/key-ec.pem"]
    if peer == "floor-tls":
        return [sys.executable, "-m", "bench.floor_tls", *files]
    if peer in ("floor-c", "floor-c0"):
        return [sys.executable, "-m", "bench.floor_c", *files, "--python", "none" if peer == "floor-c0" else "product"]
    raise SystemExit(f"unknown peer {peer!r}")


def serving_pid(peer: str, proc: subprocess.Popen, port: int) -> int | None:
    """The process that serves: the one worker of mpm and nginx, the floors themselves."""
    for _ in range(150):
        time.sleep(0.1)
        if proc.poll() is not None:
            return None
        if peer.startswith("floor"):
            kids = [str(proc.pid)]
        else:
            kids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        if kids and procs.wait_port(port, timeout=0.2):
            return int(kids[0])
    return None


def measure(peer: str, work: str, backend: int, args, turn: int) -> str:
    port = procs.free_port()
    tree = peer.partition("@")[2].partition("+")[0]
    label = peer.replace("/", "_")
    err = os.path.join(work, f"{label}.{turn}.err")
    env = dict(os.environ, PYTHONPATH=tree or ROOT)
    proc = subprocess.Popen(command(peer, work, port, backend), env=env, cwd=work, stdout=subprocess.DEVNULL,
                            stderr=open(err, "w"))
    try:
        pid = serving_pid(peer, proc, port)
        if pid is None:
            return f"{peer}: did not start ({err})"
        wrk = ["wrk", "-t1", f"-c{args.conns}", "-H", "Connection: close", f"https://127.0.0.1:{port}/small"]
        subprocess.run([*wrk[:1], "-d2s", *wrk[1:]], capture_output=True)        # warm up, sessions made
        before = cpu_seconds(pid)
        load = subprocess.Popen([wrk[0], f"-d{args.duration}s", *wrk[1:]], stdout=subprocess.PIPE, text=True)
        if args.perf:
            time.sleep(1)
            subprocess.run(["perf", "record", "-F", "2000", "-o", os.path.join(work, f"{label}.perf"), "-p", str(pid),
                            "--", "sleep", str(max(1, args.duration - 3))], capture_output=True)
        out = load.communicate()[0]
        spent = cpu_seconds(pid) - before
        found = re.search(r"(\d+) requests in", out)
        if not found or not int(found.group(1)):
            return f"{peer}: no requests ({err}; wrk: {out.strip()[-120:]})"
        done = int(found.group(1))
        line = f"{peer:10s} {done / args.duration:7.0f} conn/s {spent / done * 1e6:7.1f} us/conn"
        return line + (_libraries(os.path.join(work, f"{label}.perf"), spent / done * 1e6) if args.perf else "")
    finally:
        procs.stop(proc)


def _libraries(path: str, per_conn: float) -> str:
    out = subprocess.run(["perf", "report", "-i", path, "--sort", "dso", "--stdio"], capture_output=True, text=True).stdout
    shares = re.findall(r"^\s+([\d.]+)%\s+(\S+)", out, re.M)
    return "  " + ", ".join(f"{name.split('.so')[0].strip('[]')} {float(share) * per_conn / 100:.0f}"
                            for share, name in shares[:6])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("peers", nargs="+")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8, help="seconds of load per measurement")
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--perf", action="store_true")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="saturate.")
    make_cert(work, "ec")
    print(f"logs and perf records in {work}", flush=True)
    backend, backend_port = start_backend(work, 1)
    try:
        for turn in range(args.rounds):
            for peer in args.peers:
                print(f"round {turn} {measure(peer, work, backend_port, args, turn)}", flush=True)
    finally:
        procs.stop(backend)


if __name__ == "__main__":
    main()
