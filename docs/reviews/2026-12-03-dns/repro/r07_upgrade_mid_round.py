"""`mpmctl upgrade` while a round is in flight (the first resolver never answers, timeout 1 s):
the next master starts from the members found, asks again, and serves throughout."""
import os, signal, socket, threading, time
import psutil
from h import HostileDns, Member, members, start_proxy, wait
m = Member("m")
d = HostileDns()
d.records = {("app.test", "A"): [(0, "127.0.0.1")]}
dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); dead.bind(("127.0.0.1", 0))
p = start_proxy([{"path": "/", "to": "balancer://app/"}], balancers={"app": {"discover": {
    "dns": "app.test", "type": "A", "port": m.port, "interval": 0.2, "timeout": 1,
    "resolvers": [f"127.0.0.1:{dead.getsockname()[1]}", d.resolver]}}})
wait(lambda: members(p), 8)
codes, stop = {}, threading.Event()
def client():
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", p.port), timeout=3) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                code = s.recv(64).split(b" ")[1].decode()
        except (OSError, IndexError) as exc:
            code = type(exc).__name__
        codes[code] = codes.get(code, 0) + 1
t = threading.Thread(target=client); t.start()
time.sleep(0.3)
r = p.mpmctl("upgrade", timeout=60)
new_master = int(open(os.path.join(p.dir, "run", "mpm.pid")).read())
time.sleep(2.5)
stop.set(); t.join()
print("upgrade rc", r.returncode, "| requests across it:", codes, "| members after:", sorted(members(p)))
p.mpmctl("stop")
for _ in range(100):
    if not psutil.pid_exists(new_master) or psutil.Process(new_master).status() == psutil.STATUS_ZOMBIE:
        break
    time.sleep(0.1)
else:
    os.kill(new_master, signal.SIGKILL)
p.stop(); d.stop(); m.close(); dead.close()
