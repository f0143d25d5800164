"""r07: after a master died without cleaning up (SIGKILL, OOM killer), its pidfile names a pid
the system may give to any process.  pid_alive() accepted any process with "mpm" anywhere in
its command line (`tail -f /var/log/mpm/error.log`, `vim /etc/mpm/mpm.yaml`), so `mpmctl
start` refused to start ("already running") and `mpmctl stop` sent that process SIGTERM.
On the parent: start refused, stop kills the stranger.  Fixed: the master starts over the
stale pidfile, stop stops it, the stranger lives."""
import atexit, os, subprocess, sys, tempfile, time
from h import Backend, Proxy

b = Backend()
p = Proxy(tempfile.mkdtemp(prefix="ctl-repro-"), [{"path": "/", "to": b.url + "/"}], workers=1)
atexit.register(p.stop)
stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "/var/log/mpm/error.log"])
os.makedirs(os.path.join(p.dir, "run"), exist_ok=True)
with open(os.path.join(p.dir, "run", "mpm.pid"), "w") as f:
    f.write(f"{stranger.pid}\n")
try:
    p.start()
    print(f"mpmctl start over the stale pidfile: started, master {p.proc.pid}")
except AssertionError as exc:
    print(f"mpmctl start over the stale pidfile: refused ({str(exc)[-100:].strip()})")
r = p.mpmctl("stop", timeout=30)
time.sleep(0.3)
print(f"mpmctl stop: rc={r.returncode} {(r.stdout + r.stderr).strip()[:120]}; "
      f"the stranger (pid {stranger.pid}) {'was KILLED by signal ' + str(-stranger.poll()) if stranger.poll() is not None else 'lives'}")
if stranger.poll() is None:
    stranger.kill()
stranger.wait()
