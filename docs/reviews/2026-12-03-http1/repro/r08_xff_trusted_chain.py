"""limits.trusted_proxies: the client is the *last* X-Forwarded-For hop even when that hop is
itself a trusted proxy (two tiers: CDN -> internal LB -> mpm).  All clients behind the inner
tier then share one identity: one client's burst gets the others 429.  mod_remoteip (which
the README cites) walks right-to-left while the address is trusted ("Processing halts when a
given useragent IP address is not trusted"); nginx does with real_ip_recursive on."""
import re, time
from h import Backend, recv_head, start_proxy, client_exchange

def script(s, rec):
    buf = bytearray()
    while True:
        try:
            head, buf = recv_head(s, rec, buf)
        except Exception:
            return
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

be = Backend(script)
p = start_proxy([{"path": "/", "to": f"http://127.0.0.1:{be.port}/"}],
                limits={"trusted_proxies": ["127.0.0.0/8"],
                        "per_client": {"requests": {"rate": 1, "burst": 3}}})

def req(client):
    # the outer proxy (a CDN) wrote the real client, the inner LB (127.0.0.9, trusted) added itself
    return (b"GET /x HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: " + client + b", 127.0.0.9\r\n\r\n")

a = client_exchange(p.port, req(b"203.0.113.5") * 5, 0.2)
b = client_exchange(p.port, req(b"198.51.100.7"), 0.3)
print("client 203.0.113.5 (5 requests):", re.findall(rb"HTTP/1.1 (\d+)", a))
print("client 198.51.100.7 (1 request): ", re.findall(rb"HTTP/1.1 (\d+)", b))
time.sleep(0.3)
print("error log:", [l for l in open(p.error_log).read().splitlines() if "per-client" in l][-2:])
print("access log client fields:", sorted({l.split()[0] for l in p.access_lines()}))
