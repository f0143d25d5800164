import select, socket, sys, time, gc
sys.path.insert(0, "tests")
from test_relay_native import _Loop, Rig
loop = _Loop()
class L(_Loop): pass
a, b = socket.socketpair()
class H:
    def __init__(self): self.n = 0
    def on(self, mask):
        self.n += 1
        if self.n % 2: raise ValueError("x")
h = H(); meth = h.on
loop.epoll.register(a.fileno(), select.EPOLLIN); loop.handlers[a.fileno()] = meth
loop.contain = lambda exc, cb, fd: None
b.send(b"x")
rig = Rig(loop=loop)
def run(n):
    for _ in range(n):
        rig.client.send(b"p"); loop.turn(0.0); rig.backend.recv(10)
run(1000); gc.collect()
r0, blocks0 = sys.getrefcount(meth), sys.getallocatedblocks()
run(20000); gc.collect()
print("handler refs", r0, sys.getrefcount(meth), "blocks", blocks0, sys.getallocatedblocks(), "calls", h.n)
