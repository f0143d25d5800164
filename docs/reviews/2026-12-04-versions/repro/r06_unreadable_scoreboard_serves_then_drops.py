"""r06: `mpmctl upgrade` from a release whose scoreboard HEAD cannot read (9669702, 2026-11-22,
before shm/) is not refused at once: HEAD's new master starts its own scoreboard, forks
workers that accept on the inherited sockets beside the old ones for 30 s, is then told to
stop ("did not become ready in time"), and the WebSockets its workers took in those 30 s are
cut.

usage: r06_unreadable_scoreboard_serves_then_drops.py [OLD_COMMIT]   (default 9669702)

Steps: a master of OLD_COMMIT (a config that release reads: no admin, limits or balancers);
the installed code switched to HEAD; `mpmctl upgrade` started; 5 s later 8 WebSockets opened
(new connections, spread over the old and the new workers by SO_REUSEPORT); the upgrade
ends; each WebSocket sends one message 12 s after (past graceful_timeout 10 s).  PASS when the
upgrade is refused within 5 s (before any new worker accepts) or every WebSocket still echoes.
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import PY, WS, Install, tree  # noqa: E402

OLD = sys.argv[1] if len(sys.argv) > 1 else "9669702"


def main() -> int:
    inst = Install(tree(OLD))
    open(inst.config_path, "w").write(f"""
listen: ["127.0.0.1:{inst.port}"]
mpm: {{workers: 2, server_limit: 16, graceful_timeout: 10}}
timeouts: {{connect: 2, proxy: 120, client_header: 5, keepalive: 60}}
control: {{pidfile: run/mpm.pid, socket: run/mpm.sock}}
log: {{level: info, access: {inst.dir}/access.log, error: {inst.error_log}}}
routes:
  - {{path: /, to: "http://127.0.0.1:{inst.b1.port}/"}}
""")
    detail, verdict = [], "FAIL"
    try:
        inst.start()
        inst.swap(tree("HEAD"))
        t0 = time.time()
        up = subprocess.Popen([PY, "-m", "mpm", "upgrade", "-c", inst.config_path], cwd=os.path.join(inst.dir, "run"),
                              env=inst.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(5)
        refused_early = up.poll() is not None
        wss = [WS(inst.port) for _ in range(8)]
        detail.append(f"8 WebSockets opened {time.time() - t0:.1f} s into the upgrade: {[w.status for w in wss]}, "
                      f"echo {[w.echo('a') for w in wss].count('b1:a')} of 8")
        out, err = up.communicate(timeout=90)
        detail.append(f"mpmctl upgrade: exit {up.returncode} after {time.time() - t0:.1f} s {out.strip()!r} {err.strip()!r}")
        time.sleep(12)
        lost = 0
        for w in wss:
            try:
                w.echo("b")
            except Exception:
                lost += 1
        detail.append(f"WebSockets cut after the failed upgrade: {lost} of 8")
        detail += ["log: " + l for l in inst.log_text().splitlines()
                   if "GET" not in l and ("upgrade" in l or "scoreboard" in l or "graceful" in l)][:12]
        verdict = "PASS" if refused_early or lost == 0 else "FAIL"
    finally:
        detail.append(f"killed at cleanup: {inst.cleanup()}")
    print(f"{verdict}: upgrade {OLD} -> HEAD (a scoreboard HEAD cannot read)")
    for line in detail:
        print("  " + line)
    return 0 if verdict == "PASS" else 1


sys.exit(main())
