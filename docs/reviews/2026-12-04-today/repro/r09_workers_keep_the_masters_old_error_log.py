"""Every worker inherits, at fork, the master's descriptor of the error log (the master's
LogSink; O_CLOEXEC does not close it at fork, and `Master._child` does not close it) and never
closes it.  Until today rotation was a reload, which replaced the workers, so the descriptor
went with them.  With `mpmctl reopen` the workers stay: each keeps the rotated (and later
deleted) error log open for its whole life, so logrotate's `rotate N` deletes a file whose
space is never given back (lsof: "(deleted)") until the workers are replaced.

Here: rotate, reopen, delete the rotated file as logrotate's rotate/maxage does, and look at
the workers' descriptors."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _h import RawBackend, proxy  # noqa: E402

be = RawBackend()
p = proxy([{"path": "/", "to": be.url + "/"}], workers=2)
with open(p.error_log, "ab") as f:
    f.write(b"x" * (8 << 20) + b"\n")                 # an error log of some size
workers = p.worker_pids()


def held(pid):
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if "error.log" in target:
            out.append(f"{fd}->{os.path.basename(target)}")
    return sorted(out)


print("before:", {w: held(w) for w in workers})
os.rename(p.error_log, p.error_log + ".1")
r = p.mpmctl("reopen")
print("reopen:", r.stdout.strip())
time.sleep(0.5)
os.unlink(p.error_log + ".1")                         # logrotate: rotate 0 / maxage
time.sleep(0.2)
after = {w: held(w) for w in workers}
print("after reopen and delete:", after)
print("master:", held(p.proc.pid))
stale = any(any("deleted" in x or "error.log.1" in x for x in v) for v in after.values())
p.stop()
be.closing = True
be.sock.close()
print("REPRODUCED: workers hold the rotated, deleted error log" if stale else "not reproduced")
sys.exit(1 if stale else 0)
