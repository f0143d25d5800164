"""Checked: frame-level abuse that must stay stream errors (DATA after END_STREAM: STREAM_CLOSED,
HEADERS again after END_STREAM) or is a connection error by RFC 9113 (DATA on an idle
stream).  Those that RFC 9113 makes stream errors but end the connection are finding 3 (r03)."""
import os, sys, gzip, random, struct; sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from h import *  # noqa: F403
from hyperframe.frame import HeadersFrame, PriorityFrame
arm(60)
be = Backend(lambda c, h, b: (time.sleep(0.5), b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")[1])
p = start_proxy([{"path": "/", "to": be.url + "/"}])
def base(path=b"/x", m=b"POST"):
    return [(b":method", m), (b":scheme", b"http"), (b":authority", b"a"), (b":path", path)]
def try_(label, fn):
    c = Client(p.port)
    other = c.get(b"/other")        # an innocent stream in flight on the same connection
    fn(c)
    st = c.response(other, 3)
    print(f"== {label}: other stream -> {st.summary()[:70]}; goaway={c.goaway}")
    c.close()
def trailers_no_es(c):
    sid = c.request(base(), end=False); c.h2.send_data(sid, b"abc")
    f = HeadersFrame(sid); f.data = c.h2.encoder.encode([(b"x-t", b"1")]); f.flags.add("END_HEADERS")
    c.flush(); c.sock.sendall(f.serialize())
def self_dep(c):
    sid = c.next_id()
    f = HeadersFrame(sid); f.data = c.h2.encoder.encode(base(m=b"GET")); [f.flags.add(x) for x in ("END_HEADERS", "END_STREAM", "PRIORITY")]; f.depends_on = sid; f.stream_weight = 16
    c.sock.sendall(f.serialize())
def prio_self(c):
    f = PriorityFrame(99); f.depends_on = 99; c.sock.sendall(f.serialize())
def second_headers_after_es(c):
    sid = c.request(base(m=b"GET"))
    f = HeadersFrame(sid); f.data = c.h2.encoder.encode([(b"x", b"1")]); [f.flags.add(x) for x in ("END_HEADERS", "END_STREAM")]
    c.sock.sendall(f.serialize())
def data_idle(c):
    c.sock.sendall(struct.pack(">BHBBL", 0, 3, 0, 0, 101) + b"abc")
def informational_req(c):
    sid = c.next_id(); f = HeadersFrame(sid); f.data = c.h2.encoder.encode([(b":status", b"100")]); f.flags.add("END_HEADERS"); c.sock.sendall(f.serialize())
try_("trailers without END_STREAM", trailers_no_es)
try_("HEADERS self-dependency", self_dep)
try_("PRIORITY self-dependency", prio_self)
try_("HEADERS again after END_STREAM", second_headers_after_es)
try_("DATA on idle stream", data_idle)
try_("informational :status in request", informational_req)
def uppercase_trailer(c):
    sid = c.request(base(), end=False); c.h2.send_data(sid, b"abc"); c.h2.send_headers(sid, [(b"X-T", b"1")], end_stream=True); c.flush()
try_("uppercase trailer (control: stream error)", uppercase_trailer)
def pseudo_trailer(c):
    sid = c.request(base(), end=False); c.h2.send_data(sid, b"abc"); c.h2.send_headers(sid, [(b":path", b"/t")], end_stream=True); c.flush()
try_("pseudo-header in trailers", pseudo_trailer)
def data_after_es(c):
    sid = c.request(base(m=b"GET"))
    c.sock.sendall(struct.pack(">BHBBL", 0, 3, 0, 0, sid) + b"abc")
try_("DATA after END_STREAM", data_after_es)
