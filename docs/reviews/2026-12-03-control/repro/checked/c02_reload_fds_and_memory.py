import json, os, socket, time
import psutil
import sys, os; sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from h import proxy
p = proxy(workers=1, balancers={"c": {"members": [{"url": "http://127.0.0.1:9"}]}}, routes=[{"path": "/", "to": "balancer://c/"}])
path = os.path.join(p.dir, "run", "mpm.sock")
def ask(payload):
    s = socket.socket(socket.AF_UNIX); s.connect(path); s.settimeout(30)
    s.sendall(json.dumps(payload).encode() + b"\n"); data = b""
    while not data.endswith(b"\n"):
        c = s.recv(65536)
        if not c: break
        data += c
    s.close(); return json.loads(data)
m = psutil.Process(p.proc.pid)
def snap():
    return m.num_fds(), m.memory_info().rss // 1024
print("start", snap())
for i in range(30):
    a = ask({"cmd": "reload"}); assert a["ok"], a
    time.sleep(0.15)
time.sleep(2)
print("after 30 reloads", snap(), "workers", len(ask({"cmd": "status"})["workers"]))
for i in range(30):
    a = ask({"cmd": "reload"}); assert a["ok"], a
    time.sleep(0.15)
time.sleep(2)
print("after 60 reloads", snap(), "workers", len(ask({"cmd": "status"})["workers"]))
p.stop()
