"""Checked: wrk (64 keep-alive connections, plain; 32 over TLS) through 15 SIGHUPs 0.6 s apart,
a burst of 3 x 20 SIGHUPs 50 ms apart, and two `mpmctl upgrade`s: socket errors, non-2xx,
access-log lines by status, master fds/RSS before and after."""
import collections
import os
import signal
import subprocess
import sys
import time

import _path  # noqa: F401
import psutil
from h import bench, proxy


def wrk(p, url, seconds, action, connections=64):
    load = subprocess.Popen(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", url], stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    action(p)
    out = load.communicate()[0]
    time.sleep(1.5)
    lines = p.access_lines()
    summary = [line.strip() for line in out.splitlines() if "requests in" in line or "Socket errors" in line
               or "Non-2xx" in line]
    statuses = collections.Counter(line.split('"')[2].split()[0] for line in lines)
    return summary, len(lines), dict(statuses)


def sighups(n, gap):
    def act(p):
        for _ in range(n):
            os.kill(p.proc.pid, signal.SIGHUP)
            time.sleep(gap)
    return act


def bursts(p):
    for _ in range(3):
        sighups(20, 0.05)(p)
        time.sleep(2)


def upgrades(p):
    for _ in range(2):
        print("  ", p.mpmctl("upgrade", timeout=60).stdout.strip())
        time.sleep(1)


mode = sys.argv[1] if len(sys.argv) > 1 else "all"
with bench() as backend:
    route = [{"path": "/", "to": f"http://127.0.0.1:{backend.port}/"}]
    if mode in ("all", "plain"):
        with proxy(route, workers=2) as p:
            master = psutil.Process(p.proc.pid)
            before = (master.num_fds(), master.memory_info().rss >> 10)
            print("15 reloads:", *wrk(p, p.url("/small"), 12, sighups(15, 0.6)))
            print("3x20 burst:", *wrk(p, p.url("/small"), 12, bursts))
            print("master fds/RSS KiB before", before, "after", (master.num_fds(), master.memory_info().rss >> 10),
                  "generation", p.status()["generation"])
    if mode in ("all", "upgrade"):
        with proxy(route, workers=2) as p:
            print("2 upgrades:", *wrk(p, p.url("/small"), 10, upgrades))
    if mode in ("all", "tls"):
        import trustme
        from support import cert_files
        with proxy(route, workers=2, start=False) as p:
            cert, key = cert_files(trustme.CA(), p.dir, "localhost", "127.0.0.1")
            p.config["listen"] = [{"address": f"127.0.0.1:{p.port}", "tls": {"cert": cert, "key": key}}]
            p.start()
            print("TLS, 12 reloads:", *wrk(p, p.url("/small", "https"), 12, sighups(12, 0.7), 32))
            totals = p.status()["totals"]
            print("   TLS handshakes full/resumed:", totals["tls_full"], totals["tls_resumed"])
