"""r05: a second mpm (another directory, so its own pidfile and socket) configured on a port
the first already listens on starts without a word, and the kernel splits new connections
between the two (SO_REUSEPORT on both: same user).  A plain program on the port is refused."""
import collections, socket, tempfile, time
from h import Backend, Proxy

a_backend, b_backend = Backend(), Backend()
first = Proxy(tempfile.mkdtemp(prefix="ctl-repro-"), [{"path": "/", "to": a_backend.url + "/"}], workers=1)
first.start()
second = Proxy(tempfile.mkdtemp(prefix="ctl-repro-"), [{"path": "/", "to": b_backend.url + "/"}], workers=1,
               listen=[f"127.0.0.1:{first.port}"])
second.port = first.port
try:
    second.start()
    print("second master on the same port: started")
except AssertionError as exc:
    print("second master refused:", str(exc)[:200])
seen = collections.Counter()
for _ in range(40):
    with socket.create_connection(("127.0.0.1", first.port), timeout=3) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        s.recv(100)
    seen["?"] += 0
status_a, status_b = first.status(), second.status() if second.proc and second.proc.poll() is None else None
print("requests served by first:", sum(w["requests"] for w in status_a["workers"]),
      "by second:", sum(w["requests"] for w in status_b["workers"]) if status_b else "-")
second.stop()
first.stop()
