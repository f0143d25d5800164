"""r10: control.pidfile is not checked: a device or someone else's file is accepted by configtest, and
then every mpmctl verb reads it whole, and start overwrites it.

- pidfile: /dev/zero (or /dev/full, /dev/urandom): mpm/pidfile.py read_pid does open(path).read(),
  which never ends on such a device: `mpmctl status` (and start, stop, reload) allocates until the
  memory runs out (here, under `ulimit -v 1500000`, a MemoryError traceback after about 1 s; without a
  limit it takes the machine's memory).
- pidfile naming an existing file that is not a pidfile (here the access log, by a copy-paste slip):
  start truncates it and writes the pid into it.  The loader already refuses the same slip for
  control.socket ("exists and is not a socket: it would be replaced", conf/loader.py
  _check_socket_path) and for pidfile == the config file, not for this.

Steps: configtest + `mpmctl status` under ulimit with pidfile /dev/zero; start with pidfile = the access
log that holds 3 lines.  PASS when configtest rejects both, or status answers without a traceback and
the access log keeps its lines."""
import os
import subprocess
import sys

from _common import ROOT, HttpBackend, Proxy, verdict, workdir

backend = HttpBackend()
proxy = Proxy(workdir(), [{"path": "/", "to": backend.url + "/"}], workers=1,
              control={"pidfile": "/dev/zero", "socket": "run/mpm.sock"})
proxy.write_config()
check = proxy.mpmctl("configtest")
print(f"pidfile /dev/zero: configtest rc {check.returncode}: {(check.stdout + check.stderr).strip()}")
status = subprocess.run(["bash", "-c", f"ulimit -v 1500000; exec {sys.executable} -m mpm status -c {proxy.config_path}"],
                        capture_output=True, text=True, timeout=60, cwd=ROOT)
tail = (status.stdout + status.stderr).strip().splitlines()[-1:]
print(f"  mpmctl status (ulimit -v 1500000): rc {status.returncode}, last line: {tail}")
device_bad = check.returncode == 0 and "Traceback" in status.stderr

proxy = Proxy(workdir(), [{"path": "/", "to": backend.url + "/"}], workers=1)
proxy.config["control"] = {"pidfile": proxy.access_log, "socket": "run/mpm.sock"}
with open(proxy.access_log, "w") as f:
    f.write("old line 1\nold line 2\nold line 3\n")
proxy.write_config()
check = proxy.mpmctl("configtest")
print(f"pidfile = the access log: configtest rc {check.returncode}: {(check.stdout + check.stderr).strip()}")
overwritten = False
if check.returncode == 0:
    try:
        proxy.start()
        with open(proxy.access_log) as f:
            text = f.read()
        print(f"  access log after start: {text[:60]!r}")
        overwritten = "old line 1" not in text
    finally:
        proxy.stop()
verdict(not device_bad and not overwritten,
        ("status died reading /dev/zero; " if device_bad else "") + ("start overwrote the access log" if overwritten else ""))
