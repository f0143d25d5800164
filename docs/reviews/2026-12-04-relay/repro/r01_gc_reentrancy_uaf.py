"""r01: Python code that runs inside Relay.pump() (3.11's cyclic GC, triggered by end_link's
PyTuple_Pack) can call relay.add(), which reallocs self->links while on_event() still holds a
Link* into the old array: on_event() then reads link->ended from freed memory (_relay.c:285-286).
Run under valgrind (it re-executes itself there): expect "Invalid read" in on_event."""
import gc, os, shutil, socket, struct, subprocess, sys
HERE = os.path.dirname(os.path.abspath(__file__))
COPY = os.environ.get("REV_COPY", "/tmp/rev-relay")
if not os.path.exists(COPY):
    os.makedirs(COPY)
    subprocess.run(f"cd /work/main && git archive HEAD | tar -x -C {COPY} && cp tunnel/*.so {COPY}/tunnel/", shell=True, check=True)
if os.environ.get("R01_CHILD") != "1":
    env = dict(os.environ, R01_CHILD="1", PYTHONMALLOC="malloc")
    cmd = ["valgrind", "--tool=memcheck", "--error-exitcode=99", "--num-callers=8", sys.executable, __file__]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    lines = p.stderr.splitlines()
    hits = [i for i, l in enumerate(lines) if "Invalid" in l]
    for i in hits[:2]:
        print("\n".join(l for l in lines[i:i + 30] if any(w in l for w in ("Invalid", "Address", "free", "realloc", "_relay.c"))))
    print(p.stdout.strip())
    print("valgrind exit:", p.returncode, "invalid accesses:", len(hits))
    sys.exit(0)

sys.path[:0] = [COPY]
from tunnel._relay import Relay

relay = Relay()
spare = socket.socketpair()
keep = []

def _pair(small=False):
    with socket.create_server(("127.0.0.1", 0)) as srv:
        peer = socket.socket()
        if small:
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        peer.connect(srv.getsockname())
        ours, _ = srv.accept()
    ours.setblocking(False)
    return ours, peer

client_end, client = _pair(small=True)
backend_end, backend = _pair()
key = object()
relay.add(key, client_end.fileno(), backend_end.fileno(), False, False, b"x" * 300000, b"")
# The client resets: the pending to_client bytes will fail to send inside pump (drain -> end_link).
client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
client.close()
import select
select.select([relay.fileno()], [], [], 2)

added = [1]
cap = [64]

class G:
    __slots__ = ("other", "gen", "__weakref__")
    def __del__(self):
        if getattr(self, "gen", 0) != 1:
            return
        # Fill the free slots and one more: the next add reallocs the links array.
        need = cap[0] - added[0] + 1
        for _ in range(need):
            a, b = os.dup(spare[0].fileno()), os.dup(spare[1].fileno())
            keep.extend((a, b))
            relay.add(object(), a, b, False, False, b"", b"")
        added[0] += need
        cap[0] *= 2

def make_garbage():
    a, b = G(), G()
    a.other, b.other = b, a
    a.gen = b.gen = 1
    b.gen = 0

pump, enable = relay.pump, gc.enable
gc.set_threshold(1, 1000, 1000)
gc.disable()            # so the cycle is born in generation 0 and stays there until pump
# 3.11 keeps freed 2-tuples on a free list, whose reuse does not count as a GC allocation:
# hold enough of them that end_link's PyTuple_Pack must allocate (as in any busy worker).
hold = [(i, -i) for i in range(5000)]
make_garbage()
enable()
ended = pump()
gc.set_threshold(700, 10, 10)
print("pump returned", [(k is key, r) for k, r in ended], "links added by finalizers:", added[0] - 1)
