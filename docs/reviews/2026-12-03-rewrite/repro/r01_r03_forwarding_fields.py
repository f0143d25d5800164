"""Probe: what the backend sees behind a trusted proxy (a TLS-terminating balancer in
`limits.trusted_proxies` that says X-Forwarded-Proto: https) and from an untrusted client."""
from h import Backend, recv_head, start_proxy, client_exchange

def script(s, rec):
    buf = bytearray()
    while True:
        head, buf = recv_head(s, rec, buf)
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(head) + head)

be = Backend(script)
req = (b"GET /a HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 203.0.113.5\r\n"
       b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: shop.example\r\nForwarded: for=203.0.113.5;proto=https\r\n\r\n")
for trusted in (["127.0.0.0/8"], ["10.0.0.0/8"]):
    p = start_proxy([{"path": "/", "to": f"http://127.0.0.1:{be.port}/"}], limits={"trusted_proxies": trusted})
    print("== trusted_proxies:", trusted)
    print(client_exchange(p.port, req, 0.7).decode("latin-1"))
    p.stop()
be.close()
