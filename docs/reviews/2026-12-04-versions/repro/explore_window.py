"""Exploration: the control plane while the old master drains a slow request after an
upgrade FROM -> TO.  usage: explore_window.py FROM TO ACTION   (ACTION: status|stop|reload)"""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import Install, KeepAlive, http_get, tree  # noqa: E402

src, dst, action = sys.argv[1], sys.argv[2], sys.argv[3]
t_src, t_dst = tree(src), tree(dst)
inst = Install(t_src)
try:
    inst.start()
    old = inst.master_pid()
    slow = {}

    def slow_get():
        k = KeepAlive(inst.port)
        try:
            slow["r"] = k.get("/slow/8", timeout=20)[:1]
        except Exception as e:
            slow["r"] = repr(e)
    th = threading.Thread(target=slow_get)
    th.start()
    time.sleep(0.5)
    inst.swap(t_dst)
    r = inst.ctl("upgrade", timeout=60)
    print("upgrade", r.returncode, r.stdout.strip(), r.stderr.strip())
    time.sleep(0.5)
    print("old master alive:", os.path.exists(f"/proc/{old}"), "pidfile:", inst.master_pid(), "old:", old)
    print("run dir:", sorted(os.listdir(os.path.join(inst.dir, "run"))))
    st = inst.status()
    print("status master_pid:", st and st["master_pid"], "gen", st and st["generation"])
    if action == "stop":
        r = inst.ctl("stop", timeout=40)
        print("stop", r.returncode, repr(r.stdout.strip()), repr(r.stderr.strip()))
        time.sleep(1)
        try:
            print("GET after stop:", http_get(inst.port, "/after-stop", timeout=3))
        except Exception as e:
            print("GET after stop: refused/failed", repr(e))
    elif action == "reload":
        r = inst.ctl("reload", timeout=40)
        print("reload", r.returncode, repr(r.stdout.strip()), repr(r.stderr.strip()))
    th.join(20)
    print("slow request:", slow.get("r"))
    time.sleep(2)
    print("after drain: pidfile", inst.master_pid(), "run dir", sorted(os.listdir(os.path.join(inst.dir, "run"))))
    st = inst.status()
    print("after drain: status", st and (st["master_pid"], st["generation"]))
    print("processes:", inst.mpm_processes())
finally:
    print("killed:", inst.cleanup())
    print("\n".join(l for l in inst.log_text().splitlines() if "master pid" in l and "GET" not in l))
