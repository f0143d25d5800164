"""What held: CNAME loop, TTL 0 and 2^31-1, a truncated UDP answer (asked again over TCP),
a resolver that never answers (mpmctl and reload stay quick), an AAAA-only SRV target,
a change of case in SRV target names (the member keeps its row, no drain)."""
import time
from h import CraftedDns, HostileDns, Member, members, served, start_proxy, wait
m = Member("m", host="127.0.0.1")
d = CraftedDns()
d.records = {("app.test", "A"): [(0, "127.0.0.1")]}
p = start_proxy([{"path": "/", "to": "balancer://app/"}], balancers={"app": {"discover": {
    "dns": "app.test", "type": "A", "port": m.port, "resolvers": [d.resolver], "interval": 0.2, "timeout": 0.5}}})
wait(lambda: members(p), 5)
d.craft = lambda q, n, t: [("app.test.", 0, "CNAME", "b.test."), ("b.test.", 0, "CNAME", "app.test.")]
time.sleep(1.5)
print("CNAME loop: members", sorted(members(p)), "served", dict(served(p, 3)),
      "| logged:", [l[-90:] for l in p.error_text().splitlines() if "failed" in l][:1])
for ttl in (0, 2**31 - 1):
    d.craft = None
    d.records = {("app.test", "A"): [(ttl, "127.0.0.1")]}
    p.reload()
    time.sleep(1.0)
    import json
    b = json.loads(p.mpmctl("balancer", "--json").stdout)["balancers"][0]["discover"]
    print(f"TTL {ttl}: next_lookup {b['next_lookup']} (max_ttl {b['max_ttl']})")
d.records = {("app.test", "A"): [(0, f"127.0.{i // 250}.{i % 250 + 1}") for i in range(600)]}
p.reload()
time.sleep(1.5)
print("600 A records (a truncated UDP answer, then TCP): members", len(members(p)), "(slots 32)")
d.silent = {"A", "AAAA", "SRV"}
time.sleep(0.5)
t = time.monotonic(); r = p.mpmctl("status"); s1 = time.monotonic() - t
t = time.monotonic(); p.reload(); s2 = time.monotonic() - t
print(f"resolver silent: mpmctl status rc {r.returncode} in {s1:.2f}s, reload in {s2:.2f}s")
p.stop(); d.stop()

d = HostileDns()
d.records = {("_http._tcp.app.test", "SRV"): [(0, f"0 10 {m.port} six.test.")], ("six.test", "AAAA"): [(0, "::1")],
             ("six.test", "TXT"): [(0, '"x"')]}
p = start_proxy([{"path": "/", "to": "balancer://app/"}], balancers={"app": {"discover": {
    "dns": "_http._tcp.app.test", "type": "SRV", "resolvers": [d.resolver], "interval": 0.2, "timeout": 0.5}}})
wait(lambda: members(p), 5)
print("AAAA-only SRV target:", {u: x.get("address") for u, x in members(p).items()})
d.records = {("_http._tcp.app.test", "SRV"): [(0, f"0 10 {m.port} SIX.Test.")], ("six.test", "AAAA"): [(0, "::1")]}
time.sleep(1.0)
print("target case changed: members", {u: x["status"] for u, x in members(p).items()})
p.stop(); d.stop(); m.close()
