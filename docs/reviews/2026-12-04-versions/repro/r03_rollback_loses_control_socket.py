"""r03: a rollback, `mpmctl upgrade` from HEAD to a release before 4f205d4 (whose new master
takes the control socket and the pidfile at its start): HEAD's old master fails in the
hand-over (AlreadyRunning from write_pidfile, logged as a traceback) and, at its exit, unlinks
the control socket the new master is listening on.  `mpmctl status` and `mpmctl balancer` then
fail for the new master's whole life.

usage: r03_rollback_loses_control_socket.py [OLD_COMMIT]   (default f31b70d)

Steps: a master of HEAD; the installed code switched to OLD_COMMIT; `mpmctl upgrade` (the
installed one); wait 3 s; `mpmctl status --json`.  PASS when the status answers with the new
master's pid and the old master logged no traceback.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import Install, http_get, tree  # noqa: E402

OLD = sys.argv[1] if len(sys.argv) > 1 else "f31b70d"


def main() -> int:
    inst = Install(tree("HEAD"))
    detail, verdict = [], "FAIL"
    try:
        inst.start()
        old = inst.master_pid()
        inst.swap(tree(OLD))
        r = inst.ctl("upgrade", timeout=90)
        detail.append(f"mpmctl upgrade: exit {r.returncode} {r.stdout.strip()!r} {r.stderr.strip()!r}")
        time.sleep(3)
        new = inst.master_pid()
        detail.append(f"old master {old}, pidfile names {new}; run dir: {sorted(os.listdir(os.path.join(inst.dir, 'run')))}")
        detail.append(f"GET through the proxy: {http_get(inst.port, '/x')[0]}")
        st = inst.ctl("status", "--json", timeout=20)
        answered = None
        if st.returncode == 0:
            answered = json.loads(st.stdout).get("master_pid")
        detail.append(f"mpmctl status --json: exit {st.returncode}, master_pid {answered}, stderr {st.stderr.strip()!r}")
        bal = inst.ctl("balancer", timeout=20)
        detail.append(f"mpmctl balancer: exit {bal.returncode}, stderr {bal.stderr.strip()!r}")
        tb = [l for l in inst.log_text().splitlines() if "failed; carrying on" in l or "AlreadyRunning" in l]
        detail += ["log: " + l for l in tb]
        verdict = "PASS" if st.returncode == 0 and answered == new and not tb else "FAIL"
        stop = inst.ctl("stop", timeout=40)
        time.sleep(1)
        detail.append(f"mpmctl stop: exit {stop.returncode} {stop.stdout.strip()!r} {stop.stderr.strip()!r}; "
                      f"left: {inst.mpm_processes()}")
    finally:
        detail.append(f"killed at cleanup: {inst.cleanup()}")
    print(f"{verdict}: rollback HEAD -> {OLD}, the control socket after the upgrade")
    for line in detail:
        print("  " + line)
    return 0 if verdict == "PASS" else 1


sys.exit(main())
