"""`mpmctl reopen` while `mpmctl upgrade` is under way reaches the old master only (it holds
the control socket until the hand-over): it reopens its own log and SIGHUPs its own workers,
not the new master nor the new master's workers if they are up already (the hand-over waits
for them).  After the hand-over the new generation -- the one that serves from now on --
writes its access and error lines into the rotated files until the next reopen or reload
(with logrotate without `delaycompress`, or `rotate 1`, into a file compressed or deleted).

Timing aid: as soon as the new master has its error log open, it is held (SIGSTOP) for the
rename + reopen, as a loaded machine holds it, then let go (SIGCONT).  Its workers start after
that here, so they open the new paths; the new master itself writes into error.log.1.  (Had its
workers been up already -- the hand-over waits for them -- they would stay on the old files too.)"""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _h import ROOT, RawBackend, proxy  # noqa: E402


def ppid(pid):
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def children(pid):
    return [int(x) for x in os.listdir("/proc") if x.isdigit() and ppid(x) == pid]


def logs_of(pid):
    found = []
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith(p.dir) and ("access.log" in target or "error.log" in target):
                found.append(os.path.basename(target))
    except OSError:
        pass
    return sorted(found)


be = RawBackend()
p = proxy([{"path": "/", "to": be.url + "/"}], workers=1)
old = p.proc.pid
old_workers = set(p.worker_pids(current_only=False))
up = subprocess.Popen([sys.executable, "-m", "mpm", "upgrade", "-c", p.config_path], cwd=ROOT,
                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
new = None
deadline = time.monotonic() + 20
while time.monotonic() < deadline and new is None:
    for c in children(old):
        if c not in old_workers and "error.log" in logs_of(c):
            new = c
            os.kill(new, signal.SIGSTOP)         # it has its error log open; it has not handed over
            break
    time.sleep(0.001)
assert new is not None, "the new master was not seen"
p.seen_pids.add(new)
pidfile = os.path.join(p.dir, "run", "mpm.pid")
assert int(open(pidfile).read().split()[0]) == old, "race lost: the hand-over happened already; run again"
print("new master", new, "has its error log open and has not handed over; rotating now")
os.rename(p.error_log, p.error_log + ".1")
os.rename(p.access_log, p.access_log + ".1")
r = p.mpmctl("reopen")
print("reopen:", r.returncode, r.stdout.strip())
os.kill(new, signal.SIGCONT)
out, _ = up.communicate(timeout=60)
print("upgrade:", out.strip().splitlines()[-1:])
s = p.connect()
s.sendall(b"GET /after-rotation HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
s.recv(1000)
s.close()
time.sleep(1.5)
print("new master's log fds:", logs_of(new))
for worker in children(new):
    print("its worker", worker, "log fds:", logs_of(worker))
in_old = sum("/after-rotation" in line for line in open(p.access_log + ".1"))
in_new = sum("/after-rotation" in line for line in open(p.access_log)) if os.path.exists(p.access_log) else 0
print(f"the request made after the rotation is logged in access.log.1: {in_old}, in access.log: {in_new}")
stale = in_old > 0 or "error.log.1" in logs_of(new)
subprocess.run([sys.executable, "-m", "mpm", "stop", "-c", p.config_path], cwd=ROOT, capture_output=True, timeout=30)
for pid in [new] + children(new):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
p.stop()
be.closing = True
be.sock.close()
print("REPRODUCED: the serving generation writes into the rotated files" if stale else "not reproduced")
sys.exit(1 if stale else 0)
