"""A slot freed and reused within one turn: a stale event of the old tunnel, already in the
turn's batch, is relayed against the new tunnel in that slot.  Here it ends an innocent tunnel
with "reset".  (worker.loop's Python turn identifies by fd: the stale event would reach the
fd's real owner, or nobody.)
Run: PYTHONPATH=.:tests /work/main/.venv/bin/python docs/reviews/2026-12-05-turn/repro/r_slot_reuse_stale_event.py"""
import select, socket, struct, sys, time
sys.path.insert(0, "tests")
from test_relay_native import _Loop, _Owner, _pair

loop = _Loop(); relay = loop.relay
ended = []
# Tunnel A in slot s.
a_client_end, a_client = _pair(); a_backend_end, a_backend = _pair()
key_a = _Owner(ended)
slot_a = relay.add(key_a, a_client_end.fileno(), a_backend_end.fileno(), False, False, b"", b"", time.monotonic())
# Tunnel B: sockets ready, added by a Python handler during the turn.  It holds a leftover for its
# backend (a slow backend: common in bulk transfers), so its client side is paused (not read).
b_client_end, b_client = _pair(); b_backend_end, b_backend = _pair(small=True)
key_b = _Owner(ended)
# A Python handler (as the hand-over's _send: detach A; then a 101 handled: B comes to the relay)
trig, trig_peer = socket.socketpair()
got = {}
def handler(mask):
    trig.recv(10)
    got["a_state"] = relay.remove(slot_a)                 # A leaves (detach / close)
    got["slot_b"] = relay.add(key_b, b_client_end.fileno(), b_backend_end.fileno(), False, False,
                              b"", b"L" * 4_000_000, time.monotonic())   # B: slow backend, leftover
loop.epoll.register(trig.fileno(), select.EPOLLIN); loop.handlers[trig.fileno()] = handler
# Order of readiness = order in the batch: the handler's fd first, then A's client resets.
trig_peer.send(b"x")
time.sleep(0.01)
a_client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); a_client.close()   # RST
time.sleep(0.05)
n = loop.turn(0.0)
print("events in the batch:", n, " A's slot:", slot_a, " B got slot:", got.get("slot_b"))
print("ended:", [("A" if k is key_a else "B", r) for k, r in ended])
# B's own sockets are fine:
b_client.setblocking(False)
try:
    b_client.send(b"still here"); print("B's client can still write: yes")
except OSError as e:
    print("B's client:", e)
for _ in range(3): loop.turn(0.05)
print("ended after more turns:", [("A" if k is key_a else "B", r) for k, r in ended])
if any(k is key_b for k, _ in ended):
    print("DEFECT: tunnel B, untouched by its peers, ended because of tunnel A's stale event")
