"""Finding 1: when /proc/self/fd/1 cannot be reopened (EACCES: the process runs as a user that
does not own its stdout pipe, as in a container with a non-root USER whose stdout pipe belongs
to root), worker.logsink._open_target falls back to os.dup(1): a BLOCKING descriptor to a pipe.
A log reader that stops (a slow or stuck docker/k8s log driver, a paused `| tee`) then blocks
every worker in write(2): no request is answered until the reader reads again.

The condition is made here without a second user: the pipe is chowned to nobody and the proxy
runs as root without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH (setpriv), so it cannot reopen
/proc/self/fd/1 -- exactly what a non-root process meets with a root-owned pipe."""
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _h import ROOT, Proxy, RawBackend  # noqa: E402

be = RawBackend()
p = Proxy(tempfile.mkdtemp(prefix="rev-logs-"), [{"path": "/", "to": be.url}], workers=1)
p.config["log"]["access"] = "-"          # the default: stdout
p.write_config()
r, w = os.pipe()
os.fchown(w, 65534, 65534)               # stdout belongs to another user (0600, as pipes are)
p.stdout = open(os.devnull, "wb")
p.stderr = open(os.path.join(p.dir, "stderr.log"), "wb")
p.proc = subprocess.Popen(["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                           sys.executable, "-m", "mpm", "start", "-c", p.config_path],
                          stdout=w, stderr=p.stderr, cwd=ROOT)
os.close(w)
p.seen_pids.add(p.proc.pid)
try:
    p.wait_ready()
    pid = p.worker_pids()[0]
    flags = int(open(f"/proc/{pid}/fdinfo/1").read().split("flags:")[1].split()[0], 8)
    print("O_NONBLOCK on the worker's log descriptor:", bool(flags & os.O_NONBLOCK))
    # nobody reads the pipe (r stays open, unread): 64 KiB fill it
    s = p.connect(timeout=2)
    answered, stalled_at = 0, None
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < 8:
            s.sendall(b"GET /%d HTTP/1.1\r\nHost: x\r\nUser-Agent: %s\r\n\r\n" % (answered, b"u" * 200))
            buf = b""
            while not buf.endswith(b"raw:/%d" % answered):
                buf += s.recv(65536)
            answered += 1
    except (socket.timeout, TimeoutError):
        stalled_at = answered
    print("answered", answered, "then", "no answer for 2 s" if stalled_at is not None else "kept serving")
    print("worker blocked in (wchan):", open(f"/proc/{pid}/wchan").read())
    fresh = socket.create_connection(("127.0.0.1", p.port), timeout=2)
    fresh.sendall(b"GET /fresh HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        print("a new client:", fresh.recv(100)[:30])
    except (socket.timeout, TimeoutError):
        print("a new client: no answer in 2 s")
    os.read(r, 1 << 20)                      # the reader reads once
    time.sleep(0.5)
    print("after the reader read once, the new client gets:", fresh.recv(100)[:30])
    failed = stalled_at is not None
finally:
    p.stop()
    os.close(r)
print("STALL REPRODUCED" if failed else "no stall")
sys.exit(1 if failed else 0)
