"""Checked: the same conversion over TLS with ALPN h2 (the listener's default): a few
malformed requests are stream errors, a CL/DATA mismatch resets the stream and closes the
backend connection that got the partial body, and the connection serves on;
X-Forwarded-Proto is https whatever :scheme says."""
import os, sys; sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from h import Backend, Client, arm, show, start_proxy, time  # noqa: E402

arm(60)
backend = Backend()
proxy = start_proxy([{"path": "/", "to": backend.url + "/"}], tls=True)
client = Client(proxy.tls_port, tls_proxy=proxy)
GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/x")]
for label, extra in [("value CRLF", [(b"x-a", b"1\r\nx-inj: 2")]), ("uppercase name", [(b"X-A", b"1")]),
                     ("transfer-encoding", [(b"transfer-encoding", b"chunked")]), ("te gzip", [(b"te", b"gzip")])]:
    show(label, client.response(client.request(GET + extra)).summary()[:60])
sid = client.request([(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/p"),
                      (b"content-length", b"10")], end=False)
client.h2.send_data(sid, b"12345")
client.flush()
time.sleep(0.3)
client.h2.end_stream(sid)
client.flush()
show("CL 10, 5 bytes, END_STREAM", client.response(sid).summary()[:60])
time.sleep(0.2)
show("backend connection with the partial body closed", backend.conns[-1].closed.is_set())
st = client.response(client.request(GET))
show("then a GET on the same connection", st.summary()[:60])
show("backend head", backend.heads[-1])
