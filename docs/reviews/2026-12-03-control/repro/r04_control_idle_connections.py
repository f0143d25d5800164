"""r03: control-socket connections that never send are not expired unless another client
connects (CLIENT_TIMEOUT is checked only in _accept), and a client that opens connections
until the master runs out of descriptors turns accept() into EMFILE, which _accept does not
handle: the listening socket stays readable, so the master's loop spins on it, logging a
traceback each turn.  The master's open-file limit is lowered to 256 (prlimit) to get there fast."""
import os, resource, socket, time
import psutil
from h import proxy

p = proxy(workers=1)
path = os.path.join(p.dir, "run", "mpm.sock")
master = psutil.Process(p.proc.pid)
base = master.num_fds()
idle = [socket.socket(socket.AF_UNIX) for _ in range(10)]
for s in idle:
    s.connect(path)
time.sleep(0.3)
print(f"master fds: {base} idle, {master.num_fds()} with 10 silent clients")
time.sleep(6.0)          # CLIENT_TIMEOUT is 5 s
print(f"master fds 6 s later (no other client): {master.num_fds()}")
for s in idle:
    s.close()
time.sleep(0.3)

resource.prlimit(p.proc.pid, resource.RLIMIT_NOFILE, (256, 256))
held = []
deadline = time.monotonic() + 3
while len(held) < 400 and time.monotonic() < deadline:
    s = socket.socket(socket.AF_UNIX)
    s.setblocking(False)
    try:
        s.connect(path)
        held.append(s)
    except BlockingIOError:      # the backlog is full: let the master accept
        s.close()
        time.sleep(0.001)
print(f"client holds {len(held)} connections; master fds {master.num_fds()}")
time.sleep(0.5)
cpu0 = sum(master.cpu_times()[:2])
size0 = os.path.getsize(p.error_log)
time.sleep(2.0)
cpu = sum(master.cpu_times()[:2]) - cpu0
print(f"master CPU over 2 s with the descriptors exhausted: {cpu:.2f} s; error log grew {os.path.getsize(p.error_log) - size0} bytes")
print("last error-log line:", p.error_text().strip().splitlines()[-1][:160])
for s in held:
    s.close()
time.sleep(6.5)
s = socket.socket(socket.AF_UNIX); s.connect(path); s.close()   # an accept runs _expire
time.sleep(0.3)
print("status afterwards: rc", p.mpmctl("status").returncode)
p.stop()
