"""`mpmctl upgrade` when the interpreter the master runs is gone (a virtualenv rebuilt or
removed under a running server): the exec fails in the old master.  The contract: it fails
cleanly, the old master serves on, mpmctl says why, and nothing is left behind."""
import os, shutil, subprocess, sys, tempfile
HERE = os.path.dirname(os.path.abspath(__file__))
if not os.environ.get("R03_FAKE"):
    venv = os.path.join(os.path.dirname(HERE), "..", "..", "..", ".venv")
    venv = os.path.abspath(venv)
    fake = tempfile.mkdtemp(prefix="upg-venv-")
    os.makedirs(os.path.join(fake, "bin"))
    os.symlink(os.path.realpath(os.path.join(venv, "bin", "python")), os.path.join(fake, "bin", "python"))
    shutil.copy(os.path.join(venv, "pyvenv.cfg"), fake)
    os.symlink(os.path.join(venv, "lib"), os.path.join(fake, "lib"))
    try:
        rc = subprocess.call([os.path.join(fake, "bin", "python"), __file__],
                             env={**os.environ, "R03_FAKE": fake, "R03_REAL": os.path.join(venv, "bin", "python")})
    finally:
        shutil.rmtree(fake, ignore_errors=True)
    sys.exit(rc)

from h import *  # noqa
from h import ROOT
b = backend()
p = proxy([{"path": "/", "to": b.url + "/"}], workers=1)
old = p.proc.pid
fds_before = fds(old)
os.unlink(os.path.join(os.environ["R03_FAKE"], "bin", "python"))       # the interpreter is gone
real = os.environ["R03_REAL"]
r = subprocess.run([real, "-m", "mpm", "upgrade", "-c", p.config_path], cwd=ROOT, capture_output=True, text=True,
                   timeout=60)
print("mpmctl upgrade ->", r.returncode, (r.stdout + r.stderr).strip())
st = subprocess.run([real, "-m", "mpm", "status", "--json", "-c", p.config_path], cwd=ROOT, capture_output=True,
                    text=True, timeout=10)
import json
status = json.loads(st.stdout) if st.returncode == 0 else {}
print("status state:", status.get("state"), "upgrading_to:", status.get("upgrading_to"))
print("old master fds before/after:", fds_before, fds(old), "run/:", run_files(p))
print("serves:", get(p.url("/")))
err = p.error_text()
print("error log says:", [l for l in err.splitlines() if "upgrade" in l.lower() or "Traceback" in l][-3:])
clear = "python" in (r.stderr + r.stdout).lower() or "no such file" in (r.stderr + r.stdout).lower()
ok = (r.returncode != 0 and status.get("state") == "running" and status.get("upgrading_to") is None
      and get(p.url("/"))[0] == 200 and fds(old) == fds_before and clear)
result(ok, "an upgrade whose exec fails fails cleanly and mpmctl says why")
# the Proxy's stop uses the deleted interpreter: stop through the real one
subprocess.run([real, "-m", "mpm", "stop", "-c", p.config_path], cwd=ROOT, capture_output=True, timeout=30)
