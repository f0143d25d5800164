"""A backend's 204 with Content-Length (and a body) reaches the client with its
Content-Length: 5 intact (the body is dropped, correctly).  RFC 9110 §8.6: "A server MUST NOT
send a Content-Length header field in any response with a status code of 1xx (Informational)
or 204 (No Content)"; a client that trusts it waits for / swallows 5 bytes of the next
response.  Also: a reason phrase with NUL/CTL bytes is relayed verbatim (RFC 9112 §4:
reason-phrase = *( HTAB / SP / VCHAR / obs-text ))."""
from h import Backend, recv_head, recv_for, start_proxy, client_exchange

MODE = {}
def script(s, rec):
    while True:
        try:
            head, _ = recv_head(s, rec)
        except Exception:
            return
        s.sendall(MODE["resp"])

be = Backend(script)
p = start_proxy([{"path": "/", "to": f"http://127.0.0.1:{be.port}/"}])
MODE["resp"] = b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello"
out = client_exchange(p.port, b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n", 1.0)
print("204 case, client got:", repr(out))
MODE["resp"] = b"HTTP/1.1 200 O\x00K\x01\r\nContent-Length: 2\r\n\r\nhi"
out = client_exchange(p.port, b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n", 1.0)
print("NUL/CTL reason, client got:", repr(out))
