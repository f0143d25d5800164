"""README 'Hot upgrade' paragraph, last sentences: after the control paths change in the file,
mpmctl finds the master serving the file by its process title and signals it (reload: SIGHUP,
stop: SIGTERM), saying so on stderr; `mpmctl reload -c OTHER` is refused and names the file."""
import os, shutil, subprocess, sys, tempfile, time
sys.path.insert(0, "/work/main/tests")
import yaml
from backends import HttpBackend
from proxyproc import Proxy

def ctl(*args, config):
    r = subprocess.run([sys.executable, "-m", "mpm", *args, "-c", config], capture_output=True, text=True,
                       timeout=60, cwd="/work/main")
    print(f"$ mpmctl {' '.join(args)} -c {os.path.basename(config)}  -> rc {r.returncode}\n  stdout: {r.stdout.strip()!r}\n  stderr: {r.stderr.strip()!r}")
    return r

backend = HttpBackend()
d = tempfile.mkdtemp(prefix="rev-readme-ctl-")
p = Proxy(d, [{"path": "/", "to": backend.url + "/"}], workers=1)
try:
    p.start()
    other = os.path.join(d, "other.yaml")
    shutil.copy(p.config_path, other)           # another file, same control paths
    ctl("reload", config=other)
    p.config["control"] = {"pidfile": "run2/mpm.pid", "socket": "run2/mpm.sock"}
    p.write_config()
    ctl("status", config=p.config_path)
    ctl("reload", config=p.config_path)
    time.sleep(2)
    print("  master's log:", [l for l in p.error_text().splitlines() if "reload" in l.lower() or "generation" in l][-3:])
    ctl("reload", config=other)
    ctl("upgrade", config=p.config_path)
    ctl("stop", config=p.config_path)
    print("master exit code:", p.proc.wait(30))
finally:
    p.stop(); backend.close()
