"""The C makes a head with tp_alloc alone: no tp_new, no __init__.  set_head_types (and
worker.headscan.make_heads_as) accept any class whose named slots are T_OBJECT_EX members,
including one whose C base needs its tp_new to run: the head the C answers then has that
base's fields NULL, and the first use of them crashes the interpreter.  Runs in a child."""
import os, subprocess, sys
CHECKOUT = os.environ.get("CHECKOUT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
code = r'''
from worker import headscan, http1, _heads
class Req(Exception):                    # slots_of() sees exactly REQUEST_SLOTS: make_heads_as takes it
    __slots__ = headscan.REQUEST_SLOTS
headscan.make_heads_as(Req, http1.ResponseHead, http1.HOP_BY_HOP)
head = _heads.request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 8190, 100, 8190)
print("made:", type(head).__name__, head.method, flush=True)
print("Req() built normally:", repr(Req()), flush=True)
print(repr(head), flush=True)           # BaseException_repr reads self->args: NULL
'''
done = subprocess.run([sys.executable, "-c", code], cwd=CHECKOUT, capture_output=True, text=True)
print(done.stdout, end="")
print("exit status:", done.returncode, "(-11: SIGSEGV)" if done.returncode == -11 else "")
