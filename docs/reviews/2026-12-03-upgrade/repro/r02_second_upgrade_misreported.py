"""Two upgrades back to back: while the first `mpmctl upgrade` waits for the old master to
finish a slow request, the new master (which now holds the control paths) is upgraded again.
The first mpmctl then sees "its" new master exit and reports a failure that did not happen
(cmd_upgrade / _why_successor_went): the service is up on the third master."""
import subprocess, sys, threading, time
from h import *  # noqa
from h import ROOT
from backends import HttpBackend

def handler(req, body):
    if req["target"].startswith("/slow"):
        time.sleep(6)
    return 200, [("Content-Type", "text/plain")], b"ok"

b = HttpBackend(handler); started.append(b)
p = proxy([{"path": "/", "to": b.url + "/"}], workers=1)
old = p.proc.pid
slow = {}
t = threading.Thread(target=lambda: slow.update(r=get(p.url("/slow"), timeout=20))); t.start()
time.sleep(0.5)
first = subprocess.Popen([sys.executable, "-m", "mpm", "upgrade", "-c", p.config_path], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
deadline = time.time() + 10
while time.time() < deadline and pidfile(p) in (None, old):
    time.sleep(0.05)
n1 = pidfile(p); track(p, n1)
time.sleep(0.5)
second = upgrade(p)
n2 = pidfile(p); track(p, n2)
print("second mpmctl upgrade ->", second.returncode, (second.stdout + second.stderr).strip())
out, _ = first.communicate(timeout=60)
t.join()
print("first mpmctl upgrade ->", first.returncode, out.strip())
print("slow request:", slow.get("r"))
serving = get(p.url("/"))
print("now:", serving, "pidfile", pidfile(p), "masters", old, n1, n2)
ok = serving[0] == 200 and second.returncode == 0 and (first.returncode == 0 or "nothing serves" not in out
                                                       and "exited" not in out)
result(ok, "the first mpmctl upgrade does not report a failure while the service was upgraded twice and serves")
subprocess.run([sys.executable, "-m", "mpm", "stop", "-c", p.config_path], cwd=ROOT, capture_output=True, timeout=30)
