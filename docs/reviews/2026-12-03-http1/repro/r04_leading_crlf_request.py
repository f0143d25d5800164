"""An empty line (CRLF) before a request line -- what old clients send after a POST body
(RFC 9112 §2.2 robustness rule) -- makes mpm answer 400 and close, so the pipelined request
behind it is lost.  RFC 9112 §2.2: "a server that is expecting to receive and parse a
request-line SHOULD ignore at least one empty line (CRLF) received prior to the request-line";
nginx (ngx_http_parse_request_line: sw_start skips CR/LF) and Apache (read_request_line:
skips up to N blank lines) do."""
import re
from h import Backend, recv_head, recv_for, start_proxy, client_exchange

def script(s, rec):
    buf = bytearray()
    while True:
        try:
            head, buf = recv_head(s, rec, buf)
        except Exception:
            return
        if b"Content-Length: 3" in head:
            while len(buf) < 3:
                d = s.recv(100); rec += d; buf += d
            del buf[:3]
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

be = Backend(script)
p = start_proxy([{"path": "/", "to": f"http://127.0.0.1:{be.port}/"}])
for name, data in (
        ("POST body + CRLF, then GET", b"POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc\r\n"
                                      b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("CRLF before the first request", b"\r\nGET /1 HTTP/1.1\r\nHost: a\r\n\r\n")):
    out = client_exchange(p.port, data, 1.5)
    print(name, "->", repr(out[:400]))
    print("   statuses:", re.findall(rb"HTTP/1\.1 (\d{3})", out))
