"""An SRV record with port 0 becomes a member on port 0: the workers connect to port 0
(refused), so without health checks every few requests fail over or are answered 503/502
by that member, and `mpmctl balancer` lists `http://t0.test:0`.  Port 0 is no service
(RFC 6335 reserves it); a stub resolver's caller cannot connect to it either."""
import time
from h import HostileDns, Member, members, served, start_proxy, wait
good = Member("good")
d = HostileDns()
d.records = {("_http._tcp.app.test", "SRV"): [(0, f"0 10 {good.port} good.test."), (0, "0 10 0 zero.test.")],
             ("good.test", "A"): [(0, "127.0.0.1")], ("zero.test", "A"): [(0, "127.0.0.1")]}
p = start_proxy([{"path": "/", "to": "balancer://app/"}], balancers={"app": {"discover": {
    "dns": "_http._tcp.app.test", "type": "SRV", "resolvers": [d.resolver], "interval": 0.2, "timeout": 0.5}}})
wait(lambda: len(members(p)) == 2, 5)
print("members:", sorted(members(p)))
print("served 20:", dict(served(p, 20)))
print({u: (m["status"], m.get("failures")) for u, m in members(p).items()})
p.stop(); d.stop(); good.close()
