"""r05: one failed pipe2() (out of descriptors for a moment) turns splicing off for the life of
the relay: open_pipe() sets self->splicing = 0 (_relay.c:129-131) and nothing sets it back, so
every later bulk read of every tunnel in the worker is copied through user space.  tunnel.py
(`_splice`: `pipe.open()` failing) copies that one read and tries the pipe again next time.
Direct relay on loopback: bulk through a tunnel while RLIMIT_NOFILE leaves no fd, then again
with descriptors back; is a pipe ever opened?"""
import os, resource, select, socket, subprocess, sys, threading
COPY = os.environ.get("REV_COPY", "/tmp/rev-relay")
if not os.path.exists(COPY):
    os.makedirs(COPY)
    subprocess.run(f"cd /work/main && git archive HEAD | tar -x -C {COPY} && cp tunnel/*.so {COPY}/tunnel/", shell=True, check=True)
sys.path[:0] = [COPY]
from tunnel._relay import Relay

def pair():
    with socket.create_server(("127.0.0.1", 0)) as srv:
        peer = socket.create_connection(srv.getsockname()); ours, _ = srv.accept()
    ours.setblocking(False); return ours, peer

def pipes():
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:")
        except OSError:
            pass
    return n

def bulk(relay, cp, bp, size=4 << 20):
    got = [0]
    def reader():
        while got[0] < size:
            got[0] += len(bp.recv(1 << 20))
    t = threading.Thread(target=reader); t.start()
    cp.setblocking(False)
    data = memoryview(b"x" * size); off = 0
    while got[0] < size:
        if off < size:
            try:
                off += cp.send(data[off:off + (1 << 20)])
            except BlockingIOError:
                pass
        select.select([relay.fileno()], [], [], 0.01)
        relay.pump()
    t.join()

relay = Relay()
(c, cp), (b, bp) = pair(), pair()
relay.add(object(), c.fileno(), b.fileno(), False, False, b"", b"")
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
before = pipes()
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
filler = []
try:
    while True:                                     # no descriptor left
        filler.append(os.dup(0))
except OSError:
    pass
bulk(relay, cp, bp)
for fd in filler:
    os.close(fd)
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
print("pipes held, during the shortage:", pipes() - before)
bulk(relay, cp, bp)
print("pipes held, after 4 MiB more with descriptors back:", pipes() - before)

fresh = Relay()
(c2, cp2), (b2, bp2) = pair(), pair()
fresh.add(object(), c2.fileno(), b2.fileno(), False, False, b"", b"")
before = pipes()
bulk(fresh, cp2, bp2)
print("a relay that never met the shortage, after 4 MiB: pipes held:", pipes() - before)
