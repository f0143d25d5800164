"""r02: tunnels opened before a reload that turns per-client tunnel limits on (or changes the
table's size) are handed to the new generation and never counted: the client opens `tunnels`
more on top of them."""
import time

from h import Backend, start_proxy, upgrade

backend = Backend()
p = start_proxy([{"path": "/ws/", "to": "ws://127.0.0.1:%d/ws/" % backend.port}], workers=1)
held = []
for i in range(3):
    s, status = upgrade(p.port, "/ws/before", "127.0.0.7")
    held.append(s)
    assert status == 101, status
print("3 tunnels open from 127.0.0.7 without limits")
p.config["limits"] = {"per_client": {"tunnels": 1}}
p.write_config()
assert p.reload().returncode == 0
p.wait_ready(2)
deadline = time.time() + 10
while p.status()["old_generation_workers"] and time.time() < deadline:
    time.sleep(0.1)
for s in held:                       # the three were handed over and still work
    s.sendall(b"ping")
    assert s.recv(10) == b"ping"
print("after the reload (tunnels: 1), the 3 tunnels moved and work; clients.active =",
      p.status()["clients"]["active"])
s, status = upgrade(p.port, "/ws/after", "127.0.0.7")
print("a 4th upgrade from the same client:", status, "(expected 503: it already holds 3 > 1)")
s.close()
for s in held:
    s.close()
