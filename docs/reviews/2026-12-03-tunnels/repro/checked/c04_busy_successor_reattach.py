"""c04 (held): 600 streaming tunnels handed to a successor slowed 50 ms per read of its hand-over socket: the
sender's socket fills, tunnels are reattached and sent later; every echo in order, none closed."""
import json, os, signal, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from h import *
from backends import BenchBackend
INJECT = '''
import os
def _arm():
    import time
    from worker.handover import _Inbound
    on_event = _Inbound._on_event
    def slow(self, mask):
        time.sleep(0.05)         # a busy successor: its hand-over queue fills, the sender waits
        return on_event(self, mask)
    _Inbound._on_event = slow
os.register_at_fork(after_in_child=_arm)
'''
inject = tempfile.mkdtemp()
open(inject + "/sitecustomize.py", "w").write(INJECT)
bb = BenchBackend(tempfile.mkdtemp())
with proxy([{"path": "/", "to": f"http://127.0.0.1:{bb.port}/"}], workers=1, environ={"PYTHONPATH": inject},
           log={"access": "off"}) as p:
    st = subprocess.Popen([sys.executable, "tests/streamer.py", str(p.port), "600", "5"], stdout=subprocess.PIPE, text=True)
    assert st.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    os.kill(p.proc.pid, signal.SIGHUP)
    p.wait_ready(generation=2)
    time.sleep(4)
    s = status(p)
    print([(w["generation"], w["state"], w["tunnels"]) for w in s["workers"]])
    st.send_signal(signal.SIGTERM)
    out, _ = st.communicate(timeout=30)
    r = json.loads(out.strip().splitlines()[-1]); r.pop("errors", None) if not r.get("errors") else None
    print({k: v for k, v in r.items() if k != "errors"}, "errors:", (r.get("errors") or [])[:3])
    print([l.split("] ", 3)[-1] for l in p.error_text().splitlines() if "hand-over" in l][:6])
bb.close()
