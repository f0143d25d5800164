"""The RWF_NOWAIT writer's EOPNOTSUPP fallback (logsink._writer) sets O_NONBLOCK on the open
file description the worker shares with every other process holding the same stdout -- what
the module's docstring says it avoids ("so O_NONBLOCK is ours alone and does not leak into the
shell or the master that share the original open file description").  It is taken:
  * on every kernel before 6.4 for an anonymous pipe (FMODE_NOWAIT came to pipes in 6.4:
    Debian 12's 6.1, Ubuntu 22.04's 5.15, RHEL 8/9), i.e. exactly review 2026-12-04-logs #1's
    case (a non-root container user whose stdout pipe is root's);
  * on this 6.18 kernel too when stdout is a named FIFO (fifo_open sets no FMODE_NOWAIT:
    pwritev2(RWF_NOWAIT) -> EOPNOTSUPP), shown here.
A sibling that shares the stdout (a wrapper script's `echo`, a sidecar started by the same
entrypoint, the shell) then meets EAGAIN instead of blocking: here a Python process's write
of 100 KB to its own stdout fails with BlockingIOError.

The proxy runs as root without CAP_DAC_OVERRIDE and its FIFO belongs to nobody (as r01 of the
logs review did it), so /proc/self/fd/1 cannot be reopened and the dup is used."""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _h import ROOT, Proxy, RawBackend  # noqa: E402

be = RawBackend()
d = tempfile.mkdtemp(prefix="rev-today-")
fifo = os.path.join(d, "stdout.fifo")
os.mkfifo(fifo, 0o600)
r = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)      # the log reader: reads nothing for now
w = os.open(fifo, os.O_WRONLY)                      # blocking, as a shell's `> fifo` opens it
os.fchown(w, 65534, 65534)
p = Proxy(d, [{"path": "/", "to": be.url + "/"}], workers=1)
p.config["log"]["access"] = "-"
p.write_config()
p.stdout = open(os.devnull, "wb")
p.stderr = open(os.path.join(d, "stderr.log"), "wb")
p.proc = subprocess.Popen(["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                           sys.executable, "-m", "mpm", "start", "-c", p.config_path],
                          stdout=w, stderr=p.stderr, cwd=ROOT)
p.seen_pids.add(p.proc.pid)
sibling = None
leaked = False
try:
    p.wait_ready()
    flags = lambda: int(open(f"/proc/{p.proc.pid}/fdinfo/1").read().split("flags:")[1].split()[0], 8)
    print("O_NONBLOCK on the shared stdout before a log line:", bool(flags() & os.O_NONBLOCK))
    s = p.connect()
    s.sendall(b"GET /one HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    s.recv(1000)
    s.close()
    time.sleep(1.5)                                   # the access log's 1 s batch
    leaked = bool(flags() & os.O_NONBLOCK)
    print("O_NONBLOCK on the shared stdout after one line:", leaked)
    sibling = subprocess.run([sys.executable, "-c", "import os\ntry:\n n = os.write(1, b'y' * 100000)\n"
                              " print('wrote', n, file=__import__('sys').stderr)\nexcept OSError as e:\n"
                              " print('sibling:', repr(e), file=__import__('sys').stderr)"],
                             stdout=w, stderr=subprocess.PIPE, text=True, timeout=5)
    print(sibling.stderr.strip())
except subprocess.TimeoutExpired:
    print("sibling blocked (as a blocking pipe should)")
finally:
    p.stop()
    os.close(w)
    os.close(r)
    be.closing = True
    be.sock.close()
print("REPRODUCED: O_NONBLOCK leaked to a process sharing stdout" if leaked else "not reproduced")
sys.exit(1 if leaked else 0)
