"""Checked: the request-field matrix (pseudo-header abuse, CR/LF/NUL, names, connection-specific
fields, te, content-length forms, cookies) over h2c.  Each case: what the client got, and
every head the backend received for it (none for a refused request).  The connection must
survive every case (it is replaced only if the proxy ended it)."""
import os, sys, gzip, random, struct; sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from h import *  # noqa: F403
arm(120)
be = Backend()
p = start_proxy([{"path": "/", "to": be.url + "/"}])
c = Client(p.port)
ended = 0
def base(path=b"/x", method=b"GET", auth=b"example.test", scheme=b"http"):
    return [(b":method", method), (b":scheme", scheme), (b":authority", auth), (b":path", path)]
cases = {
 "dup :scheme": [(b":method", b"GET"), (b":scheme", b"http"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/x")],
 "dup :path": base() + [],
 "path space": base(b"/x HTTP/1.1"),
 "path tab": base(b"/x\tb"),
 "path no slash": base(b"x"),
 "path abs": base(b"http://evil/x"),
 "path *": base(b"*", b"OPTIONS"),
 "path empty": base(b""),
 "path CRLF": base(b"/x HTTP/1.1\r\nX-Inj: 1\r\nY:"),
 "path LF": base(b"/x\nX: 1"),
 "path NUL": base(b"/x\x00"),
 "path #": base(b"/x#frag"),
 "method space": base(b"/x", b"GET /admin"),
 "method lower": base(b"/x", b"get"),
 "method unknown": base(b"/x", b"FOO"),
 "method CONNECT": [(b":method", b"CONNECT"), (b":authority", b"evil:443")],
 "auth userinfo": base(auth=b"user@evil"),
 "auth space": base(auth=b"a b"),
 "auth CRLF": base(auth=b"a\r\nX-Inj: 1"),
 "auth empty": base(auth=b""),
 "auth vs host": base() + [(b"host", b"other.test")],
 "no auth, host": [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/x"), (b"host", b"h1.test")],
 "no auth, 2 host": [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/x"), (b"host", b"h1.test"), (b"host", b"h2.test")],
 "no auth no host": [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/x")],
 "scheme ftp": base(scheme=b"ftp"),
 "value CRLF": base() + [(b"x-a", b"1\r\nx-inj: 2")],
 "value CR": base() + [(b"x-a", b"1\rx-inj: 2")],
 "value LF": base() + [(b"x-a", b"1\nx-inj: 2")],
 "value NUL": base() + [(b"x-a", b"1\x00")],
 "value ctl 01": base() + [(b"x-a", b"1\x01")],
 "value 7f": base() + [(b"x-a", b"1\x7f")],
 "value obs": base() + [(b"x-a", b"1\x80")],
 "value lead sp": base() + [(b"x-a", b" 1")],
 "value inner tab": base() + [(b"x-a", b"1\t2")],
 "name upper": base() + [(b"X-A", b"1")],
 "name space": base() + [(b"x a", b"1")],
 "name colon": base() + [(b"x:a", b"1")],
 "name empty": base() + [(b"", b"1")],
 "name CRLF": base() + [(b"x\r\nx-inj", b"1")],
 "name NUL": base() + [(b"x\x00", b"1")],
 "name utf8": base() + [("x-é".encode(), b"1")],
 "pseudo after": [(b":method", b"GET"), (b":scheme", b"http"), (b"x-a", b"1"), (b":path", b"/x"), (b":authority", b"a")],
 "pseudo unknown": base() + [] ,
 "pseudo :status": [(b":status", b"200")] + base(),
 "connection": base() + [(b"connection", b"close")],
 "keep-alive": base() + [(b"keep-alive", b"timeout=5")],
 "proxy-connection": base() + [(b"proxy-connection", b"keep-alive")],
 "transfer-encoding": base() + [(b"transfer-encoding", b"chunked")],
 "upgrade": base() + [(b"upgrade", b"websocket")],
 "te gzip": base() + [(b"te", b"gzip")],
 "te trailers, gzip": base() + [(b"te", b"trailers, gzip")],
 "te Trailers": base() + [(b"te", b"Trailers")],
 "trailer hdr": base() + [(b"trailer", b"x-foo")],
 "http2-settings": base() + [(b"http2-settings", b"AAA")],
 "xff": base() + [(b"x-forwarded-for", b"1.2.3.4"), (b"forwarded", b"for=1.2.3.4"), (b"x-forwarded-host", b"evil"), (b"x-forwarded-proto", b"https")],
 "x-ssl-client": base() + [(b"x-ssl-client-verify", b"SUCCESS")],
 "cookies": base() + [(b"cookie", b"a=1"), (b"x-b", b"2"), (b"cookie", b"b=2")],
 "expect": base() + [(b"expect", b"100-continue")],
 "cl non-digit": base() + [(b"content-length", b"+5")],
 "cl 2 same": base() + [(b"content-length", b"0"), (b"content-length", b"0")],
 "cl ws": base() + [(b"content-length", b" 0")],
 "cl on GET 0": base() + [(b"content-length", b"0")],
 "cl on GET 5 no data": base() + [(b"content-length", b"5")],
 "protocol on GET": base() + [(b":protocol", b"websocket")],
}
cases["pseudo unknown"] = [(b":foo", b"1")] + base()
cases["dup :path"] = base() + []
cases["dup :path"] = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/x"), (b":path", b"/admin")]
for name, headers in cases.items():
    n0 = len(be.heads)
    before = sum(len(c_.raw) for c_ in be.conns)
    sid = c.request(headers)
    st = c.response(sid, 3)
    new = be.all_bytes()
    got = [h for h in be.heads[n0:]]
    print(f"== {name}: {st.summary()[:160]}")
    for h_ in got:
        print("   backend:", h_)
    if c.closed or c.goaway:
        print("   CONNECTION ENDED", c.goaway); ended += 1; c = Client(p.port)
print("connection ended by the proxy during the matrix:", ended)
