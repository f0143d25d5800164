"""Finding 1, second trigger: the master's descriptors run out inside the commit (here:
balancers.configure's memfd, right after listeners.prepare bound the new slots' sockets).
The reload fails after `master.config` was replaced (status reports 4 workers, 2 run), and
the sockets prepare bound stay listening in the master, in the listeners' SO_REUSEPORT group,
with nobody accepting: part of the new connections hang until some later reload succeeds.

The master's soft RLIMIT_NOFILE is lowered (prlimit) to what it holds plus the control connection of mpmctl and the two sockets
the reload binds.  PASS when a failed reload leaves the master as it was (config, sockets)
and every new connection is answered."""

import os
import subprocess
import sys
import time

import h
import psutil


def listening(pid):
    return len([c for c in psutil.Process(pid).net_connections("tcp") if c.status == "LISTEN"])


def main() -> int:
    b = h.backend()
    p = h.proxy([{"path": "/", "to": b.url}], workers=2)
    mp = p.proc.pid
    time.sleep(0.5)
    before = listening(mp)
    highest = max(int(x) for x in os.listdir(f"/proc/{mp}/fd"))
    hard = psutil.Process(mp).rlimit(psutil.RLIMIT_NOFILE)[1]
    subprocess.run(["prlimit", f"--pid={mp}", f"--nofile={highest + 1 + 3}:{hard}"], check=True)
    p.config["mpm"]["workers"] = 4
    p.write_config()
    r = p.reload()
    subprocess.run(["prlimit", f"--pid={mp}", f"--nofile={hard}:{hard}"], check=True)
    print(f"mpmctl reload: exit {r.returncode}: {(r.stdout + r.stderr).strip()}")
    print("error log:", p.error_text().strip().splitlines()[-1])
    st = p.status()
    running = [w for w in st["workers"] if w["generation"] == st["generation"]]
    print(f"status: generation {st['generation']}, config workers {st['mpm']['workers']}, {len(running)} running")
    now = listening(mp)
    print(f"listening sockets in the master: {before} before, {now} after the failed reload")
    answered = sum(h.get(p.url(f"/n{i}"), timeout=1)[0] == 200 for i in range(40))
    print(f"40 new connections: {answered} answered")
    ok = answered == 40 and now == before and st["mpm"]["workers"] == 2
    h.result(ok, "a reload that fails inside its commit leaves the master as it was and every connection answered")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
