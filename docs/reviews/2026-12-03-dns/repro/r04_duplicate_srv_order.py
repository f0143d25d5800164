"""Two SRV records for the same target and port (priority 0 weight 30, and priority 1 weight 1):
the member takes the *first in answer order*.  Resolvers rotate records (BIND's cyclic
rrset-order, dnsmasq, Route 53); the test server (dnspython) shuffles them as it writes the
answer.  The member's tier and weight flap from round to round with the same records, and two
instances can disagree (README: "the same ones on every instance")."""
import collections, time
from h import HostileDns, Member, members, start_proxy, wait
good = Member("good")
d = HostileDns()
d.records = {("_http._tcp.app.test", "SRV"): [(0, f"0 30 {good.port} a.test."), (0, f"0 10 {good.port} b.test."),
                                              (0, f"1 1 {good.port} a.test.")],
             ("a.test", "A"): [(0, "127.0.0.1")], ("b.test", "A"): [(0, "127.0.0.1")]}
p = start_proxy([{"path": "/", "to": "balancer://app/"}], balancers={"app": {"discover": {
    "dns": "_http._tcp.app.test", "type": "SRV", "resolvers": [d.resolver], "interval": 0.2, "timeout": 0.5}}})
url = f"http://a.test:{good.port}"
wait(lambda: url in members(p), 5)
seen = collections.Counter()
for _ in range(12):
    m = members(p)[url]
    seen[(m["status"], m["weight"])] += 1
    time.sleep(0.3)
print("member a.test, 12 looks 0.3 s apart, the same records all along:", dict(seen))
p.stop(); d.stop(); good.close()
