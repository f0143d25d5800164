"""Finding 3: four requests that RFC 9113 makes *stream* errors end the whole connection
(GOAWAY PROTOCOL_ERROR), taking an innocent stream in flight on it along, because h2
raises them as connection errors before worker.h2.fields sees them:

  a) trailers (a second HEADERS) without END_STREAM      RFC 9113 §8.1 -> malformed, §8.1.1 stream error
  b) a request HEADERS with :status (an "informational" block)   §8.3 / §8.1.1 -> malformed
  c) HEADERS whose priority makes the stream depend on itself    §5.3.1 -> stream error PROTOCOL_ERROR
  d) PRIORITY frame making a stream depend on itself             §5.3.1 -> stream error PROTOCOL_ERROR

For each: a fresh connection, a GET /other in flight (the backend answers it after 0.5 s),
then the bad frame.  Controls that behave as the README says (stream error, /other answered):
an uppercase trailer name and a pseudo-header in trailers."""

from h import Backend, Client, arm, show, start_proxy, time
from hyperframe.frame import HeadersFrame, PriorityFrame

arm(60)
backend = Backend(lambda c, h, b: (time.sleep(0.5), b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")[1])
proxy = start_proxy([{"path": "/", "to": backend.url + "/"}])
POST = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/up")]
GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/g")]


def case(label, bad):
    client = Client(proxy.port)
    other = client.get(b"/other")
    time.sleep(0.05)
    bad(client)
    st = client.response(other, 3)
    verdict = "connection ended, /other lost" if client.goaway is not None and st.headers is None else "connection kept"
    show(f"{label:52s}", f"{verdict}; /other -> {st.summary()[:40]}; GOAWAY {client.goaway}")
    client.close()


def trailers_without_end_stream(c):
    sid = c.request(POST, end=False)
    c.h2.send_data(sid, b"abc")
    c.flush()
    c.raw_headers(sid, [(b"x-t", b"1")])                       # END_HEADERS, no END_STREAM


def status_in_request(c):
    c.raw_headers(c.next_id(), [(b":status", b"100")])


def headers_self_dependency(c):
    sid = c.next_id()
    c.raw_headers(sid, GET, flags=("END_HEADERS", "END_STREAM"), depends_on=sid)


def priority_self_dependency(c):
    frame = PriorityFrame(c.next_id())
    frame.depends_on = frame.stream_id
    c.sock.sendall(frame.serialize())


def uppercase_trailer(c):
    sid = c.request(POST, end=False)
    c.h2.send_data(sid, b"abc")
    c.h2.send_headers(sid, [(b"X-Up", b"1")], end_stream=True)
    c.flush()


def pseudo_in_trailer(c):
    sid = c.request(POST, end=False)
    c.h2.send_data(sid, b"abc")
    c.h2.send_headers(sid, [(b":path", b"/t")], end_stream=True)
    c.flush()


case("a) trailers without END_STREAM", trailers_without_end_stream)
case("b) :status in a request's HEADERS", status_in_request)
case("c) HEADERS: stream depends on itself", headers_self_dependency)
case("d) PRIORITY: stream depends on itself", priority_self_dependency)
case("control: uppercase trailer name", uppercase_trailer)
case("control: pseudo-header field in trailers", pseudo_in_trailer)
log = proxy.error_text()
show("error log (connection errors)", [line.split("] ", 3)[-1] for line in log.splitlines() if "connection error" in line])
