"""A tunnel that ends in a turn's relaying is closed only after the whole batch: a Python
handler later in the same batch still sees it open (closed False, movable) and can detach it
(the hand-over's _send does: item.movable, item.detach() -> relay.remove) -- its end is then
never reported, and the successor gets a tunnel whose both sides are at EOF, which no event
ever closes (nothing is registered for it) until its idle timeout; the side that sent its FIN
first never gets ours.  Before this change pump()+close ran with no Python in between, and the
Python path closes at the second EOF at once.
Run: PYTHONPATH=.:tests /work/main/.venv/bin/python docs/reviews/2026-12-05-turn/repro/r_ended_tunnel_seen_live.py"""
import select, socket, sys, time
sys.path.insert(0, "tests")
from test_relay_native import _Loop, _Owner, _pair, _nowait

loop = _Loop(); relay = loop.relay
ended = []
c_end, client = _pair(); b_end, backend = _pair()
key = _Owner(ended)
slot = relay.add(key, c_end.fileno(), b_end.fileno(), False, False, b"", b"", time.monotonic())
client.shutdown(socket.SHUT_WR)              # the client half-closes first
for _ in range(5): loop.turn(0.02)           # passed on: the backend sees EOF
assert backend.recv(10) == b""
trig, trig_peer = socket.socketpair()
seen = {}
def handover_send(mask):                      # stands for HandoverSender._send in the same batch
    trig.recv(10)
    seen["state"] = relay.remove(slot)        # NativeTunnel.detach -> _take_back
loop.epoll.register(trig.fileno(), select.EPOLLIN); loop.handlers[trig.fileno()] = handover_send
backend.shutdown(socket.SHUT_WR)              # the backend's FIN: the tunnel ends "closed"...
time.sleep(0.02)
trig_peer.send(b"x")                          # ...and in the same batch, the hand-over sends it
time.sleep(0.02)
print("batch:", loop.turn(0.0))
print("close(reason) calls:", ended)
print("state handed on (to_client, to_backend, client_eof, backend_eof, in, out):", seen.get("state"))
client.settimeout(0.5)
try:
    print("client's read:", client.recv(10), "(b'' = our FIN reached it)")
except TimeoutError:
    print("client's read: timed out -- it never got our FIN")
if not ended and seen.get("state", (0, 0, 0, 0))[2:4] == (1, 1):
    print("DEFECT: an ended tunnel was handed on as live; its end was never reported")
