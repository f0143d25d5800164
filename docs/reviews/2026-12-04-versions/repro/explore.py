"""Exploration driver (not a finding): FROM -> TO upgrade with live WebSockets and keep-alive
connections, then reload and stop.  Prints what it sees at each step.

usage: explore.py FROM_COMMIT TO_COMMIT
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import KeepAlive, WS, Install, http_get, tree  # noqa: E402


def main():
    src, dst = sys.argv[1], sys.argv[2]
    t_src, t_dst = tree(src), tree(dst)
    inst = Install(t_src, per_client={"connections": 40, "tunnels": 6})
    print("dir", inst.dir)
    try:
        inst.start()
        st = inst.status()
        print("before: master", st["master_pid"], "gen", st["generation"], "workers",
              [(w["pid"], w["generation"], w["state"]) for w in st["workers"]])
        wss = [WS(inst.port) for _ in range(3)]
        print("ws status", [w.status for w in wss], [w.echo(f"m{i}") for i, w in enumerate(wss)])
        kas = [KeepAlive(inst.port) for _ in range(3)]
        print("ka", [k.get(f"/ka{i}")[0] for i, k in enumerate(kas)])
        m = inst.metrics()
        print("metrics before", m[0], len(m[1]))
        inst.swap(t_dst)
        t0 = time.time()
        r = inst.ctl("upgrade", timeout=90)
        print(f"upgrade rc={r.returncode} in {time.time()-t0:.1f}s out={r.stdout.strip()!r} err={r.stderr.strip()!r}")
        time.sleep(1.5)
        st = inst.status()
        print("after: status", None if st is None else (st["master_pid"], st["generation"],
              [(w["pid"], w["generation"], w["state"], w["connections"], w["tunnels"]) for w in st["workers"]]))
        print("pidfile", inst.master_pid())
        for i, w in enumerate(wss):
            try:
                print("ws", i, w.echo(f"after{i}"))
            except Exception as e:
                print("ws", i, "FAILED", repr(e))
        for i, k in enumerate(kas):
            try:
                print("ka", i, k.get(f"/after{i}")[:2])
            except Exception as e:
                print("ka", i, "FAILED", repr(e))
        print("new GET", http_get(inst.port, "/new"))
        m = inst.metrics()
        print("metrics after", m[0], len(m[1]), "has keepalive handed metric:",
              "mpm_keepalive_connections_handed_over_total" in m[1])
        print("healthz", http_get(inst.admin, "/healthz"))
        # per-client: tunnels limit 6, 3 open -> 3 more OK, the 7th 503
        extra = []
        codes = []
        for i in range(4):
            try:
                w = WS(inst.port)
                extra.append(w)
                codes.append(w.status)
            except Exception as e:
                codes.append(repr(e))
        print("per-client tunnels (limit 6, 3 open before): 4 more ->", codes)
        time.sleep(0.5)
        st = inst.status()
        if st:
            print("status clients", json.dumps(st.get("clients"))[:300])
            print("workers", [(w["pid"], w["generation"], w["state"], w["connections"], w["tunnels"]) for w in st["workers"]])
        for w in extra:
            w.close()
        r = inst.ctl("reload", timeout=60)
        print(f"reload rc={r.returncode} out={r.stdout.strip()!r} err={r.stderr.strip()!r}")
        time.sleep(2)
        for i, w in enumerate(wss):
            try:
                print("ws after reload", i, w.echo(f"r{i}"))
            except Exception as e:
                print("ws after reload", i, "FAILED", repr(e))
        for i, k in enumerate(kas):
            try:
                print("ka after reload", i, k.get(f"/r{i}")[:2])
            except Exception as e:
                print("ka after reload", i, "FAILED", repr(e))
        st = inst.status()
        print("after reload", None if st is None else (st["master_pid"], st["generation"],
              [(w["pid"], w["generation"], w["state"], w["tunnels"]) for w in st["workers"]]))
        r = inst.ctl("stop", timeout=60)
        print(f"stop rc={r.returncode} out={r.stdout.strip()!r} err={r.stderr.strip()!r}")
        time.sleep(2)
        print("left after stop", inst.mpm_processes())
    finally:
        killed = inst.cleanup()
        print("killed at cleanup", killed)
        log = inst.log_text()
        interesting = [l for l in log.splitlines() if any(s in l for s in ("error", "warn", "Traceback", "Error", "upgrade", "Mismatch", "layout"))]
        print("---- log lines (warn/error/upgrade):")
        print("\n".join(interesting[-60:]))


main()
