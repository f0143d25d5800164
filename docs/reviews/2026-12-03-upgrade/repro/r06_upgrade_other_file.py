"""`mpmctl upgrade -c OTHER.yaml` where OTHER names the same control paths as the running
master's file: mpmctl validates OTHER, the master re-execs with its *own* file, and mpmctl
says "upgraded" - for a file it never loaded.  `mpmctl reload -c OTHER` is refused in the
same situation (reloading.other_file, review 2026-12-03-reload #7); upgrade sends no file."""
import os, subprocess, sys, yaml
from h import *  # noqa
from h import ROOT

a = backend(b"from-A"); bb = backend(b"from-B")
p = proxy([{"path": "/", "to": a.url + "/"}], workers=1)
other_dir = tmpdir()
other = os.path.join(other_dir, "other.yaml")
cfg = dict(p.config)
cfg["routes"] = [{"path": "/", "to": bb.url + "/"}]
cfg["control"] = {"pidfile": os.path.join(p.dir, "run", "mpm.pid"), "socket": os.path.join(p.dir, "run", "mpm.sock")}
with open(other, "w") as f:
    yaml.safe_dump(cfg, f, sort_keys=False)
r = subprocess.run([sys.executable, "-m", "mpm", "upgrade", "-c", other], cwd=ROOT, capture_output=True, text=True,
                   timeout=60)
track(p, pidfile(p))
print("mpmctl upgrade -c OTHER ->", r.returncode, (r.stdout + r.stderr).strip())
served = get(p.url("/"))
print("now serves:", served)
ok = (r.returncode != 0 and p.config_path in r.stderr) or served[1] == b"from-B"
result(ok, "upgrade -c OTHER either serves OTHER or is refused naming the file the master serves")
subprocess.run([sys.executable, "-m", "mpm", "stop", "-c", p.config_path], cwd=ROOT, capture_output=True, timeout=30)
