"""r01: a few graceful reloads while old workers still serve long requests use up the client
table's worker cells; the next generation's worker then enforces no per-client limit at all,
and never does until it is itself replaced."""
import sys
import time

from h import Backend, connect, get, start_proxy, status_of

backend = Backend(hold=40)
p = start_proxy([{"path": "/", "to": backend.url + "/"}], workers=1,
                limits={"per_client": {"connections": 1}},
                mpm={"workers": 1, "server_limit": 16, "graceful_timeout": 40})
held = []
for generation in range(1, 10):
    s = connect(p.port, "127.0.0.%d" % (20 + generation))     # a slow download keeps this worker alive
    s.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
    held.append(s)
    deadline = time.time() + 5
    while len(backend.heads) < generation and time.time() < deadline:     # it reached the backend
        time.sleep(0.02)
    assert p.reload().returncode == 0
    p.wait_ready(generation + 1)
status = p.status()
print("generation", status["generation"], "old workers", status.get("old_generation_workers"))
# One client, connections limit 1: the first connection is held open, the second must be closed unread.
first = connect(p.port, "127.0.0.5")
first.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
print("first connection:", status_of(first))
print("second connection from the same client:", get(p.port, "/", "127.0.0.5"), "(expected: reset)")
print("error log:", [line for line in p.error_text().splitlines() if "counter cell" in line][-1:])
first.close()
for s in held:                       # the slow clients leave: the old workers end, their cells are freed
    s.close()
deadline = time.time() + 15
while p.status().get("old_generation_workers") and time.time() < deadline:
    time.sleep(0.1)
time.sleep(1.5)                      # the master's tick, then the worker's next claim (after the fix)
first = connect(p.port, "127.0.0.6")
first.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
print("old workers gone:", p.status().get("old_generation_workers") == 0, "; first connection:", status_of(first))
print("second connection from the same client:", get(p.port, "/", "127.0.0.6"), "(expected: reset)")
print("error log:", [line for line in p.error_text().splitlines() if "counter cell" in line][-1:])
first.close()
sys.stdout.flush()
