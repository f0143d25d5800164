"""r02: a valid configuration with many routes takes time quadratic in the number of routes to check
(conf/routes.py _check_shadowed compares every route with every earlier one), on every start,
configtest and reload, in the master's loop; `mpmctl reload` pays it twice (it checks the file itself,
then the master does).

Steps: start a master; rewrite its config with 6,000 distinct prefix routes (valid, accepted); time
`mpmctl configtest`; time `mpmctl reload`; during a SIGHUP reload, time a status request on the
control socket.  PASS when each takes under 2 s (nginx -t with 6,000 locations: well under 1 s)."""
import os
import signal
import threading
import time

import yaml
from _common import HttpBackend, Proxy, get, verdict, workdir
from mpm import control

N = 6000
backend = HttpBackend()
proxy = Proxy(workdir(), [{"path": "/", "to": backend.url + "/"}], workers=1)
try:
    proxy.start()
    config = dict(proxy.config)
    config["routes"] = [{"path": f"/r{i}x", "to": backend.url + "/"} for i in range(N)] + \
                       [{"path": "/", "to": backend.url + "/"}]
    with open(proxy.config_path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    print(f"config: {N + 1} routes, {os.path.getsize(proxy.config_path)} bytes")
    t0 = time.monotonic()
    r = proxy.mpmctl("configtest", timeout=300)
    configtest = time.monotonic() - t0
    print(f"mpmctl configtest: {configtest:.1f} s, rc {r.returncode} {r.stdout.strip()}")
    t0 = time.monotonic()
    r = proxy.mpmctl("reload", timeout=300)
    reload_time = time.monotonic() - t0
    print(f"mpmctl reload: {reload_time:.1f} s, rc {r.returncode} {(r.stdout + r.stderr).strip()[:150]}")
    os.kill(proxy.proc.pid, signal.SIGHUP)
    time.sleep(0.3)
    t0 = time.monotonic()
    control.request(os.path.join(proxy.dir, "run", "mpm.sock"), {"cmd": "status"}, timeout=120)
    status_time = time.monotonic() - t0
    print(f"status on the control socket 0.3 s after SIGHUP: answered after {status_time:.1f} s")
    print("serving after:", get(proxy, "/r5999x")[:12])
finally:
    proxy.stop()
verdict(max(configtest, reload_time, status_time) < 2,
        f"{N} routes: configtest {configtest:.1f} s, reload {reload_time:.1f} s, master blocked {status_time:.1f} s")
