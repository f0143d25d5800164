"""A route that allows only WebSocket upgrades (the default) forwards a client's whole
Upgrade list when *one* token is allowed ("Upgrade: websocket, h2c" goes to the backend as
is), and accepts the backend's 101 to *any* protocol the client listed
(response._switch_protocols intersects with what the client asked, not with what the route
allows).  The client then holds a raw tunnel to the backend in a protocol the route refuses
(h2c here): later requests inside it bypass mpm's routes, limits, X-Forwarded-* and access
log.  Apache (ap_proxy_worker_can_upgrade) upgrades only when the client's whole Upgrade
value is one of the worker's protocols, and strips it otherwise."""
import time
from h import Backend, recv_head, recv_for, start_proxy, client_exchange

def script(s, rec):
    head, rest = recv_head(s, rec)
    up = [l for l in head.split(b"\r\n") if l.lower().startswith(b"upgrade:")]
    if up and b"h2c" in up[0].lower():            # a backend that prefers h2c when offered
        s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
        rec += b"\n<<tunnel bytes follow>>\n"
        recv_for(s, rec, 1.0)
    else:
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno")

be = Backend(script)
p = start_proxy([{"path": "/ws/", "to": f"http://127.0.0.1:{be.port}/ws/"}])   # upgrade: websocket (default)

print("direct GET /admin ->", client_exchange(p.port, b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n", 0.5)[:25])
for up in (b"h2c", b"websocket, h2c"):
    n0 = len(be.conns)
    out = client_exchange(p.port, b"GET /ws/chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: " + up + b"\r\n\r\n",
                          1.0, chunks=[b"GET /ws/chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: " + up + b"\r\n\r\n",
                                       b"GET /admin HTTP/1.1\r\nHost: internal\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n"],
                          pause=0.3)
    time.sleep(0.8)
    print(f"\nclient Upgrade: {up.decode()!r}\n  client got: {out[:90]!r}")
    print("  backend got:", bytes(be.conns[n0]).decode("latin-1").replace("\r\n", "\\r\\n\n               "))
