"""#4: a request head whose first read is exactly 3 bytes ("GET", "POS") gets 400.

Each piece is sent once the proxy's end of the connection shows an empty receive queue
(/proc/net/tcp), so the worker reads the 3 bytes alone.  No reload is needed."""
import socket

from h import http_response_body, proxy, proxy_read_all, raw, read_head, status_of, wait_for

with raw() as backend, proxy([{"path": "/", "to": backend.url + "/"}], workers=1) as p:
    for first, rest in ((b"GE", b"T /two HTTP/1.1\r\nHost: t\r\n\r\n"),
                        (b"GET", b" /three HTTP/1.1\r\nHost: t\r\n\r\n"),
                        (b"POS", b"T /post HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok"),
                        (b"GET ", b"/four HTTP/1.1\r\nHost: t\r\n\r\n")):
        with socket.create_connection(("127.0.0.1", p.port), timeout=5) as s:
            for piece in (first, rest):
                s.sendall(piece)
                wait_for(lambda: proxy_read_all(s, p.port), 5, 0.01)
            head, buf = read_head(s)
            print(f"first read {first!r}:", status_of(head), http_response_body(s, head, buf)[:40])
