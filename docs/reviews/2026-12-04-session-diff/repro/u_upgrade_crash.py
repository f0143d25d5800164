"""mpmctl upgrade whose new master is SIGKILLed before the hand-over (and one that is killed
right after it): what stays in run/, and is the surviving master still reachable by mpmctl?"""
import os, signal, subprocess, sys, time, psutil
from common import start, get, HttpBackend, ROOT

def files(p):
    return sorted(os.listdir(os.path.join(p.dir, "run")))

b = HttpBackend()
p = start([{"path": "/", "to": b.url + "/"}], workers=1)
try:
    for delay in (0.15, 0.4, 0.8):
        old = int(open(os.path.join(p.dir, "run/mpm.pid")).read())
        up = subprocess.Popen([sys.executable, "-m", "mpm", "upgrade", "-c", p.config_path], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        new = None
        t = time.monotonic()
        while new is None and time.monotonic() - t < 10:
            kids = [c for c in psutil.Process(old).children() if "start" in " ".join(c.cmdline()) or "mpm" in " ".join(c.cmdline())]
            kids = [c for c in kids if "worker" not in " ".join(c.cmdline()).lower()]
            new = kids[-1].pid if kids and kids[-1].pid != old else None
            time.sleep(0.01)
        time.sleep(delay)
        print(f"kill new master {new} {delay}s after it appeared; run/ before: {files(p)}")
        os.kill(new, signal.SIGKILL)
        out, err = up.communicate(timeout=120)
        time.sleep(1)
        pid = open(os.path.join(p.dir, "run/mpm.pid")).read().strip()
        st = p.mpmctl("status")
        print(f"  upgrade rc={up.returncode} out={out.strip()[:100]!r} err={err.strip()[:160]!r}\n  run/: {files(p)} pidfile={pid} (old {old}) alive={psutil.pid_exists(int(pid))} status rc={st.returncode}", flush=True)
        try: print("  GET", get(p, b'/')[0])
        except OSError as e:
            print("  GET failed:", e); break
finally:
    print("final stop rc", p.mpmctl("stop", timeout=60).returncode, "run/:", files(p))
