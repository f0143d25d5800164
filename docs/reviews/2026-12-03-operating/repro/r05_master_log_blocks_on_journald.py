"""The master's own log (`log.error: "-"`, the default) goes to stderr with blocking writes;
under systemd stderr is journald's stream socket.  When journald stops reading, the master's
next log line (a reload, a worker respawned, a refused client...) blocks the master: no
reload, no respawn, no `mpmctl status`, no /healthz.

stderr is a Unix stream socket; once the server is up we fill that socket (from a duplicate
of the master's end, as the lines of a busy process would) and ask for a reload."""
import os
import socket
import subprocess
import sys
import time

from h import ROOT, FastBackend, request, start_proxy

b = FastBackend()
p = start_proxy([{"path": "/", "to": b.url + "/"}], start=False)
p.config["log"]["error"] = "-"
p.write_config()
journald, stderr = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
p.stdout = open(os.path.join(p.dir, "stdout.log"), "wb")
p.stderr = open(os.path.join(p.dir, "stderr.log"), "wb")
p.proc = subprocess.Popen([sys.executable, "-m", "mpm", "start", "-c", p.config_path],
                          stdout=p.stdout, stderr=stderr.fileno(), cwd=ROOT)
p.seen_pids.add(p.proc.pid)
try:
    p.wait_ready()
    journald.setblocking(False)
    while True:                      # what journald has not read yet (here: all of it)
        try:
            journald.recv(1 << 20)
        except BlockingIOError:
            break
    filled = 0
    try:
        while True:
            filled += stderr.send(b"x" * 4096, socket.MSG_DONTWAIT)
    except BlockingIOError:
        pass
    print(f"stderr socket full ({filled} bytes queued)")
    t = time.monotonic()
    try:
        result = p.mpmctl("reload", timeout=5)
        print(f"mpmctl reload: exit {result.returncode} after {time.monotonic() - t:.2f} s")
    except subprocess.TimeoutExpired:
        print(f"mpmctl reload: no answer in {time.monotonic() - t:.2f} s")
    t = time.monotonic()
    try:
        result = p.mpmctl("status", timeout=3)
        print(f"mpmctl status: exit {result.returncode} after {time.monotonic() - t:.2f} s")
    except subprocess.TimeoutExpired:
        print(f"mpmctl status: no answer in {time.monotonic() - t:.2f} s")
    status, seconds = request(p.port, "/still-served", timeout=3)
    print(f"a request to the data port: status {status} after {seconds:.2f} s")
finally:
    journald.close()
    stderr.close()
    p.stop()
