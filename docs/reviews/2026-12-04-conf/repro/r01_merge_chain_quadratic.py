"""r01: a chain of YAML merge keys costs time and memory quadratic in the file's size, inside the
master's loop during a reload.

Each mapping merges the previous one and adds one key (`aN: &aN {<<: *aN-1, kN: 0}`).  The loader's
_Walker._merge (conf/yamlnodes.py) builds each merged mapping as a new dict of every key merged so far,
so line N costs N entries: 6,000 lines (230 KB, far under the 4 MiB cap) take seconds and hundreds of
MB, and both grow as the square of the file.  A reload (SIGHUP) reads the file in the master's loop:
for that long the master answers nothing (control socket, respawns, watchdog, admin listener).

Steps: start a master; append the 6,000-line chain to its config (under an unknown top-level key: the
file is rejected in the end, as it should be); SIGHUP; time a status request on the control socket
(mpmctl status would parse the broken file itself first); sample the master's resident memory.
PASS when the master answers within 2 s and grows by less than 100 MiB."""
import json
import os
import signal
import threading
import time

from _common import HttpBackend, Proxy, get, verdict, workdir
from mpm import control

N = 6000
backend = HttpBackend()
proxy = Proxy(workdir(), [{"path": "/", "to": backend.url + "/"}], workers=1)
try:
    proxy.start()
    good = open(proxy.config_path).read()
    socket_path = os.path.join(proxy.dir, "run", "mpm.sock")
    chain = ["x:", "  a0: &a0 {k0: 0}"] + [f"  a{i}: &a{i} {{<<: *a{i-1}, k{i}: 0}}" for i in range(1, N)]
    with open(proxy.config_path, "w") as f:
        f.write(good + "\n".join(chain) + "\n")
    print(f"config: {os.path.getsize(proxy.config_path)} bytes")

    def rss() -> int:
        with open(f"/proc/{proxy.proc.pid}/statm") as f:
            return int(f.read().split()[1]) * 4096

    base, peak, done = rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()
    os.kill(proxy.proc.pid, signal.SIGHUP)
    time.sleep(0.5)
    t0 = time.monotonic()
    answer = control.request(socket_path, {"cmd": "status"}, timeout=120)
    status_time = time.monotonic() - t0
    time.sleep(0.5)
    done.set()
    with open(proxy.config_path, "w") as f:
        f.write(good)
    refused = [line for line in proxy.error_text().splitlines() if "refused" in line]
    print(f"status on the control socket, 0.5 s after SIGHUP, answered after {status_time:.1f} s "
          f"(generation {answer.get('generation')})")
    print(f"master resident memory: {base >> 20} MiB before, peak {peak[0] >> 20} MiB during the reload")
    print("error log:", refused[-1][-110:] if refused else None)
    print("serving after:", get(proxy, "/")[:12])
finally:
    proxy.stop()
verdict(status_time < 2 and peak[0] - base < 100 << 20,
        f"master unresponsive {status_time:.1f} s and +{(peak[0] - base) >> 20} MiB for a {N}-line merge chain")
