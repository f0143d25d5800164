"""Exploration: what carries across FROM -> TO besides connections: a member disabled with
`mpmctl balancer set`, per-client connection counts of moved keep-alive connections.
usage: explore_state.py FROM TO"""
import json, os, socket, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import KeepAlive, WS, Install, http_get, tree  # noqa: E402
src, dst = sys.argv[1], sys.argv[2]
inst = Install(tree(src), per_client={"connections": 8, "tunnels": 20})
try:
    inst.start()
    r = inst.ctl("balancer", "set", "cluster", f"http://127.0.0.1:{inst.b2.port}", "disable")
    print("disable b2:", r.returncode, r.stdout.strip()[:100], r.stderr.strip()[:200])
    print("before: 6 GETs ->", [http_get(inst.port, f"/g{i}")[1].split()[0].decode() for i in range(6)])
    wss = [WS(inst.port) for _ in range(3)]; kas = [KeepAlive(inst.port) for _ in range(3)]
    print("opened", [w.echo("a") for w in wss], [k.get("/k")[0] for k in kas])
    inst.swap(tree(dst))
    r = inst.ctl("upgrade", timeout=90); print("upgrade", r.returncode, r.stdout.strip(), r.stderr.strip())
    time.sleep(1)
    alive = []
    for w in wss:
        try: alive.append(w.echo("b"))
        except Exception as e: alive.append(repr(e)[:30])
    for k in kas:
        try: alive.append(k.get("/k2")[0])
        except Exception as e: alive.append(repr(e)[:30])
    print("moved ones after upgrade:", alive)
    print("after: 6 GETs ->", [http_get(inst.port, f"/h{i}")[1].split()[0].decode() for i in range(6)])
    r = inst.ctl("balancer", "--json")
    try:
        bl = json.loads(r.stdout)
        print("balancer after:", [(m.get("url"), m.get("status")) for b in bl.get("balancers", bl if isinstance(bl, list) else []) for m in b.get("members", [])])
    except Exception as e:
        print("balancer after: rc", r.returncode, r.stdout[:300], r.stderr[:200])
    # per-client connections: 6 open (3 ws + 3 ka) of 8; open 4 more idle connections
    res = []
    extra = []
    for i in range(4):
        try:
            k = KeepAlive(inst.port); extra.append(k)
            res.append(k.get(f"/c{i}")[0])
        except Exception as e:
            res.append(repr(e)[:40])
    print("per-client connections (limit 8, 6 moved): 4 more ->", res)
    st = inst.status(); print("clients", st and st.get("clients"))
finally:
    print("killed", inst.cleanup())
    print("\n".join(l for l in inst.log_text().splitlines() if ("warn" in l.lower() or "error" in l.lower()) and "GET" not in l)[-2000:])
