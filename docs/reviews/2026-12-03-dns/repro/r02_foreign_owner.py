"""Records whose owner is not the name asked (nor a CNAME target on the chain from it) are taken
as members: an A answer for app.test carrying `other.test A 127.0.0.3` next to
`app.test A 127.0.0.2` gives two members; with a CNAME chain (app.test CNAME real.test,
real.test A) a stray record of a third name is added too."""
import time
from h import CraftedDns, Member, members, served, start_proxy, wait
m2 = Member("m2", host="127.0.0.2")
m3 = Member("m3", host="127.0.0.3", port=m2.port)
d = CraftedDns()
d.craft = lambda q, name, t: ([("app.test.", 0, "A", "127.0.0.2"), ("other.test.", 0, "A", "127.0.0.3")]
                              if (name, t) == ("app.test", "A") else None)
p = start_proxy([{"path": "/", "to": "balancer://app/"}], balancers={"app": {"discover": {
    "dns": "app.test", "type": "A", "port": m2.port, "resolvers": [d.resolver], "interval": 0.2, "timeout": 0.5}}})
wait(lambda: members(p), 5)
time.sleep(0.5)
print("A answer + a record of other.test: members", sorted(members(p)), "served", dict(served(p, 6)))
p.stop()
d.craft = lambda q, name, t: ([("app.test.", 0, "CNAME", "real.test."), ("real.test.", 0, "A", "127.0.0.2"),
                               ("stray.test.", 0, "A", "127.0.0.3")] if (name, t) == ("app.test", "A") else None)
p = start_proxy([{"path": "/", "to": "balancer://app/"}], balancers={"app": {"discover": {
    "dns": "app.test", "type": "A", "port": m2.port, "resolvers": [d.resolver], "interval": 0.2, "timeout": 0.5}}})
wait(lambda: members(p), 5)
time.sleep(0.5)
print("CNAME chain + a record of stray.test: members", sorted(members(p)), "served", dict(served(p, 6)))
p.stop(); d.stop(); m2.close(); m3.close()
