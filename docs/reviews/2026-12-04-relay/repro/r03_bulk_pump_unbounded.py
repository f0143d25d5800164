"""r03: one bulk tunnel holds the worker's loop for as long as its source keeps up: copy() goes on
to splice_rest() after every full 64 KiB read, and splice_rest() loops (_relay.c:159-204) until
the source is empty or the sink stalls, so a pump() has no per-turn budget.  tunnel.py moves at
most one read (one 64 KiB recv, or one <=256 KiB splice) per event and returns to the loop.
Measured: the worker's loop with one tunnel fed by a fast producer (1 MiB sends) and drained by a
fast consumer, 3 s, and a 10 ms timer in the same loop: its worst lateness, both relays."""
import os, subprocess, sys
COPY = os.environ.get("REV_COPY", "/tmp/rev-relay")
if not os.path.exists(COPY):
    os.makedirs(COPY)
    subprocess.run(f"cd /work/main && git archive HEAD | tar -x -C {COPY} && cp conf/*.so {COPY}/conf/ && cp tunnel/*.so {COPY}/tunnel/", shell=True, check=True)

PRODUCER = r'''
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); chunk = b"x" * (1 << 20); end = time.monotonic() + 3
while time.monotonic() < end: s.sendall(chunk)
s.close()
'''
CONSUMER = r'''
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); n = 0
while True:
    d = s.recv(1 << 20)
    if not d: break
    n += len(d)
print(n)
'''
CHILD = r'''
import socket, subprocess, sys, time
sys.path[:0] = [sys.argv[1]]
from worker.loop import EventLoop
from tunnel.endpoint import Endpoint
from tunnel import tunnel as T
def accept_from(code):
    srv = socket.create_server(("127.0.0.1", 0))
    p = subprocess.Popen([sys.executable, "-c", code, str(srv.getsockname()[1])], stdout=subprocess.PIPE, text=True)
    ours, _ = srv.accept(); srv.close(); ours.setblocking(False); return ours, p
loop = EventLoop()
(b, consumer) = accept_from(sys.argv[3])
(c, producer) = accept_from(sys.argv[2])
worst = [0.0, None]; ticks = [0]
def tick(due):
    late = time.monotonic() - due
    if late > worst[0]: worst[0] = late
    ticks[0] += 1
    loop.call_later(0.01, lambda d=time.monotonic() + 0.01: tick(d))
loop.call_later(0.01, lambda d=time.monotonic() + 0.01: tick(d))
t0 = time.monotonic()
def on_close(t, reason):
    print(f"native={T.NATIVE}: {reason!r} after {time.monotonic()-t0:.2f} s, {t.bytes_in/2**20:.0f} MiB; 10 ms timer fired {ticks[0]} times, worst lateness {worst[0]*1000:.0f} ms")
    loop.running = False
T.Tunnel(loop, Endpoint(loop, c), Endpoint(loop, b), 30.0, on_close)
loop.call_later(10, lambda: setattr(loop, "running", False))
loop.run()
producer.wait(); consumer.stdout.read(); consumer.wait()
'''
for native in ("1", "0"):
    env = dict(os.environ, MPM_NATIVE_RELAY=native)
    out = subprocess.run([sys.executable, "-c", CHILD, COPY, PRODUCER, CONSUMER], env=env, capture_output=True, text=True, timeout=60)
    print(out.stdout.strip() or out.stderr.strip()[-800:])
