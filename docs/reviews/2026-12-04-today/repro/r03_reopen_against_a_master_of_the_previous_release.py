"""`mpmctl reopen` (new) against a master still running the previous release (a406ab1: the
package was upgraded, `mpmctl upgrade` not run yet -- the usual state when the nightly
logrotate runs the README's `postrotate mpmctl reopen`):
  (a) the master answers {"ok": false, "errors": ["unknown command 'reopen'"]}; mpmctl prints
      "logs reopened (0 workers told)" (and exits 1): it says the logs were reopened, they were not;
  (b) when the control socket does not answer (here: the control paths were edited in the file,
      the case `_master_pid` handles with "signalled instead"), the fallback is SIGUSR2, which a
      master of that release does not handle: the default action kills it, and its workers
      exit when they see it gone -- an outage from a log rotation.
Needs /tmp/review-base (a406ab1, conf/*.so copied) for the old master and /tmp/review-today for mpmctl."""
import os
import subprocess
import sys
import time

os.environ["MPM_ROOT"] = "/tmp/review-base"         # the proxy of the previous release
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _h import RawBackend, proxy  # noqa: E402
import yaml  # noqa: E402

NEW = "/tmp/review-today"


def new_mpmctl(*args):
    return subprocess.run([sys.executable, "-m", "mpm", *args, "-c", p.config_path], capture_output=True,
                          text=True, timeout=30, cwd=NEW)


be = RawBackend()
p = proxy([{"path": "/", "to": be.url + "/"}], workers=1)
workers = p.worker_pids()
a = new_mpmctl("reopen")
print("(a) rc", a.returncode, "stdout:", a.stdout.strip(), "| stderr:", a.stderr.strip())
cfg = yaml.safe_load(open(p.config_path))
cfg["control"] = {"pidfile": "run2/mpm.pid", "socket": "run2/mpm.sock"}     # edited for the next start
with open(p.config_path, "w") as f:
    yaml.safe_dump(cfg, f)
b = new_mpmctl("reopen")
print("(b) rc", b.returncode, "stdout:", b.stdout.strip(), "| stderr:", b.stderr.strip()[:200])
time.sleep(3)
alive = p.proc.poll() is None
print("old master alive after the reopen:", alive, "returncode", p.proc.returncode)
print("its worker alive:", [os.path.exists(f"/proc/{w}") and "zombie" not in open(f"/proc/{w}/status").read()
                            for w in workers])
p.stop()
be.closing = True
be.sock.close()
bad = "logs reopened" in a.stdout or not alive
print("REPRODUCED" if bad else "not reproduced")
sys.exit(1 if bad else 0)
