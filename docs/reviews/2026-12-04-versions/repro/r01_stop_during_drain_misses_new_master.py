"""r01: `mpmctl stop` while the old master of an older release drains after `mpmctl upgrade`
to HEAD: it reaches the draining old master, says "stopped", and HEAD's new master serves on.

usage: r01_stop_during_drain_misses_new_master.py [OLD_COMMIT [stop|reload]]   (default f31b70d stop)

With `reload`: PASS when a reload that exits 0 in the window gives the serving master a new
generation (or the reload exits non-zero); FAIL when it exits 0 and nothing was reloaded.

Steps: a master of OLD_COMMIT serves; one request is in flight (the backend answers after
8 s), so the old master drains for ~8 s after the hand-over; the installed code is switched to
HEAD (symlink, as `pip install`); `mpmctl upgrade` (HEAD's) runs in the background; once the
old master has handed over, `mpmctl stop` (HEAD's).  PASS when, after a stop that exits 0,
nothing accepts on the listener and no mpm process is left (or the stop is refused with a
non-zero exit).  FAIL when the stop says it succeeded and the new master serves on.
"""
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import PY, Install, KeepAlive, http_get, tree  # noqa: E402

OLD = sys.argv[1] if len(sys.argv) > 1 else "f31b70d"
ACTION = sys.argv[2] if len(sys.argv) > 2 else "stop"     # or "reload"


def main() -> int:
    inst = Install(tree(OLD))
    verdict, detail = "FAIL", []
    try:
        inst.start()
        old = inst.master_pid()
        slow = {}

        def slow_get():
            k = KeepAlive(inst.port)
            try:
                slow["r"] = k.get("/slow/8", timeout=25)[0]
            except Exception as e:
                slow["r"] = repr(e)
        th = threading.Thread(target=slow_get, daemon=True)
        th.start()
        time.sleep(0.5)
        inst.swap(tree("HEAD"))
        up = subprocess.Popen([PY, "-m", "mpm", "upgrade", "-c", inst.config_path], cwd=os.path.join(inst.dir, "run"),
                              env=inst.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 20
        while time.time() < deadline and "our workers hand their tunnels over" not in inst.log_text():
            time.sleep(0.1)
        time.sleep(0.5)
        new = [p for p, cmd in inst.mpm_processes() if cmd.startswith("mpm: master") and p != old]
        detail.append(f"old master {old}, new master(s) {new}, pidfile names {inst.master_pid()}, "
                      f"run dir {sorted(os.listdir(os.path.join(inst.dir, 'run')))}")
        st = inst.ctl("status", timeout=20)
        detail.append(f"mpmctl status in the window: exit {st.returncode} {st.stdout.strip()[:120]!r} {st.stderr.strip()!r}")
        stop = inst.ctl(ACTION, timeout=40)
        detail.append(f"mpmctl {ACTION} in the window: exit {stop.returncode} out={stop.stdout.strip()!r} err={stop.stderr.strip()!r}")
        th.join(25)
        detail.append(f"in-flight request: {slow.get('r')}")
        try:
            out, err = up.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
            out, err = up.communicate()
        detail.append(f"mpmctl upgrade: exit {up.returncode} out={out.strip()!r} err={err.strip()!r}")
        time.sleep(3)
        try:
            code, body = http_get(inst.port, "/after-stop", timeout=3)
            serving = f"{code} {body!r}"
        except Exception as e:
            serving = None
            detail.append(f"GET after stop: {e!r}")
        left = inst.mpm_processes()
        detail.append(f"GET after stop answered: {serving}; mpm processes left: {left}")
        if ACTION == "reload":
            after = inst.status()
            detail.append(f"after the drain: serving master {after and after['master_pid']} generation "
                          f"{after and after['generation']} (2 = the upgrade's, 3 = reloaded)")
            verdict = "PASS" if stop.returncode != 0 or (after and after["generation"] >= 3) else "FAIL"
        elif stop.returncode != 0:
            verdict = "PASS"          # refused: the operator is told
        elif serving is None and not left:
            verdict = "PASS"
    finally:
        killed = inst.cleanup()
        detail.append(f"killed at cleanup: {killed}")
    print(f"{verdict}: upgrade {OLD} -> HEAD, {ACTION} during the old master's drain")
    for line in detail:
        print("  " + line)
    return 0 if verdict == "PASS" else 1


sys.exit(main())
