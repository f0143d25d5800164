"""Checked: a seeded random mix of pseudo-header fields, odd values and bodies (250 requests):
every stream ends (RST, 400/501/405, or 200), nothing odd reaches the backend, no error-level
log line, no exception.  (It ends in ENHANCE_YOUR_CALM once 200 streams were reset for
malformed requests: the MadeYouReset budget, by design.)"""
import os, sys, gzip, random, struct; sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from h import *  # noqa: F403
arm(150)
be = Backend()
p = start_proxy([{"path": "/ws/", "to": f"ws://127.0.0.1:{be.port}/ws/"}, {"path": "/", "to": be.url + "/"}])
rnd = random.Random(7)
METHODS = [b"GET", b"POST", b"HEAD", b"CONNECT", b"OPTIONS", b"PUT", b"get", b"G T", b"", b"GET\r\n", b"PRI"]
PATHS = [b"/", b"/ws/x", b"*", b"", b"x", b"/a b", b"/a\x00", b"//x", b"/%2e%2e/", b"/?a=1#f", b"http://a/b", b"/\xff"]
AUTHS = [b"a", b"", b"a:80", b"[::1]:80", b"u@a", b"a b", b"a\r", b"a,b", None]
SCHEMES = [b"http", b"https", b"", b"ftp", None]
PROTOS = [None, None, None, b"websocket", b"h2c", b"", b"websocket\r"]
EXTRA = [(b"content-length", b"0"), (b"content-length", b"5"), (b"content-length", b"-1"), (b"te", b"trailers"), (b"host", b"h"),
         (b"cookie", b"a"), (b"cookie", b""), (b"x", b""), (b"x", b"\t"), (b"expect", b"100-continue"), (b"upgrade", b"h2c"),
         (b"sec-websocket-key", b"abc"), (b":path", b"/dup"), (b":authority", b"dup"), (b"content-length", b"10")]
c = Client(p.port)
ends = {}
for i in range(250):
    hs = []
    m = rnd.choice(METHODS); hs.append((b":method", m))
    pr = rnd.choice(PROTOS)
    if pr is not None: hs.append((b":protocol", pr))
    s = rnd.choice(SCHEMES)
    if s is not None: hs.append((b":scheme", s))
    a = rnd.choice(AUTHS)
    if a is not None: hs.append((b":authority", a))
    if rnd.random() < 0.9: hs.append((b":path", rnd.choice(PATHS)))
    hs += rnd.sample(EXTRA, rnd.randint(0, 3))
    body = rnd.choice([None, b"", b"12345", b"x" * 100])
    end = rnd.random() < 0.7
    try:
        sid = c.request(hs, body=body or None, end=end)
        if not end and rnd.random() < 0.5:
            c.h2.end_stream(sid); c.flush()
        elif not end:
            c.h2.send_headers(sid, [(b"x-t", b"1")], end_stream=True); c.flush()
    except Exception as e:
        print("client refused", e); c = Client(p.port); continue
    st = c.response(sid, 2)
    key = "RST%s" % st.reset if st.headers is None else "status %s" % st.status()
    if not st.done: key = "NOT DONE"
    ends[key] = ends.get(key, 0) + 1
    if c.closed or c.goaway:
        print("conn ended after", hs, c.goaway); ends["CONN END"] = ends.get("CONN END", 0) + 1
        c = Client(p.port)
print(ends)
import re
log = open(p.error_log).read()
print("\n".join(l for l in log.splitlines() if "[error]" in l or "Traceback" in l or "refused a frame" in l)[:3000])
print("backend heads:", len(be.heads))
for h_ in be.heads:
    if b"\r\n\r\n" != h_[-4:] or h_.count(b"\r\n") != h_.count(b"\n"):
        print("ODD head", h_)
print(set(h_.split(b"\r\n")[0] for h_ in be.heads))
