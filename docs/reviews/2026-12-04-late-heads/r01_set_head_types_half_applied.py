"""set_head_types is not all-or-nothing: when the response class (or its names) is refused,
the request class it was given has already replaced the one `request` answers, and the
hop-by-hop names stay the old ones.  Run from a checkout with worker/_heads built."""
import os, sys
sys.path.insert(0, os.environ.get("CHECKOUT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))))
from worker import headscan, http1, _heads

class Other(http1.RequestHead):          # any class the C accepts for requests
    __slots__ = ()

raw = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
print("before:", type(_heads.request(raw, 8190, 100, 8190)).__name__)
try:
    _heads.set_head_types(Other, headscan.REQUEST_SLOTS, http1.ResponseHead,
                          headscan.RESPONSE_SLOTS[:-1] + ("nothing",), (b"connection",))
except AttributeError as error:
    print("set_head_types raised:", type(error).__name__, error)
print("after the refused call:", type(_heads.request(raw, 8190, 100, 8190)).__name__)
resp = b"HTTP/1.1 200 OK\r\nKeep-Alive: x\r\nContent-Length: 0\r\n\r\n"
print("response plain (old hop-by-hop names kept, keep-alive among them):", _heads.response(resp)[0].plain)
