"""r04: control.socket naming an existing regular file is unlinked and replaced by the socket
at start: a typo pointing it at the pidfile (both `run/mpm.pid`) loses the pidfile (mpmctl then
finds no master), pointing it at the config file deletes the config.  configtest says Syntax OK."""
import os, time
from h import proxy, Proxy, Backend
import tempfile

for name, control in (("socket = pidfile", {"pidfile": "run/mpm.pid", "socket": "run/mpm.pid"}),
                      ("socket = the config file", {"pidfile": "run/mpm.pid", "socket": "mpm.yaml"})):
    b = Backend()
    p = Proxy(tempfile.mkdtemp(prefix="ctl-repro-"), [{"path": "/", "to": b.url + "/"}], workers=1, control=control)
    p.write_config()
    ct = p.mpmctl('configtest')
    print(f"[{name}] configtest: {(ct.stdout + ct.stderr).strip()[-150:]}")
    import subprocess, sys
    from support import ROOT
    p.stdout = open(os.path.join(p.dir, "stdout.log"), "wb")
    p.stderr = open(os.path.join(p.dir, "stderr.log"), "wb")
    p.proc = subprocess.Popen([sys.executable, "-m", "mpm", "start", "-c", p.config_path],
                              stdout=p.stdout, stderr=p.stderr, cwd=ROOT)
    p.seen_pids.add(p.proc.pid)
    time.sleep(2.0)
    print(f"[{name}] master alive: {p.proc.poll() is None}; config file exists: {os.path.exists(p.config_path)}; "
          f"run/ holds {sorted(os.listdir(os.path.join(p.dir, 'run'))) if os.path.isdir(os.path.join(p.dir, 'run')) else '-'}")
    if os.path.exists(p.config_path):
        r = p.mpmctl("status")
        print(f"[{name}] mpmctl status rc={r.returncode} {r.stderr.strip()[:100]}")
    p.stop()
