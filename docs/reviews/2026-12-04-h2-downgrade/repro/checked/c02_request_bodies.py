"""Checked: request bodies across the downgrade.  Content-Length shorter/longer than the DATA,
reset mid-body, chunked bodies with trailers (forbidden names, control characters, uppercase),
content-length 0 with DATA, DATA that looks like chunk framing.  For each: the stream outcome,
a follow-up GET on the same connection, and every backend connection (bytes, closed or not):
no connection that got a partial body may be reused."""
import os, sys, gzip, random, struct; sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from h import *  # noqa: F403
arm(120)
be = Backend()
p = start_proxy([{"path": "/", "to": be.url + "/"}])
c = Client(p.port)
def post(path, extra=(), end=False):
    return c.request([(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", path), *extra], end=end)
def after(label):
    sid = c.get(b"/after-" + label.replace(" ", "_").encode())
    print("   follow-up GET:", c.response(sid, 3).summary()[:60])
def scenario(label, fn):
    n = len(be.conns)
    print("==", label)
    fn()
    time.sleep(0.3)
    after(label)
    time.sleep(0.2)
    for i, cc in enumerate(be.conns):
        print(f"   conn {i} closed={cc.closed.is_set()} raw={bytes(cc.raw)[-300:]!r}")
def a():
    sid = post(b"/a", [(b"content-length", b"10")])
    c.h2.send_data(sid, b"12345"); c.flush(); time.sleep(0.3)
    c.h2.send_data(sid, b"6789012345", end_stream=True); c.flush()
    print("  ", c.response(sid, 3).summary()[:100])
def b():
    sid = post(b"/b", [(b"content-length", b"10")])
    c.h2.send_data(sid, b"12345"); c.flush(); time.sleep(0.3)
    c.h2.end_stream(sid); c.flush()
    print("  ", c.response(sid, 3).summary()[:100])
def cc_():
    sid = post(b"/c", [(b"content-length", b"10")])
    c.h2.send_data(sid, b"12345"); c.flush(); time.sleep(0.3)
    c.h2.reset_stream(sid, 8); c.flush()
def d():
    sid = post(b"/d")
    c.h2.send_data(sid, b"hello"); c.flush(); time.sleep(0.3)
    c.h2.send_headers(sid, [(b"x-t", b"1"), (b"content-length", b"999"), (b"host", b"evil"), (b"x-forwarded-for", b"6.6.6.6"), (b"transfer-encoding", b"x")], end_stream=True); c.flush()
    print("  ", c.response(sid, 3).summary()[:100])
def d2():
    sid = post(b"/d2")
    c.h2.send_data(sid, b"hello"); c.flush(); time.sleep(0.3)
    c.h2.send_headers(sid, [(b"x-t", b"1"), (b"x-ctl", b"a\x01b")], end_stream=True); c.flush()
    print("  ", c.response(sid, 3).summary()[:100])
def d3():
    sid = post(b"/d3")
    c.h2.send_data(sid, b"hello"); c.flush(); time.sleep(0.3)
    c.h2.send_headers(sid, [(b"X-Up", b"1")], end_stream=True); c.flush()
    print("  ", c.response(sid, 3).summary()[:100])
def d4():
    sid = post(b"/d4")
    c.h2.send_data(sid, b"hello"); c.flush(); time.sleep(0.3)
    c.h2.send_headers(sid, [(b"x-t", b" padded "), (b"x-u", b"")], end_stream=True); c.flush()
    print("  ", c.response(sid, 3).summary()[:100])
def e():
    sid = post(b"/e", [(b"content-length", b"0")])
    c.h2.send_data(sid, b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", end_stream=True); c.flush()
    print("  ", c.response(sid, 3).summary()[:100])
def f():
    sid = post(b"/f", [], end=False)
    c.h2.send_data(sid, b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"); c.flush(); time.sleep(0.2)
    c.h2.send_data(sid, b"", end_stream=True); c.flush()
    print("  ", c.response(sid, 3).summary()[:100])
for label, fn in [("CL10 + 5 then 10", a), ("CL10 + 5 then END_STREAM", b), ("CL10 + 5 then RST", cc_),
                  ("chunked + bad trailers", d), ("chunked + ctl trailer", d2), ("chunked + Upper trailer", d3), ("chunked + ws trailer", d4),
                  ("CL0 + body", e), ("chunked with chunk-looking data", f)]:
    scenario(label, fn)
    be_conns_before = len(be.conns)
print("\n".join(l for l in open(p.error_log).read().splitlines() if "malformed" in l))
