"""Finding 2: with stdout a UNIX stream socket (journald's stream socket under systemd, the
default `log.access: "-"`), workers send up to 64 KiB per send(MSG_DONTWAIT).  A send the
socket takes in part leaves the rest of a line for later, and another worker's lines land in
the middle of it.  Pipes are cut at PIPE_BUF on whole lines (worker/logsink.py PIPE_CHUNK);
sockets are not.  Two workers, four keep-alive clients for 3 s, a reader that is slower than
the traffic (SO_SNDBUF made small so the backlog comes within seconds; journald behind under
load gives the same with the default buffer)."""
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _h import ROOT, Proxy, RawBackend  # noqa: E402

be = RawBackend()
p = Proxy(tempfile.mkdtemp(prefix="rev-logs-"), [{"path": "/", "to": be.url}], workers=2)
p.config["log"]["access"] = "-"
p.write_config()
ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
p.stdout = open(os.devnull, "wb")
p.stderr = open(os.path.join(p.dir, "stderr.log"), "wb")
p.proc = subprocess.Popen([sys.executable, "-m", "mpm", "start", "-c", p.config_path], stdout=theirs.fileno(),
                          stderr=p.stderr, cwd=ROOT)
theirs.close()
p.seen_pids.add(p.proc.pid)
data = bytearray()
stop = threading.Event()


def reader() -> None:
    ours.settimeout(0.2)
    while not stop.is_set():
        try:
            chunk = ours.recv(3000)
        except socket.timeout:
            continue
        if not chunk:
            break
        data.extend(chunk)
        time.sleep(0.01)


def client(tag: bytes) -> None:
    s = p.connect()
    n, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < 3:
        s.sendall(b"GET /%s/%d HTTP/1.1\r\nHost: x\r\nUser-Agent: %s\r\n\r\n" % (tag, n, b"A" * 300))
        buf = b""
        while not buf.endswith(b"/%s/%d" % (tag, n)):
            buf += s.recv(65536)
        n += 1
    s.close()


try:
    p.wait_ready()
    threading.Thread(target=reader, daemon=True).start()
    clients = [threading.Thread(target=client, args=(b"c%d" % i,)) for i in range(4)]
    for t in clients:
        t.start()
    for t in clients:
        t.join()
    time.sleep(4)
    stop.set()
finally:
    p.stop()
lines = bytes(data).split(b"\n")[:-1]
pattern = re.compile(rb'^127\.0\.0\.1 - - \[[^\]]+\] "GET /c\d/\d+ HTTP/1\.1" 200 \d+ "-" "A{300}" \d+ "/" '
                     rb'"http://127\.0\.0\.1:\d+" [+X-]$')
bad = [line for line in lines if not pattern.match(line) and not line.startswith(b"[")]
print(f"{len(lines)} lines read, {len(bad)} are not one whole combined line")
for line in bad[:3]:
    print("  ", re.sub(rb"A{20,}", lambda m: b"A{%d}" % len(m.group()), line))
sys.exit(1 if bad else 0)
