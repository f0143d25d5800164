"""r02: a tunnel resumed from a hand-over's state (worker.handover: Tunnel(..., state=...)) or
reattached after a refused hand-over gets a fresh full idle timeout under the C relay:
Relay_add sets link->last = now (_relay.c:377), and NativeTunnel.on_deadline (native.py:86-91)
then moves the deadline to last + idle_timeout.  tunnel.py closes it `idle_left` after.
Runs the same idle tunnel (state: idle_timeout 3 s, idle_left 0.3 s) with MPM_NATIVE_RELAY=1 and =0."""
import os, subprocess, sys
COPY = os.environ.get("REV_COPY", "/tmp/rev-relay")
if not os.path.exists(COPY):
    os.makedirs(COPY)
    subprocess.run(f"cd /work/main && git archive HEAD | tar -x -C {COPY} && cp conf/*.so {COPY}/conf/ && cp tunnel/*.so {COPY}/tunnel/", shell=True, check=True)

CHILD = r'''
import socket, sys, time
sys.path[:0] = [sys.argv[1]]
from worker.loop import EventLoop
from tunnel.endpoint import Endpoint
from tunnel import tunnel as T
def pair():
    with socket.create_server(("127.0.0.1", 0)) as srv:
        peer = socket.create_connection(srv.getsockname()); ours, _ = srv.accept()
    ours.setblocking(False); return ours, peer
loop = EventLoop()
(c, cp), (b, bp) = pair(), pair()
mode = sys.argv[2]
t0 = time.monotonic()
def on_close(t, reason):
    print(f"native={T.NATIVE} {mode}: closed {reason!r} after {time.monotonic() - t0:.2f} s (class {type(t).__name__})")
    loop.running = False
if mode == "adopted":
    state = dict(client_eof=False, backend_eof=False, bytes_in=10, bytes_out=20, idle_timeout=3.0, idle_left=0.3, age=60.0)
    t = T.Tunnel(loop, Endpoint(loop, c), Endpoint(loop, b), 3.0, on_close, state=state)
else:   # reattached: idle 2.5 s of its 3, a hand-over offered and refused, then relayed on here
    t = T.Tunnel(loop, Endpoint(loop, c), Endpoint(loop, b), 3.0, on_close)
    loop.call_later(2.5, lambda: (t.detach(), t.reattach()))
loop.call_later(8, lambda: (print("still open after 8 s"), setattr(loop, "running", False)))
loop.run()
'''
for native in ("1", "0"):
    for mode in ("adopted", "reattached"):
        env = dict(os.environ, MPM_NATIVE_RELAY=native)
        out = subprocess.run([sys.executable, "-c", CHILD, COPY, mode], env=env, capture_output=True, text=True, timeout=30)
        print(out.stdout.strip() or out.stderr.strip()[-800:])
