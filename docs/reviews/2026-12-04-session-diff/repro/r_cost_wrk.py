"""Worker CPU per request with and without the regex timer (real processes, wrk keep-alive).
Config A: prefix routes only (untimed).  Config B: the same plus a `match:` route placed last,
never reached by these requests: the routing work is identical, only the timer differs."""
import os, subprocess, tempfile, time
from common import start
from backends import BenchBackend


def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


be = BenchBackend(tempfile.mkdtemp())
base = [{"path": "/", "to": f"http://127.0.0.1:{be.port}/"}]
for name, routes in [("A prefix only", base), ("B + unreached match", base + [{"match": "^/zz/(.*)$", "to": f"http://127.0.0.1:{be.port}/$1"}]),
                     ("A prefix only", base), ("B + unreached match", base + [{"match": "^/zz/(.*)$", "to": f"http://127.0.0.1:{be.port}/$1"}])]:
    p = start(routes, workers=1, log={"level": "warning", "access": "/dev/null"})
    try:
        [w] = p.worker_pids()
        subprocess.run(["wrk", "-t1", "-c8", "-d2s", p.url("/")], capture_output=True)
        c0 = cpu(w)
        out = subprocess.run(["wrk", "-t1", "-c8", "-d6s", p.url("/")], capture_output=True, text=True).stdout
        c1 = cpu(w)
        reqs = int([l for l in out.splitlines() if "requests in" in l][0].split()[0])
        print(f"{name:22} {reqs/6:8.0f} req/s  worker CPU {1e6*(c1-c0)/reqs:6.1f} us/request")
    finally:
        p.stop()
be.close()
