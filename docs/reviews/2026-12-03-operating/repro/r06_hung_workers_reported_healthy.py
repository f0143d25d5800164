"""Workers that stop serving (here SIGSTOP, as a worker stuck in a loop or a blocking call
would) are reported serving: /healthz answers 200 "2 workers serving", /server-status shows
them idle ("_"), `mpmctl status` says "ready", until the watchdog (mpm.watchdog, 30 s by
default) replaces them.  A load balancer probing /healthz keeps sending traffic meanwhile."""
import json
import os
import signal
import time

from h import FastBackend, request, start_proxy

import admin_util

b = FastBackend()
p = start_proxy([{"path": "/", "to": b.url + "/"}], workers=2, admin=admin_util.admin_section())
pids = p.worker_pids()
port = admin_util.admin_port(p)
try:
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    time.sleep(5)
    status, _, body = admin_util.get(port, "/healthz")
    print("/healthz:", status, body.decode().strip())
    auto = admin_util.get(port, "/server-status?auto")[2].decode()
    print("?auto:", [line for line in auto.splitlines() if line.split(":")[0] in ("BusyWorkers", "IdleWorkers",
                                                                                  "Scoreboard")])
    workers = json.loads(p.mpmctl("status", "--json").stdout)["workers"]
    print("mpmctl status:", [(w["pid"], w["state"]) for w in workers])
    print("a request:", request(p.port, "/", timeout=2))
finally:
    for pid in pids:
        os.kill(pid, signal.SIGCONT)
    p.stop()
