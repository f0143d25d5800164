"""Under systemd the workers' stdout is journald's stream socket (StandardOutput=journal, the
default), and `log.access: "-"` (the default) writes the access log there with blocking
writes: a journald that stops reading for a moment (a journal rotation, a slow disk, a
stopped journald) stops every worker.

Here stdout is a Unix stream socket whose other end never reads, as a stalled journald.
One worker, keep-alive requests back to back until the socket's buffer is full; then a
fresh client's request is timed."""
import os
import socket
import subprocess
import sys
import time

from h import ROOT, FastBackend, request, start_proxy

b = FastBackend()
p = start_proxy([{"path": "/", "to": b.url + "/"}], start=False)
p.config["log"]["access"] = "-"
p.write_config()
journald, stdout = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
p.stdout = open(os.path.join(p.dir, "stdout.log"), "wb")
p.stderr = open(os.path.join(p.dir, "stderr.log"), "wb")
p.proc = subprocess.Popen([sys.executable, "-m", "mpm", "start", "-c", p.config_path],
                          stdout=stdout.fileno(), stderr=p.stderr, cwd=ROOT)
stdout.close()
p.seen_pids.add(p.proc.pid)
try:
    p.wait_ready()
    s = socket.create_connection(("127.0.0.1", p.port), timeout=2)
    req = b"GET /some/page HTTP/1.1\r\nHost: t\r\nUser-Agent: repro/1.0\r\n\r\n"
    answered = 0
    try:
        for _ in range(20000):
            s.sendall(req)
            data = b""
            while not data.endswith(b"hello"):
                more = s.recv(65536)
                if not more:
                    raise ConnectionError("closed")
                data += more
            answered += 1
    except (OSError, ConnectionError) as exc:
        print(f"keep-alive client: {answered} answered, then {type(exc).__name__}")
    else:
        print(f"keep-alive client: all {answered} answered")
    status, seconds = request(p.port, "/victim", timeout=3)
    print(f"a new client's GET: status {status} after {seconds:.2f} s")
finally:
    journald.close()          # the worker's blocked write fails now: it can stop
    p.stop()
