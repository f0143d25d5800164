"""Finding R1: the 10 ms regex limit does not bound a `when:` search on a repeated header.
A route `when: {header: {X-Id: "[^;]*="}}` (also `.*=`, `\\s*=`); the client sends 97 X-Id lines of
8,000 bytes (within LimitRequestFieldSize/LimitRequestFields). The worker's loop is held for
seconds; an idle connection on the same worker waits that long for its answer."""
import threading, time
from common import start, get, HttpBackend

b = HttpBackend()
p = start([{"path": "/", "when": {"header": {"X-Id": "[^;]*="}}, "to": b.url + "/"},
           {"path": "/", "to": b.url + "/"}], workers=1)
try:
    print("plain request:", get(p, b"/ok"))
    lines = b"".join(b"X-Id: " + b"a" * 8000 + b"\r\n" for _ in range(97))
    res = {}
    th = threading.Thread(target=lambda: res.setdefault("evil", get(p, b"/x", lines)))
    th.start(); time.sleep(0.3)
    print("idle-connection request during it:", get(p, b"/ok"))
    th.join()
    print("crafted request:", res["evil"])
    print([l for l in p.error_text().splitlines() if "ran past" in l][-1:])
finally:
    p.stop()
