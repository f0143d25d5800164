"""r02: `mpmctl upgrade` from a release whose workers do not read the successor's answers
(before 933d4e8) to HEAD: part of the keep-alive connections and WebSockets handed over are
closed (the client sees EOF), though both sides log them as passed.

usage: r02_old_sender_items_dropped.py [OLD_COMMIT [N_WS M_KA]]   (default f31b70d 300 100)

Steps: a master of OLD_COMMIT; N WebSockets and M idle keep-alive connections through it, each
answered once; the installed code switched to HEAD; `mpmctl upgrade`; every WebSocket sends
one more message, every keep-alive connection one more request.  PASS when all N+M answer.
(Run with HEAD as OLD_COMMIT for the same-version baseline.)
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import WS, Install, KeepAlive, tree  # noqa: E402

OLD = sys.argv[1] if len(sys.argv) > 1 else "f31b70d"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 300
M = int(sys.argv[3]) if len(sys.argv) > 3 else 100


def main() -> int:
    inst = Install(tree(OLD), per_client={"connections": 5000, "tunnels": 5000})
    detail, verdict = [], "FAIL"
    try:
        inst.start()
        wss = [WS(inst.port) for _ in range(N)]
        kas = [KeepAlive(inst.port) for _ in range(M)]
        before = sum(w.echo("x").endswith("x") for w in wss) + sum(k.get("/a")[0] == 200 for k in kas)
        detail.append(f"answered before the upgrade: {before} of {N + M}")
        inst.swap(tree("HEAD"))
        t = time.time()
        r = inst.ctl("upgrade", timeout=120)
        detail.append(f"mpmctl upgrade: exit {r.returncode} {r.stdout.strip()!r} {r.stderr.strip()!r} ({time.time() - t:.1f} s)")
        lost_ws, lost_ka, sample = 0, 0, []
        for w in wss:
            try:
                w.echo("y")
            except Exception as e:
                lost_ws += 1
                sample.append(repr(e))
        for k in kas:
            try:
                if k.get("/b")[0] != 200:
                    raise OSError("not 200")
            except Exception as e:
                lost_ka += 1
                sample.append(repr(e))
        detail.append(f"after the upgrade: WebSockets lost {lost_ws} of {N}, keep-alive connections lost {lost_ka} of {M}"
                      f" {sample[:2]}")
        passed = [l.split("] ", 2)[-1] for l in inst.log_text().splitlines() if "hand-over: passed" in l or "hand-over: adopted" in l]
        detail += ["log: " + l for l in passed]
        verdict = "PASS" if before == N + M and lost_ws == lost_ka == 0 and r.returncode == 0 else "FAIL"
    finally:
        detail.append(f"killed at cleanup: {inst.cleanup()}")
    print(f"{verdict}: upgrade {OLD} -> HEAD with {N} WebSockets and {M} keep-alive connections")
    for line in detail:
        print("  " + line)
    return 0 if verdict == "PASS" else 1


sys.exit(main())
