"""Finding 3: the old master exits instead of taking the service back when its last draining
request ends shortly after the new master died.

README: "Should the new master die after the hand-over while the old one still drains its
requests ..., the old master takes the service back".  Here the new master is SIGKILLed while the
old master's worker still has a request in flight (it ends 50 ms later, answered 200).  The old
master notices the death only at its next housekeeping tick (<= 0.25 s), and its first bind
attempts fail while the dead master's workers still hold the ports; meanwhile its exit test in
Master._loop (`stopping and not workers and successor is None`) is true once that last worker is
reaped: it exits ("all workers gone"), nothing serves, and the pidfile names the dead master.

Tried up to 3 times.  PASS when every attempt ends with a master serving; FAIL otherwise."""
import os
import signal
import time

from _upg import alive, cleanup, pidfile, served, slow_request, start, upgrade, wait_for


def attempt(left: float) -> bool:
    proxy, backend = start()
    old, new, up = proxy.proc.pid, None, None
    try:
        thread, result = slow_request(proxy, "/slow=3")
        began = time.monotonic()
        time.sleep(0.3)
        up = upgrade(proxy)
        new = wait_for(lambda: (pid := pidfile(proxy)) not in (None, old) and pid, 20, 0.005, "the hand-over")
        time.sleep(max(3 - left - (time.monotonic() - began), 0))
        os.kill(new, signal.SIGKILL)
        out, _ = up.communicate(timeout=60)
        thread.join(20)
        time.sleep(1.0)
        serving = served(proxy)
        print(f"slow request: {result}; mpmctl upgrade exit {up.returncode}: {out.strip()}")
        print(f"old master alive: {alive(old)}; pidfile: {pidfile(proxy)} (dead master {new}); "
              f"a new client: {serving!r}")
        print("\n".join(line for line in proxy.error_text().splitlines()
                        if f"master pid {old}]" in line and ("taking" in line or "exiting" in line
                                                              or "serves again" in line)))
        return serving == b"ok"
    finally:
        if up is not None and up.poll() is None:
            up.kill()
        cleanup(proxy, backend, old, new or 0)


results = []
for _ in range(3):
    results.append(attempt(0.05))
    if not results[-1]:
        break
print("PASS" if all(results) else "FAIL")
