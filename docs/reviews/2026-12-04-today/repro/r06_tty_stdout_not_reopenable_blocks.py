"""Review 2026-12-04-logs #1 fixed for pipes only: `_writer` uses RWF_NOWAIT for a FIFO whose
dup blocks, and plain blocking os.write for every other kind.  A stdout that is a terminal the
worker may not reopen (EACCES on /proc/self/fd/1: `sudo -u mpm mpmctl start` in someone's
terminal, whose pts is that user's, mode 0620) is a blocking character device: when the
terminal stops reading (XOFF / Ctrl-S, a stalled ssh session, screen/tmux copy mode) the worker
sleeps in tty write and stops answering -- what the README says no destination can do
("A destination that does not take lines never stalls the server").

Made without a second user as r01 of the logs review did: the pty belongs to nobody and the
proxy runs as root without CAP_DAC_OVERRIDE (setpriv); the pty's master side is never read."""
import os
import socket
import subprocess
import sys
import tempfile
import termios
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _h import ROOT, Proxy, RawBackend  # noqa: E402

be = RawBackend()
p = Proxy(tempfile.mkdtemp(prefix="rev-today-"), [{"path": "/", "to": be.url + "/"}], workers=1)
p.config["log"]["access"] = "-"
p.write_config()
master_fd, slave_fd = os.openpty()
os.fchown(slave_fd, 65534, 65534)
os.fchmod(slave_fd, 0o620)
attrs = termios.tcgetattr(slave_fd)
attrs[1] &= ~termios.OPOST                           # raw output: bytes as they are
termios.tcsetattr(slave_fd, termios.TCSANOW, attrs)
p.stdout = open(os.devnull, "wb")
p.stderr = open(os.path.join(p.dir, "stderr.log"), "wb")
p.proc = subprocess.Popen(["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                           sys.executable, "-m", "mpm", "start", "-c", p.config_path],
                          stdout=slave_fd, stderr=p.stderr, cwd=ROOT)
p.seen_pids.add(p.proc.pid)
stalled = None
try:
    p.wait_ready()
    pid = p.worker_pids()[0]
    print("worker's fd 1:", os.readlink(f"/proc/{pid}/fd/1"))
    s = p.connect(timeout=2)
    answered = 0
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < 8:
            s.sendall(b"GET /%d HTTP/1.1\r\nHost: x\r\nUser-Agent: %s\r\n\r\n" % (answered, b"u" * 400))
            buf = b""
            while not buf.endswith(b"raw:/%d" % answered):
                buf += s.recv(65536)
            answered += 1
    except (socket.timeout, TimeoutError):
        stalled = answered
    print("answered", answered, "then", "no answer for 2 s" if stalled is not None else "kept serving")
    print("worker blocked in (wchan):", open(f"/proc/{pid}/wchan").read())
finally:
    try:
        os.set_blocking(master_fd, False)
        for _ in range(200):
            os.read(master_fd, 1 << 16)             # the terminal reads again: let it go
    except OSError:
        pass
    p.stop()
    os.close(master_fd)
    os.close(slave_fd)
    be.closing = True
    be.sock.close()
print("STALL REPRODUCED" if stalled is not None else "no stall")
sys.exit(1 if stalled is not None else 0)
