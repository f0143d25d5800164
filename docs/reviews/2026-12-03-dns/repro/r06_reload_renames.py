"""A reload that changes the balancer's `discover.dns` (same members, a new name: a migration)
starts the new generation's balancer empty: the members of the old name are dropped from the
new table at once (no drain), and until the new name's first answer arrives every request the
new workers take is 503.  A resolver that is slow (here: 0.5 s timeout, first resolver dead)
stretches that window."""
import socket, threading, time
from h import HostileDns, Member, members, start_proxy, wait
m = Member("m")
d = HostileDns()
d.records = {("old.test", "A"): [(0, "127.0.0.1")], ("new.test", "A"): [(0, "127.0.0.1")]}
dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); dead.bind(("127.0.0.1", 0))   # never answers
disc = {"type": "A", "port": m.port, "resolvers": [d.resolver], "interval": 5, "timeout": 0.5}
p = start_proxy([{"path": "/", "to": "balancer://app/"}], balancers={"app": {"discover": {"dns": "old.test", **disc}}})
wait(lambda: members(p), 5)
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
time.sleep(0.5)
p.config["balancers"]["app"]["discover"] = {"dns": "new.test", **disc,
                                            "resolvers": [f"127.0.0.1:{dead.getsockname()[1]}", d.resolver]}
p.write_config(); p.reload()
time.sleep(2.5)
stop.set(); t.join()
print("requests around a reload that renames discover.dns (first resolver dead, timeout 0.5 s):", codes)
p.stop(); d.stop(); m.close(); dead.close()
