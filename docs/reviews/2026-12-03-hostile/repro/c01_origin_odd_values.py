"""c01 (found sound): odd Origin values on a route with an allow-list, over HTTP/1.1 and over an
HTTP/2 extended CONNECT (RFC 8441); the backend must see none of the refused ones."""
from h import Backend, start_proxy, upgrade
from h2client import H2Client

backend = Backend()
allowed = ["https://app.example.com", "https://*.example.org", "null"]
p = start_proxy([{"path": "/ws/", "to": "ws://127.0.0.1:%d/ws/" % backend.port, "origins": allowed}],
                listen=lambda port: [{"address": f"127.0.0.1:{port}", "http2": "h2c"}])
cases = [b"https://app.example.com", b"HTTPS://APP.EXAMPLE.COM:443", b"https://app.example.com.",
         b"https://app.example.com:8443", b"https://a.example.org", b"https://example.org",
         b"https://a.example.org.evil.net", b"https://evil.net/.example.org", b"https://x@a.example.org",
         b"null", b"NULL", b"", b"https://app.example.com, https://evil.net", b"https://xn--bcher-kva.example.org",
         "https://b\u00fccher.example.org".encode(), b"https://app.example.com/", b"http://app.example.com",
         b"https://app.example.com\t", b"https://[::1]", b"https://a.example.org:443"]
for origin in cases:
    before = len(backend.heads)
    s, status = upgrade(p.port, "/ws/x", extra=b"Origin: " + origin + b"\r\n")
    s.close()
    print(f"h1 {origin!r:50} -> {status} (backend saw {len(backend.heads) - before})")
s, status = upgrade(p.port, "/ws/x", extra=b"Origin: https://app.example.com\r\nOrigin: https://app.example.com\r\n")
s.close()
print("h1 two identical Origin fields ->", status)
client = H2Client(p.port)
for origin in ("https://app.example.com", "https://evil.net", "null", "https://a.example.org."):
    before = len(backend.heads)
    ws = client.websocket("/ws/h2", headers=[("origin", origin)])
    print(f"h2 {origin!r:50} -> {ws.status} (backend saw {len(backend.heads) - before})")
client.close()
