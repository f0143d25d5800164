"""r02: a tunnel whose client resets while it is on its way to the successor (held there 1.5 s by an injected
sleep) closes inside the successor's Tunnel constructor: its per-client holds are released there before they were
counted, so the client's count goes to -1 and limits.per_client.tunnels: 1 lets it open two tunnels."""
import os, re, signal, socket, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from h import *
INJECT = '''
import os
def _arm():
    import time
    from worker.handover import _Inbound
    adopt = _Inbound._adopt_tunnel
    def slow_adopt(self, socks, header, data):
        time.sleep(1.5)          # the record waits here: its client resets meanwhile
        return adopt(self, socks, header, data)
    _Inbound._adopt_tunnel = slow_adopt
os.register_at_fork(after_in_child=_arm)
'''
def behaviour(conn):
    head = conn.read_head()
    conn.send(switch_response("websocket", head.raw))
    if "push" in head.target:
        try:
            conn.sock.sendall(b"x" * (8 << 20))
        except OSError:
            pass
    while True:
        try:
            d = conn.sock.recv(65536)
        except OSError:
            return
        if not d:
            return
        conn.sock.sendall(d)
inject = tempfile.mkdtemp()
open(inject + "/sitecustomize.py", "w").write(INJECT)
b = RawBackend(behaviour, timeout=30)
with proxy([{"path": "/ws/", "to": b.ws_url + "/ws/"}], workers=1, environ={"PYTHONPATH": inject},
           limits={"per_client": {"tunnels": 1}}) as p:
    s, head, _ = open_tunnel(p, "/ws/push", rcvbuf=4096)
    print("pushing tunnel:", status_of(head))
    time.sleep(0.5)                          # the proxy now holds a leftover for the client
    os.kill(p.proc.pid, signal.SIGHUP)
    t0 = time.time()
    while "hand-over: passed" not in p.error_text() and time.time() - t0 < 10:
        time.sleep(0.01)
    reset(s)                                 # while the record waits at the successor
    print("reset", round(time.time() - t0, 2), "s after SIGHUP")
    time.sleep(2.5)
    a, ha, _ = open_tunnel(p, "/ws/a")
    c, hc, _ = open_tunnel(p, "/ws/c")
    print("per_client tunnels: 1 -> first", status_of(ha), "second", status_of(hc), "(expect 101, 503)")
    a.close(); c.close()
    time.sleep(0.5)
    os.kill(p.proc.pid, signal.SIGHUP)
    p.wait_ready(generation=3)
    time.sleep(3)
    print([l.split("] ", 3)[-1] for l in p.error_text().splitlines() if "hand-over" in l or "failed" in l])
b.close()
