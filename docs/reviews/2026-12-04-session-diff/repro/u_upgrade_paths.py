"""mpmctl upgrade twice, then stop; and upgrade then SIGKILL of the new master, then start again:
what is left at control.socket / pidfile / staging path, and does each step succeed?"""
import os, signal, subprocess, sys, time
from common import start, get, HttpBackend

def files(p):
    run = os.path.join(p.dir, "run")
    return sorted(os.listdir(run)) if os.path.isdir(run) else []

b = HttpBackend()
p = start([{"path": "/", "to": b.url + "/"}], workers=1)
try:
    for i in range(2):
        r = p.mpmctl("upgrade", timeout=90)
        print(f"upgrade {i+1}: rc={r.returncode} {r.stdout.strip()} {r.stderr.strip()[:200]}")
        print("   run/:", files(p), "pidfile:", open(os.path.join(p.dir, "run/mpm.pid")).read().strip(),
              "status rc:", p.mpmctl("status").returncode, "GET:", get(p, b"/")[0])
    new = int(open(os.path.join(p.dir, "run/mpm.pid")).read())
    r = p.mpmctl("stop", timeout=60)
    time.sleep(1)
    print("stop: rc", r.returncode, r.stderr.strip()[:200], "run/ after:", files(p))
    # crash case: start again (mpmctl start via Popen as Proxy does), kill -9 the master, start again
    p.proc = None
    p.start()
    pid = int(open(os.path.join(p.dir, "run/mpm.pid")).read())
    os.kill(pid, signal.SIGKILL); time.sleep(1.5)
    print("after SIGKILL of master: run/:", files(p))
    p.proc = None
    p.start()
    print("restart after crash: status rc", p.mpmctl("status").returncode, "run/:", files(p))
finally:
    try: p.mpmctl("stop", timeout=60)
    except Exception: pass
