"""Finding 5: checks RFC 9113 asks for that the conversion leaves out (no desync: the head the
backend gets is consistent, but the proxy resolves ambiguities silently where the RFC says
"malformed", and where its HTTP/1.1 side answers 400).

  a) `:authority` and a `host` field that disagree (§8.3.1: a server SHOULD treat it as malformed;
     an intermediary MUST NOT forward a malformed request): `host` is dropped, `:authority` wins.
  b) no `:authority`, two `host` fields: the last wins (HTTP/1.1 gets 400 "exactly one Host").
  c) `:scheme` twice, with different values (§8.3: pseudo-header fields MUST NOT repeat): accepted.
  d) request trailers whose value starts or ends with whitespace (§8.2.1: malformed): forwarded
     in the chunked trailer section (the same value in the head is refused: RST_STREAM).
Backend bytes printed for each."""

from h import Backend, Client, arm, show, start_proxy, time

arm(60)
backend = Backend()
proxy = start_proxy([{"path": "/", "to": backend.url + "/"}])
client = Client(proxy.port)


def run(label, headers, trailers=None):
    before = len(backend.conns), len(backend.heads)
    sid = client.request(headers, end=trailers is None)
    if trailers is not None:
        client.h2.send_data(sid, b"hello")
        client.h2.send_headers(sid, trailers, end_stream=True)
        client.flush()
    show(label, client.response(sid).summary()[:60])
    time.sleep(0.1)
    if trailers is None:
        for head in backend.heads[before[1]:]:
            show("   backend received", head)
    else:
        show("   backend received", bytes(backend.conns[-1].raw)[-120:])


GET = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/x")]
run("a) :authority good.example + host evil.example", GET + [(b":authority", b"good.example"), (b"host", b"evil.example")])
run("b) no :authority, host one.example + host two.example", GET + [(b"host", b"one.example"), (b"host", b"two.example")])
run("c) :scheme http + :scheme https", [(b":method", b"GET"), (b":scheme", b"http"), (b":scheme", b"https"),
                                         (b":authority", b"a"), (b":path", b"/x")])
run("d) trailer ' padded '", [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"a"), (b":path", b"/t")],
    trailers=[(b"x-t", b" padded ")])
run("   control: head field ' padded '", GET + [(b":authority", b"a"), (b"x-t", b" padded ")])
