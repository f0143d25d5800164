"""r02: a control-socket client that asks for a large answer (`balancer`, here 1,500 static
members) and never reads it blocks the master's loop for 1 s (sendall with a 1 s timeout on a
socket made blocking).  20 such clients: a `status` from another client waits ~20 s, and
during that time no worker is respawned."""
import json, os, signal, socket, sys, time
from h import proxy
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "tests"))

members = [{"url": f"http://127.0.0.1:{20000 + i % 40000}", "route": f"r{i}"} for i in range(1500)]
p = proxy(workers=1, balancers={"big": {"members": members}},
          routes=[{"path": "/", "to": "balancer://big/"}])
path = os.path.join(p.dir, "run", "mpm.sock")


def ask(payload, read=True, timeout=60):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)              # blocking: waits for room in the backlog (mpmctl's would fail: EAGAIN)
    s.settimeout(timeout)
    s.sendall(json.dumps(payload).encode() + b"\n")
    if not read:
        return s
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        data += chunk
    s.close()
    return data


size = len(ask({"cmd": "balancer"}))
print(f"balancer answer: {size} bytes")
t = time.monotonic()
ask({"cmd": "status"})
print(f"status alone: {1000 * (time.monotonic() - t):.1f} ms")
stuck = []
for _ in range(20):
    s = socket.socket(socket.AF_UNIX)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(path)
    s.sendall(b'{"cmd": "balancer"}\n')
    stuck.append(s)
time.sleep(0.1)
t = time.monotonic()
try:
    p.mpmctl("status", timeout=60)
    print(f"mpmctl status meanwhile: rc={p.mpmctl('status', timeout=60).returncode} (3 = not answering)")
except Exception as exc:
    print("mpmctl status:", exc)
t = time.monotonic()
ask({"cmd": "status"})
print(f"status (blocking connect) behind 20 non-reading balancer clients: {1000 * (time.monotonic() - t):.0f} ms")
for s in stuck:
    s.close()
p.stop()
