"""A careless operator writes `per_client` on a route and nothing under `limits`: the route's
limit is never applied (worker/admission.py builds no ClientLimits unless limits.per_client or
trusted_proxies is set), and configtest says nothing."""
from h import Backend, recv_head, start_proxy, client_exchange

def script(s, rec):
    buf = bytearray()
    while True:
        head, buf = recv_head(s, rec, buf)
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

be = Backend(script)
p = start_proxy([{"path": "/login", "to": f"http://127.0.0.1:{be.port}/login",
                  "per_client": {"requests": {"rate": "10/m", "burst": 3}}}])
statuses = [int(client_exchange(p.port, b"GET /login HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 1.0)[9:12])
            for _ in range(6)]
print("route per_client {rate: 10/m, burst: 3}, no limits section:", statuses)
print("configtest:", p.mpmctl("configtest").returncode, p.mpmctl("configtest").stderr.strip()[:200])
be.close()
