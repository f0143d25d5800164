"""The new master crashes right after the hand-over (new code failing under its first real
traffic: here SIGKILL) while the old master is still alive, draining a slow request.  The old
master closed its listening sockets at the hand-over (upgrade.watch) and never looks at its
former successor again: it drains, exits, and nothing serves; pidfile and control socket
name the dead master.  nginx's old master keeps its listeners until it exits, so the operator
(or the master itself) can fall back to it in this window."""
import os, subprocess, sys, threading, time
from h import *  # noqa
from h import ROOT
from backends import HttpBackend

def handler(req, body):
    if req["target"].startswith("/slow"):
        time.sleep(4)
    return 200, [("Content-Type", "text/plain")], b"ok"

b = HttpBackend(handler); started.append(b)
p = proxy([{"path": "/", "to": b.url + "/"}], workers=1)
old = p.proc.pid
res = {}
th = threading.Thread(target=lambda: res.update(slow=get(p.url("/slow"), timeout=30))); th.start()
time.sleep(0.3)
up = subprocess.Popen([sys.executable, "-m", "mpm", "upgrade", "-c", p.config_path], cwd=ROOT,
                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
deadline = time.time() + 15
while time.time() < deadline and pidfile(p) in (None, old):
    time.sleep(0.005)
new = pidfile(p); track(p, new)
for q in family(new):
    os.kill(q, 9)
print(f"new master {new} killed right after the hand-over; old master {old} alive:", p.proc.poll() is None)
time.sleep(1.0)
mid = get(p.url("/"), timeout=2)
print("a new client while the old master still runs:", mid)
out, _ = up.communicate(timeout=60)
th.join()
print("mpmctl upgrade ->", up.returncode, out.strip())
print("slow request:", res.get("slow"))
after = get(p.url("/"), timeout=2)
print("a new client after:", after, "| old master alive:", p.proc.poll() is None, "| pidfile:", pidfile(p))
result(mid[0] == 200 or after[0] == 200, "something serves after the new master died while the old one still ran")
