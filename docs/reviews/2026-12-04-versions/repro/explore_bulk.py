"""Exploration: FROM -> TO upgrade with N WebSockets and M keep-alive connections; every one
must answer after.  usage: explore_bulk.py FROM TO [N M]"""
import os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import KeepAlive, WS, Install, tree  # noqa: E402
src, dst = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 300
m = int(sys.argv[4]) if len(sys.argv) > 4 else 100
inst = Install(tree(src), per_client={"connections": 5000, "tunnels": 5000})
try:
    inst.start()
    wss = [WS(inst.port) for _ in range(n)]
    kas = [KeepAlive(inst.port) for _ in range(m)]
    ok = sum(w.echo("x") .endswith("x") for w in wss); ok2 = sum(k.get("/a")[0] == 200 for k in kas)
    print("before", ok, ok2)
    inst.swap(tree(dst))
    t = time.time(); r = inst.ctl("upgrade", timeout=120)
    print("upgrade", r.returncode, r.stdout.strip(), r.stderr.strip(), f"{time.time()-t:.1f}s")
    bad = []
    for i, w in enumerate(wss):
        try:
            w.echo("y")
        except Exception as e:
            bad.append(("ws", i, repr(e)))
    for i, k in enumerate(kas):
        try:
            assert k.get("/b")[0] == 200
        except Exception as e:
            bad.append(("ka", i, repr(e)))
    print("failed after upgrade:", len(bad), "ws", sum(b[0] == "ws" for b in bad), "ka", sum(b[0] == "ka" for b in bad), bad[:3])
    st = inst.status()
    print("status", st and [(w["pid"], w["generation"], w["state"], w["connections"], w["tunnels"]) for w in st["workers"]])
    print("\n".join(l for l in inst.log_text().splitlines() if "hand-over" in l or "error" in l.lower())[-3000:])
finally:
    print("killed", inst.cleanup())
