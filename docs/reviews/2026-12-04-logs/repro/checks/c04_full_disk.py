import os
# access+error log on a full tmpfs: serving, CPU, what is said, recovery
import sys, time, socket, threading, os, signal, subprocess, psutil, tempfile
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from _h import *
mnt = tempfile.mkdtemp(prefix="rl-tmpfs-")
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", mnt], check=True)
try:
    be = RawBackend()
    p = Proxy(tempfile.mkdtemp(prefix="rev-logs-"), [{"path": "/", "to": be.url}], workers=1)
    p.access_log = p.config["log"]["access"] = os.path.join(mnt, "access.log")
    p.start()
    pid = p.worker_pids()[0]
    # fill the disk
    with open(os.path.join(mnt, "filler"), "wb") as f:
        try:
            f.write(b"z" * (200 * 1024))
        except OSError as e: print("filler", e)
    print("df", os.statvfs(mnt).f_bavail)
    s = p.connect(); n=0
    proc = psutil.Process(pid); c0 = proc.cpu_times()
    t0=time.monotonic()
    while time.monotonic()-t0 < 2:
        s.sendall(b"GET /k%d HTTP/1.1\r\nHost: x\r\nUser-Agent: %s\r\n\r\n" % (n, b"u"*500)); buf=b""
        while not buf.endswith(b"/k%d" % n): buf += s.recv(65536)
        n+=1
    time.sleep(1.5)
    c1 = proc.cpu_times()
    print("answered", n, "logged", len(p.access_lines()), "worker cpu", round(c1.user+c1.system-c0.user-c0.system,2))
    c0=c1; time.sleep(2); c1=proc.cpu_times(); print("idle cpu 2s", round(c1.user+c1.system-c0.user-c0.system,2))
    os.unlink(os.path.join(mnt, "filler"))
    for i in range(3):
        s.sendall(b"GET /after%d HTTP/1.1\r\nHost: x\r\n\r\n" % i); buf=b""
        while not buf.endswith(b"/after%d" % i): buf += s.recv(65536)
    s.close()
    time.sleep(1.5)
    L = p.access_lines()
    print("last lines:"); [print("  ", l[:160]) for l in L[-5:]]
    print("stderr:", p.stderr_text()[-600:])
    p.stop()
finally:
    subprocess.run(["umount", "-l", mnt])
