"""Found sound: odd `mpmctl balancer set` weights are refused; all members down gives a fast 503."""
import sys, time, socket, json
sys.path.insert(0, __import__("os").path.join(__import__("os").path.dirname(__import__("os").path.abspath(__file__)), ".."))
from h import Member, get, members_section, start_proxy
a, b = Member("a"), Member("b")
p = start_proxy([{"path": "/", "to": "balancer://app/"}], workers=1,
                balancers={"app": members_section([a, b])})
for args in (["weight", "2.5"], ["weight", "true"], ["weight", " 7 "], ["weight", "0x10"], ["weight","1_0"], ["bogus"], ["weight"]):
    r = p.mpmctl("balancer", "set", "app", "1", *args)
    print(args, r.returncode, r.stdout.strip()[:200], r.stderr.strip()[:200])
a.kill(); b.kill()
for i in range(3):
    s, h, body, t = get(p, "/x")
    print("all down:", s, "%.1f ms" % (t*1000))
print(p.error_text()[-800:])
