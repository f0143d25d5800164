"""The old master is SIGKILLed (OOM killer, an operator's kill -9) while `mpmctl upgrade` runs,
before it hands over.  The new master takes the control paths and serves (upgrade.follow), and
mpmctl says "upgraded" with exit 0 - but the old workers, seeing their master gone
(Worker._parent_gone), exit at once and cut every WebSocket tunnel they carried, although the
new master's workers are there to take them (a graceful stop would have handed them over)."""
import os, re, subprocess, sys, time
from h import *  # noqa
from h import ROOT
from backends import WebSocketBackend
from websockets.sync.client import connect

ws = WebSocketBackend(); started.append(ws)
p = proxy([{"path": "/ws/", "to": ws.url + "/"}], workers=1)
old = p.proc.pid
c = connect(f"ws://127.0.0.1:{p.port}/ws/x")
c.send("before"); print("tunnel:", c.recv(timeout=3))
up = subprocess.Popen([sys.executable, "-m", "mpm", "upgrade", "-c", p.config_path], cwd=ROOT,
                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
deadline = time.time() + 10
while time.time() < deadline and not re.search(r"upgrade: started master pid (\d+)", p.error_text()):
    time.sleep(0.01)
new = int(re.search(r"upgrade: started master pid (\d+)", p.error_text()).group(1)); track(p, new)
os.kill(old, 9)                       # the old master dies before the hand-over
out, _ = up.communicate(timeout=60)
print("mpmctl upgrade ->", up.returncode, out.strip())
time.sleep(1.0)
try:
    c.send("after"); got = c.recv(timeout=3)
except Exception as e:  # noqa: BLE001
    got = f"LOST ({type(e).__name__})"
print("tunnel after:", got)
print("serves new connections:", get(p.url("/ws/"))[0] is not None, "pidfile:", pidfile(p), "(new", new, ")")
result(got == "after", "the tunnel survives an upgrade whose old master was killed before the hand-over "
                       "(mpmctl said exit %d)" % up.returncode)
subprocess.run([sys.executable, "-m", "mpm", "stop", "-c", p.config_path], cwd=ROOT, capture_output=True, timeout=30)
